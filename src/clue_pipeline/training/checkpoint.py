"""Atomic training checkpoints that load with ``torch.load(weights_only=True)``.

A run killed at any instant (power loss, SIGKILL, a pre-empted node) must leave either the previous
checkpoint or the new one on disk, never a half-written file; the training loop also keeps the one
before (``last.prev.pt``) in case the newest is damaged later: the state is written to a temporary
file in the same folder, flushed to the disk, and renamed over the old one (``os.replace`` is atomic
within one file system). Everything stored is a tensor or a plain Python value, so loading never
runs pickled code.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

CHECKPOINT_NAME = "last.pt"

logger = logging.getLogger(__name__)


def checkpoint_path(checkpoint_dir: str | os.PathLike[str]) -> Path:
    """Where the loop keeps its rolling checkpoint inside ``checkpoint_dir``."""
    return Path(checkpoint_dir) / CHECKPOINT_NAME


def previous_path(path: str | os.PathLike[str]) -> Path:
    """The checkpoint before ``path`` (``last.pt`` -> ``last.prev.pt``), kept as a fallback."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(
    path: str | os.PathLike[str], state: dict[str, Any], keep_previous: bool = False
) -> Path:
    """Write ``state`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    ``keep_previous`` first renames the old file to :func:`previous_path`: a file damaged
    after it was written (a full disk, a bad copy, a bit flip) then costs one interval of
    training, not the run.
    """
    return write_atomic(path, lambda stream: torch.save(state, stream), keep_previous=keep_previous)


def write_atomic(
    path: str | os.PathLike[str], write: Callable[[BinaryIO], Any], keep_previous: bool = False
) -> Path:
    """Let ``write`` fill a temp file beside ``path``, persist it, then rename it over ``path``.

    With ``keep_previous`` the old ``path`` is renamed to :func:`previous_path` just before;
    killed between the two renames, the folder holds the previous file alone, which
    :func:`load_latest_checkpoint` finds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        if keep_previous and path.exists():
            os.replace(path, previous_path(path))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, refusing anything but tensors/plain data."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise ValueError(
            f"checkpoint {path} could not be read with weights_only=True "
            f"(expected a file written by save_checkpoint): {error}"
        ) from error


def load_latest_checkpoint(
    path: str | os.PathLike[str], map_location: str = "cpu"
) -> dict[str, Any] | None:
    """The newest readable of ``path`` and its :func:`previous_path`; None if neither exists.

    A truncated or corrupt ``path`` is reported and passed over for the previous one; when no
    file can be read, the error names the files to delete to start over.
    """
    path = Path(path)
    candidates = [p for p in (path, previous_path(path)) if p.exists()]
    failures = []
    for candidate in candidates:
        try:
            state = load_checkpoint(candidate, map_location)
        except ValueError as error:
            failures.append(f"{candidate}: {error.__cause__ or error}")
            continue
        if failures:
            logger.warning(
                "checkpoint %s could not be read; resuming from the previous one, %s (%s)",
                path,
                candidate,
                failures[0],
            )
        elif candidate != path:
            logger.warning("checkpoint %s is missing; resuming from %s", path, candidate)
        return state
    if failures:
        raise ValueError(
            f"no readable checkpoint to resume from: {'; '.join(failures)}. Delete "
            f"{' and '.join(str(p) for p in candidates)} to start this training over, or set "
            "resume: false"
        )
    return None


def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """All random states a training step may draw from, as tensors and plain Python values."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch_cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": _python_state_to_plain(random.getstate()),
        "generator": generator.get_state() if generator is not None else None,
    }
    return state


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Put back the random states captured by :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch_cpu"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["name"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if generator is not None and state["generator"] is not None:
        generator.set_state(state["generator"])


def _python_state_to_plain(state: tuple) -> tuple:
    version, internal, gauss = state
    return int(version), [int(value) for value in internal], gauss


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself; not every platform lets a folder be opened, hence the guard."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
