"""A new SQLite tracking store opened by several processes at once is built once."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

from clue_pipeline.tracking_store import open_tracking_store, sqlite_path


def _open_after(barrier, uri: str) -> None:
    barrier.wait()
    open_tracking_store(uri)


def test_processes_opening_a_new_store_together_all_succeed(tmp_path: Path):
    # Unlocked, MLflow's migrations collide here in most tries ("duplicate column name").
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(3)
    workers = [spawn.Process(target=_open_after, args=(barrier, uri)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    with sqlite3.connect(tmp_path / "store" / "mlflow.db") as db:
        assert db.execute("select count(*) from alembic_version").fetchone() == (1,)
        assert db.execute("select count(*) from experiments").fetchone()[0] >= 1


def test_only_local_sqlite_stores_are_locked():
    assert sqlite_path("sqlite:///mlflow.db") == Path("mlflow.db")
    assert sqlite_path("sqlite:////srv/runs/mlflow.db?timeout=30") == Path("/srv/runs/mlflow.db")
    assert sqlite_path("http://mlflow.example:5000") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path(None) is None
