"""What each stage's outputs were built from, so that no stage reads outputs of mixed origin.

A run that rewrites ``interactions`` and then stops in ``sequences`` leaves the new interactions
beside the sequences of the old ones; ``kedro run --pipelines=pretrain`` would read them as one
dataset. So after a node saves a file, the folder's ``.lineage.json`` records the file's content
hash and the hashes of the files it was built from (the node's file inputs, and those behind
its in-memory inputs). Before a run, each file it reads is followed back through its sources: a
source whose content changed since means the file, and every stage between it and this run, must
be rebuilt first. Files without a record (written before lineage was kept) are taken as they are.

Hashes are cached by (path, size, mtime), so a file is read once per run, and a rewrite with the
same content (a stage run again on the same data) changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SIDECAR = ".lineage.json"
_CHUNK = 1 << 20
_hashes: dict[tuple[str, int, int], str] = {}


def file_key(dataset: Any) -> Path | None:
    """The dataset's local file path (a versioned dataset's folder of versions); None for memory,
    parameters and remote stores."""
    path = getattr(dataset, "_filepath", None)
    if path is None or getattr(dataset, "_protocol", "file") not in ("file", None):
        return None
    return Path(str(path))


def current_file(key: Path) -> Path | None:
    """The file a load of ``key`` reads: itself, or a versioned dataset's latest version."""
    if key.is_file():
        return key
    if key.is_dir():
        versions = sorted(p.name for p in key.iterdir() if (p / key.name).is_file())
        if versions:
            return key / versions[-1] / key.name
    return None


def content_hash(key: Path) -> str | None:
    """sha256 of what a load of ``key`` reads now, or None when nothing is there. Content only:
    a new version with the same bytes (a pre-training resumed from finished checkpoints) is the
    same data."""
    file = current_file(key)
    if file is None:
        return None
    stat = file.stat()
    cache_key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if cache_key not in _hashes:
        digest = hashlib.sha256()
        with file.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
        _hashes[cache_key] = digest.hexdigest()[:24]
    return _hashes[cache_key]


def source_name(key: Path) -> str:
    """``key`` relative to the project (the working directory), so a moved copy still matches."""
    try:
        return key.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return key.as_posix()


def record(key: Path, stage: str, node: str, sources: dict[str, str | None]) -> None:
    """Notes in the sidecar of ``key``'s folder that the file now there was built from
    ``sources`` (path -> content hash) by ``node`` of ``stage``."""
    sidecar = key.parent / SIDECAR
    records = _read(sidecar)
    records[key.name] = {
        "stage": stage,
        "node": node,
        "hash": content_hash(key),
        "sources": dict(sorted(sources.items())),
    }
    temporary = sidecar.with_name(f"{SIDECAR}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, sidecar)


def recorded(key: Path) -> dict[str, Any] | None:
    """The record of ``key``, or None where no run with lineage wrote it."""
    return _read(key.parent / SIDECAR).get(key.name)


@dataclass
class Staleness:
    """Files whose sources changed after they were built, and every stage to run again."""

    causes: list[str] = field(default_factory=list)
    stages: set[str] = field(default_factory=set)


def stale(keys: list[Path]) -> Staleness:
    """Follows ``keys`` back through their recorded sources; see the module's docstring."""
    found = Staleness()
    verdicts: dict[Path, bool] = {}
    for key in keys:
        _rebuild(key, found, verdicts)
    return found


def _rebuild(key: Path, found: Staleness, verdicts: dict[Path, bool]) -> bool:
    """Whether ``key`` must be built again (its sources, or theirs, changed since)."""
    if key in verdicts:
        return verdicts[key]
    verdicts[key] = False  # a cycle (none expected) ends here
    entry = recorded(key)
    now = content_hash(key)
    if entry is None or now is None:
        return False
    outdated = False
    if entry.get("hash") != now:
        found.causes.append(f"{key} changed after stage {entry['stage']} wrote it")
        outdated = True
    for source, then in entry.get("sources", {}).items():
        source_now = content_hash(Path(source))
        if then is not None and source_now is not None and source_now != then:
            found.causes.append(f"{key} (stage {entry['stage']}) was built from another {source}")
            outdated = True
        elif _rebuild(Path(source), found, verdicts):
            outdated = True
    if outdated:
        found.stages.add(entry["stage"])
    verdicts[key] = outdated
    return outdated


def _read(sidecar: Path) -> dict[str, Any]:
    try:
        records = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: no lineage to go by
    return records if isinstance(records, dict) else {}
