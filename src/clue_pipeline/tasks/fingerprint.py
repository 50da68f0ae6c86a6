"""Job fingerprints: a checkpoint is resumed only by the very job that wrote it.

A job is its data, its settings and the code that computes it: the fingerprint hashes the
sources of the packages that define the models, the losses and the training loop, so after a
code change a rerun with unchanged settings trains afresh instead of reloading stale weights.
One exception, :func:`continue_other_length`: at a constant learning rate a run of the same job
for another number of epochs is this run's own beginning, so asking for more epochs continues
it instead of starting over.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clue_pipeline.training.checkpoint import (
    checkpoint_path,
    load_latest_checkpoint,
    previous_path,
    save_checkpoint,
    write_atomic,
)

logger = logging.getLogger(__name__)

# Knobs that do not change what is computed, so a run may resume across them.
_NEUTRAL = {
    "resume",
    "progress",
    "progress_every_steps",
    "checkpoint_dir",
    "checkpoint_every_steps",
}

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# What a trained job's weights depend on: models, losses, batching and the loop.
CODE_PATHS = ("models", "training", "tasks", "augment.py", "metrics.py")


# Beside a job's checkpoint: its lineage (the fingerprint without the epoch count) and length.
JOB_RECORD = "job.json"


def fingerprint(*parts: Any, leave_out: frozenset[str] = frozenset()) -> str:
    """Short hash of configs (dataclasses, dicts) and arrays (by their bytes), without the
    neutral knobs and the keys in ``leave_out`` at any depth."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(str((part.shape, part.dtype)).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
            continue
        value = _without(asdict(part) if is_dataclass(part) else part, _NEUTRAL | leave_out)
        digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _without(value: Any, keys: frozenset[str] | set[str]) -> Any:
    """``value`` without ``keys`` at any depth (a job's settings nest its ``train``)."""
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list | tuple):
        return [_without(v, keys) for v in value]
    return value


def code_version(root: Path | None = None, paths: tuple[str, ...] = CODE_PATHS) -> str:
    """Hash of the Python sources under ``root`` (the installed package) that jobs depend on."""
    return _hash_sources(Path(root or PACKAGE_ROOT).resolve(), tuple(paths))


@functools.cache
def _hash_sources(root: Path, paths: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in paths:
        target = root / name
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for file in files:
            if file.is_file():
                digest.update(file.relative_to(root).as_posix().encode())
                digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def job_checkpoint_dir(base: str | None, name: str, *parts: Any) -> str | None:
    """``base/name/<fingerprint>`` of the job's parts and the code version; None when off."""
    if not base:
        return None
    return str(Path(base) / name / fingerprint(*parts, {"code": code_version()}))


def job_lineage(*parts: Any) -> str:
    """The job's fingerprint (code version included) without its epoch count: the runs of one
    job that differ only in length."""
    return fingerprint(*parts, {"code": code_version()}, leave_out=frozenset({"epochs"}))


def continue_other_length(
    checkpoint_dir: str, lineage: str, epochs: int, warmup_epochs: int
) -> Path | None:
    """Start an untrained ``checkpoint_dir`` from the furthest checkpoint of its lineage, a run
    of the same job for another number of epochs, where that run is this one's beginning.

    Sound only at a constant learning rate (the caller checks) whose warm-up both lengths hold
    whole: each epoch's order is seeded by its index, and nothing else reads the length. A run
    that stopped early, or got past ``epochs``, is not taken. Writes this job's record either
    way; returns the folder continued from, or None.
    """
    folder = Path(checkpoint_dir)
    record = json.dumps({"lineage": lineage, "epochs": epochs})
    write_atomic(folder / JOB_RECORD, lambda stream: stream.write(record.encode()))
    own = checkpoint_path(folder)
    if own.exists() or previous_path(own).exists():
        return None  # its own checkpoint: the ordinary resume
    found: tuple[Path, dict, int] | None = None
    for other in sorted(p.parent for p in folder.parent.glob(f"*/{JOB_RECORD}")):
        run = _continuable(other, lineage, epochs, warmup_epochs) if other != folder else None
        if run is not None and (found is None or run[0]["global_step"] > found[1]["global_step"]):
            found = (other, *run)
    if found is None:
        return None
    other, ckpt, length = found
    ckpt["finished"] = ckpt["epoch"] >= epochs
    save_checkpoint(own, ckpt)
    logger.info(
        "continuing %s (epoch %d of its %d) to %d epochs in %s",
        other, ckpt["epoch"], length, epochs, folder,
    )  # fmt: skip
    return other


def _continuable(
    other: Path, lineage: str, epochs: int, warmup_epochs: int
) -> tuple[dict, int] | None:
    """``other``'s checkpoint and length if it is the same job's beginning for ``epochs``."""
    try:
        record = json.loads((other / JOB_RECORD).read_text())
        if record.get("lineage") != lineage:
            return None
        length = int(record["epochs"])
        ckpt = load_latest_checkpoint(checkpoint_path(other))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # unreadable: never continued, never fatal
    if ckpt is None:
        return None
    stopped_early = ckpt["finished"] and ckpt["epoch"] < length
    past = (ckpt["epoch"], ckpt["step_in_epoch"]) > (epochs, 0)
    clipped_warmup = min(length, epochs) < warmup_epochs
    return None if stopped_early or past or clipped_warmup else (ckpt, length)
