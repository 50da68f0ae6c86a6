"""The project lock between real processes, without Kedro: held, refused, stale, nested."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clue_pipeline import run_lock
from tests.conftest import REPO_ROOT

TRY_LOCK = (
    "import sys; from pathlib import Path; from clue_pipeline import run_lock\n"
    "try:\n"
    "    lock = run_lock.acquire(Path(sys.argv[1]), sys.argv[2] or None, 'probe')\n"
    "except run_lock.ProjectLockedError as error:\n"
    "    print('REFUSED', error.format_message())\n"
    "else:\n"
    "    print('HELD' if lock.fd >= 0 else 'SHARED')\n"
    "    lock.release()\n"
)


HOLD_LOCK = (
    "import sys; from pathlib import Path; from clue_pipeline import run_lock\n"
    "lock = run_lock.acquire(Path(sys.argv[1]), sys.argv[2] or None, "
    "'kedro run --pipelines=ingest')\n"
    "print('READY', flush=True); sys.stdin.read(); lock.release()\n"
)


def _probe(project: Path, env: str = "", via_shell: bool = False) -> str:
    command = [sys.executable, "-c", TRY_LOCK, str(project), env]
    if via_shell:  # a grandchild, as the report pipeline's cell runs are
        command = ["bash", "-c", shlex.join(command)]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_another_process_is_refused_with_the_holder_named(tmp_path):
    with _held(tmp_path, "") as holder:
        record = json.loads(run_lock.lock_path(tmp_path, None).read_text())
        assert record["pid"] == holder.pid and record["env"] == "local"
        answer = _probe(tmp_path)
    assert answer.startswith("REFUSED another run of environment 'local'")
    assert f"pid {holder.pid} " in answer and "`kedro run --pipelines=ingest`" in answer
    assert not run_lock.lock_path(tmp_path, None).exists()
    assert _probe(tmp_path) == "HELD"  # released: the next run goes ahead


def test_other_environments_are_not_blocked_and_child_runs_share_the_lock(tmp_path):
    with _held(tmp_path, "ml-100k"):
        assert _probe(tmp_path, "beauty") == "HELD"
        assert _probe(tmp_path, "ml-100k").startswith("REFUSED")
    lock = run_lock.acquire(tmp_path, "ml-100k")
    try:  # a grandchild of the holder, as the report pipeline's cell runs are
        assert _probe(tmp_path, "ml-100k", via_shell=True) == "SHARED"
    finally:
        lock.release()


@contextlib.contextmanager
def _held(project: Path, env: str) -> Iterator[subprocess.Popen]:
    """The lock held by another process (a sibling of the probes, not their parent)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(project), env],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    try:
        assert holder.stdout.readline().strip() == "READY"
        yield holder
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0


def test_a_stale_lock_of_a_dead_run_is_taken_over(tmp_path):
    path = run_lock.lock_path(tmp_path, None)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": 2**22 + 1, "command": "kedro run (killed)"}))
    lock = run_lock.acquire(tmp_path, None)
    assert lock.previous == {"pid": 2**22 + 1, "command": "kedro run (killed)"}
    lock.release()
    assert not path.exists()


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]"])
def test_an_unreadable_lock_file_is_taken_over(tmp_path, content):
    path = run_lock.lock_path(tmp_path, None)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    run_lock.acquire(tmp_path, None).release()
    assert not path.exists()
