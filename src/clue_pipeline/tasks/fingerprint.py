"""Job fingerprints: a checkpoint is resumed only by the very job that wrote it.

A job is its data, its settings and the code that computes it: the fingerprint hashes the
sources of the packages that define the models, the losses and the training loop, so after a
code change a rerun with unchanged settings trains afresh instead of reloading stale weights.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


def fingerprint(*parts: Any) -> str:
    """Short hash of configs (dataclasses, dicts) and arrays (by their bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(str((part.shape, part.dtype)).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
            continue
        value = _without_neutral(asdict(part) if is_dataclass(part) else part)
        digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _without_neutral(value: Any) -> Any:
    """``value`` without the neutral knobs at any depth (a job's settings nest its ``train``)."""
    if isinstance(value, dict):
        return {k: _without_neutral(v) for k, v in value.items() if k not in _NEUTRAL}
    if isinstance(value, list | tuple):
        return [_without_neutral(v) for v in value]
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
