"""`kedro run` as a user types it, in real processes: one clear line for a bad input, a bad
pipeline or node name; the failed MLflow run carries the message; the project lock refuses a
second run of the same environment, lets other environments through and takes over stale locks.

All runs start at once (a module fixture) and the tests read their results: each `kedro run`
spends most of its time importing torch and MLflow, which overlaps well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from clue_pipeline import run_lock
from tests.project import copy_project

pytestmark = pytest.mark.slow

BAD_FILE = "data/01_raw/bad/latin.txt"
BAD_PARAMS = f"--params=ingest.format=s3rec,ingest.path={BAD_FILE}"
DEAD_PID = 2**22 + 12345  # above Linux's pid_max default: never a running process
EMBEDDED_EVENTS = 100_836  # ratings.csv of ml-latest-small


@pytest.fixture(scope="module")
def mlflow_template(tmp_path_factory) -> Path:
    """An MLflow store with the project's experiment, made once.

    Processes that start together on a fresh project would all create the store and the
    experiment at the same moment (kedro-mlflow does so before any pipeline runs) and race on
    sqlite's schema migration; a user starts one run first. Each project gets a copy.
    """
    store = tmp_path_factory.mktemp("store") / "mlflow.db"
    client = MlflowClient(f"sqlite:///{store}")
    client.create_experiment("clue-pipeline", artifact_location=(store.parent / "mlruns").as_uri())
    return store


def _project(tmp_path_factory, name: str, template: Path) -> Path:
    project = copy_project(tmp_path_factory.mktemp(name))
    shutil.copy(template, project / "mlflow.db")
    with sqlite3.connect(project / "mlflow.db") as db:
        db.execute("update experiments set artifact_location = ?", ((project / "mlruns").as_uri(),))
    return project


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mlflow_template) -> dict[str, dict]:
    cli = _project(tmp_path_factory, "cli", mlflow_template)
    (cli / BAD_FILE).parent.mkdir(parents=True)
    (cli / BAD_FILE).write_bytes(b"1 2 3\n2 caf\xe9 4\n")
    stale = run_lock.lock_path(cli, None)
    stale.write_text(json.dumps({"pid": DEAD_PID, "command": "kedro run (killed)"}))

    locked = _project(tmp_path_factory, "locked", mlflow_template)
    twin = locked / "conf" / "twin"
    twin.mkdir()
    (twin / "globals.yml").write_text("dataset: twin\n")
    (twin / "parameters_ingest.yml").write_text("ingest:\n  path: data/01_raw/ml-latest-small\n")
    holder = run_lock.acquire(locked, None, command="test holder")

    pair = _project(tmp_path_factory, "pair", mlflow_template)
    started = {
        "unknown_pipeline": _start(cli, "--pipelines=pretrainx"),
        "unknown_node": _start(cli, "--pipelines=ingest", "--nodes=nosuchnode"),
        "unknown_node_verbose": _start(cli, "--pipelines=ingest", "--nodes=x", "--verbose"),
        "bad_input": _start(cli, "--pipelines=ingest", BAD_PARAMS),
        "locked": _start(locked, "--pipelines=ingest"),
        "other_env": _start(locked, "--pipelines=ingest", "--env=twin"),
        "pair_a": _start(pair, "--pipelines=ingest"),
        "pair_b": _start(pair, "--pipelines=ingest"),
    }
    try:
        results = {name: _finish(process) for name, process in started.items()}
    finally:
        holder.release()
    results["_projects"] = {"cli": cli, "locked": locked, "pair": pair, "holder": os.getpid()}
    return results


def test_unknown_pipeline_names_the_pipelines_that_exist(runs):
    result = runs["unknown_pipeline"]
    assert result["returncode"] != 0
    assert "Error: unknown pipeline(s) pretrainx; this project has: augment," in result["stderr"]
    assert "ingest, pretrain, report, sequences, tune" in result["stderr"]
    assert "Traceback" not in result["stderr"]


def test_unknown_node_is_one_line_and_verbose_shows_the_traceback(runs):
    quiet, verbose = runs["unknown_node"], runs["unknown_node_verbose"]
    assert quiet["returncode"] != 0 and verbose["returncode"] != 0
    assert "Error: Pipeline does not contain nodes named ['nosuchnode']" in quiet["stderr"]
    assert "--verbose shows the traceback" in quiet["stderr"]
    assert "Traceback" not in quiet["stderr"]
    assert "Traceback" in verbose["stderr"]


def test_bad_input_is_one_line_and_the_failed_mlflow_run_carries_it(runs):
    result, project = runs["bad_input"], runs["_projects"]["cli"]
    assert result["returncode"] != 0
    errors = [line for line in result["stderr"].splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: {BAD_FILE}, line 2: byte 0xe9 cannot be decoded as utf-8 (expected utf-8 "
        "text, or the file's real encoding in the parameters (e.g. encoding: latin-1)) "
        "(VERBOSE=1 or --verbose shows the traceback)"
    ]
    assert "Traceback" not in result["stderr"]
    with sqlite3.connect(project / "mlflow.db") as db:
        rows = db.execute(
            "select runs.status, tags.value from runs join tags on tags.run_uuid = runs.run_uuid "
            "where tags.key = 'error'"
        ).fetchall()
    assert len(rows) == 1
    status, message = rows[0]
    assert status == "FAILED"
    assert message.startswith(f"{BAD_FILE}, line 2: byte 0xe9")
    # the stale lock of a dead run was taken over, and released at the end
    assert "took over the stale lock" in result["stderr"] and str(DEAD_PID) in result["stderr"]
    assert not run_lock.lock_path(project, None).exists()
    assert not (project / "data" / "02_intermediate").exists()


def test_a_held_environment_refuses_at_once_and_names_the_holder(runs):
    result, project = runs["locked"], runs["_projects"]["locked"]
    assert result["returncode"] != 0
    assert "another run of environment 'local' is using this project" in result["stderr"]
    assert f"pid {runs['_projects']['holder']} " in result["stderr"]
    assert "`test holder`" in result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert not (project / "data" / "02_intermediate" / "ml-latest-small").exists()
    if (project / "mlflow.db").exists():
        with sqlite3.connect(project / "mlflow.db") as db:
            names = [r[0] for r in db.execute("select name from runs")]
        assert len(names) <= 1  # the twin environment's run alone


def test_another_environment_is_not_blocked(runs):
    result, project = runs["other_env"], runs["_projects"]["locked"]
    assert result["returncode"] == 0, result["stderr"][-2000:]
    events = pd.read_parquet(project / "data" / "02_intermediate" / "twin" / "interactions.parquet")
    assert len(events) == EMBEDDED_EVENTS
    assert not run_lock.lock_path(project, "twin").exists()


def test_two_runs_of_one_environment_at_once_never_mix(runs):
    a, b, project = runs["pair_a"], runs["pair_b"], runs["_projects"]["pair"]
    finished = [r for r in (a, b) if r["returncode"] == 0]
    refused = [(r, o) for r, o in ((a, b), (b, a)) if r["returncode"] != 0]
    assert finished, "neither run finished"
    for result, other in refused:  # stopped at once, naming the run that held the project
        assert "another run of environment 'local' is using this project" in result["stderr"]
        assert f"pid {other['pid']} " in result["stderr"]
    events = pd.read_parquet(
        project / "data" / "02_intermediate" / "ml-latest-small" / "interactions.parquet"
    )
    assert len(events) == EMBEDDED_EVENTS
    assert not run_lock.lock_path(project, None).exists()


def _start(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kedro", "run", *args],
        cwd=project,
        env={**os.environ, "CLUE_NUM_THREADS": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=300)
    return {
        "returncode": process.returncode,
        "stdout": stdout,
        "stderr": re.sub(r"\s+\n", "\n", stderr),
        "pid": process.pid,
    }
