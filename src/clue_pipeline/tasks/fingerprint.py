"""Job fingerprints: a checkpoint is resumed only by the very job that wrote it."""

from __future__ import annotations

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
# Knobs added after checkpoints existed, at the value that computes what runs did before:
# left out of the hash at that value, so those runs still resume and still count as done.
_ADDED_AT_DEFAULT = {
    "momentum": 0.9,
    "lr_schedule": "constant",
    "warmup_epochs": 0,
    "lr_scale_batch": False,
    "fixed_lr_params": [],
}


def fingerprint(*parts: Any) -> str:
    """Short hash of configs (dataclasses, dicts) and arrays (by their bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(str((part.shape, part.dtype)).encode())
            digest.update(np.ascontiguousarray(part).tobytes())
            continue
        value = asdict(part) if is_dataclass(part) else part
        if isinstance(value, dict):
            value = {
                k: v
                for k, v in value.items()
                if k not in _NEUTRAL and not (k in _ADDED_AT_DEFAULT and _ADDED_AT_DEFAULT[k] == v)
            }
        digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def job_checkpoint_dir(base: str | None, name: str, *parts: Any) -> str | None:
    """``base/name/<fingerprint>``, or None when checkpoints are off."""
    return str(Path(base) / name / fingerprint(*parts)) if base else None
