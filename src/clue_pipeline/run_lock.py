"""One `kedro run` at a time per project and run-environment: a lock file under ``data/``.

Two runs of the same environment write the same files; interleaved, they leave a mixture of
both. The lock is ``data/.kedro-run.<env>.lock``, held with ``flock`` and naming its holder
(pid, start time, command). The kernel drops a ``flock`` when its process dies, however it
dies, so a lock left by a killed run is stale by construction: the next run takes it over and
says whose it was. Different environments write different folders and use different locks.
A run started by the holder itself (the report pipeline runs its cells as `kedro run`
processes) works under its parent's lock instead of waiting for it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

DEFAULT_ENV = "local"


class ProjectLockedError(click.ClickException):
    """Another run of this environment holds the project; printed without a traceback."""


@dataclass
class RunLock:
    """A held lock (``fd`` -1: shared with the parent run that holds it); ``previous`` is
    what a stale lock file said about its dead holder."""

    path: Path
    fd: int
    previous: dict[str, Any] | None = None

    def release(self) -> None:
        """Remove the file while still holding it, then let go (idempotent)."""
        if self.fd < 0:
            return
        try:
            if _same_file(self.path, self.fd):
                self.path.unlink()
        finally:
            os.close(self.fd)
            self.fd = -1


def lock_path(project: Path, env: str | None) -> Path:
    return Path(project) / "data" / f".kedro-run.{env or DEFAULT_ENV}.lock"


def acquire(project: Path, env: str | None, command: str | None = None) -> RunLock:
    """Hold the lock of ``env`` or raise :class:`ProjectLockedError` naming its holder."""
    path = lock_path(project, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            if holder.get("pid") in _ancestors():  # e.g. the report pipeline's cell runs
                return RunLock(path, -1, None)
            raise ProjectLockedError(_describe_holder(path, env, holder)) from None
        if not _same_file(path, fd):  # the holder removed it between our open and flock
            os.close(fd)
            continue
        previous = _read(fd)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": command or " ".join(["kedro", *sys.argv[1:]]),
            "env": env or DEFAULT_ENV,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        return RunLock(path, fd, previous or None)


def _describe_holder(path: Path, env: str | None, holder: dict[str, Any]) -> str:
    who = (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
        f"{holder.get('started', '?')}: `{holder.get('command', '?')}`"
        if holder
        else "a run that is just starting"
    )
    return (
        f"another run of environment '{env or DEFAULT_ENV}' is using this project ({who}); "
        f"its outputs would mix with this run's. Wait for it to finish, or run another "
        f"environment (--env). Lock: {path}"
    )


def _ancestors() -> set[int]:
    """Pids of this process's parent, grandparent, ... (Linux /proc; else the parent only)."""
    found, pid = set(), os.getppid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state letter
    return found


def _read(fd: int) -> dict[str, Any]:
    data = os.pread(fd, 4096, 0)
    try:
        record = json.loads(data.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"command": data[:200].decode(errors="replace").strip()}
    return record if isinstance(record, dict) else {}


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
