"""Run the real project (`kedro run`) in a throw-away copy, so the checkout stays clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

# Enough epochs for a metric history, small enough for a test on 2 cores.
TINY_BUDGET = (
    "--params=pretrain.train.epochs=2,pretrain.train.checkpoint_every_steps=3,"
    "finetune.train.epochs=2"
)


def copy_project(destination: Path) -> Path:
    """pyproject, conf/ (without conf/local contents), src/ and the embedded data."""
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO_ROOT / name, destination / name)
    shutil.copytree(  # Kedro checks the project has its source folder
        REPO_ROOT / "src", destination / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO_ROOT / "conf", destination / "conf", ignore=_local_conf)
    shutil.copytree(
        REPO_ROOT / "data" / "01_raw" / "ml-latest-small",
        destination / "data" / "01_raw" / "ml-latest-small",
    )
    (destination / "conf" / "local").mkdir(exist_ok=True)
    return destination


def _local_conf(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if Path(folder).name == "local" and n != ".gitkeep"]


def _kedro_run_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kedro", "run", *args]


def _one_thread(env: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "CLUE_NUM_THREADS": "1", **(env or {})}


def start_kedro_run(project: Path, *args: str) -> subprocess.Popen:
    """``kedro run ARGS`` started in the background, its output in ``project/kedro-run.log``
    (a file, not a pipe that nobody reads while the run goes on)."""
    with (project / "kedro-run.log").open("w") as log:  # the child keeps its own copy
        return subprocess.Popen(
            _kedro_run_command(*args),
            cwd=project,
            env=_one_thread(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def kedro_run(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``kedro run ARGS`` as a user types it, in its own process.

    A process per run, as on the command line: one MLflow run each, and no torch thread
    setting or active MLflow run left behind in the test process.
    """
    return subprocess.run(
        _kedro_run_command(*args),
        cwd=project,
        env=_one_thread(env),
        capture_output=True,
        text=True,
        timeout=600,
    )
