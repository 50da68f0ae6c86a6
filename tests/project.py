"""Run the real project (KedroSession) in a throw-away copy, so the checkout stays clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import REPO_ROOT

# Enough epochs for a metric history, small enough for a test on 2 cores.
TINY_BUDGET = {
    "pretrain": {"train": {"epochs": 2, "checkpoint_every_steps": 3}},
    "finetune": {"train": {"epochs": 2}},
}


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


def run_project(project: Path, pipelines: list[str] | None = None, params: dict | None = None):
    """``kedro run`` in ``project`` (the caller has chdir-ed there: MLflow's sqlite URI is
    relative to the working directory)."""
    bootstrap_project(project)
    merged = _deep_merge(TINY_BUDGET, params or {})
    with KedroSession.create(project_path=project, runtime_params=merged) as session:
        return session.run(pipeline_names=pipelines)


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _deep_merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def kedro_run(project: Path, *args: str) -> subprocess.CompletedProcess:
    """``kedro run ARGS`` as a user types it, in its own process (one MLflow run each)."""
    return subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        env={**os.environ, "CLUE_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
