"""The local MLflow store created by one process at a time.

A new ``sqlite:`` tracking store is built by running MLflow's schema migrations. Two processes
that open a store that does not exist yet (two run-environments started together, two
benchmark workers, ``kedro mlflow ui`` beside a first run) both migrate it, and one of them
fails with alembic's "expected to match one row". Opening the store under an exclusive
``flock`` beside the database makes the second wait and then find the tables in place.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from mlflow.tracking import MlflowClient

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(tracking_uri: str | None) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working folder, as SQLite
    reads it), or None for any other store."""
    if not isinstance(tracking_uri, str) or not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    path = tracking_uri[len(SQLITE_PREFIX) :].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def open_tracking_store(tracking_uri: str | None) -> None:
    """Create (or migrate) a local SQLite store while holding ``<database>.lock``; a no-op for
    other stores, whose servers do their own locking."""
    database = sqlite_path(tracking_uri)
    if database is None:
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        MlflowClient(tracking_uri=tracking_uri)  # builds the store, migrating a new database
