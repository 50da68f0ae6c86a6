"""`kedro run` as a user types it, in real processes: one clear line for a bad input or a bad
pipeline name, a named unknown node; the failed MLflow run carries the message; two runs of one
environment at once never mix, other environments go through, a stale lock is taken over.

All runs start at once (a module fixture) and the tests read their results: each `kedro run`
spends most of its time importing torch and MLflow, which overlaps well.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
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
BAD_PARAMS = f"--params=dataset_name=bad,ingest.format=s3rec,ingest.path={BAD_FILE}"
DEAD_PID = 2**22 + 12345  # above Linux's pid_max default: never a running process
RUN_TIMEOUT_S = 240
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


def make_project(tmp_path_factory, name: str, template: Path) -> Path:
    project = copy_project(tmp_path_factory.mktemp(name))
    shutil.copy(template, project / "mlflow.db")
    with sqlite3.connect(project / "mlflow.db") as db:
        db.execute("update experiments set artifact_location = ?", ((project / "mlruns").as_uri(),))
    return project


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mlflow_template) -> dict[str, dict]:
    cli = make_project(tmp_path_factory, "cli", mlflow_template)
    (cli / BAD_FILE).parent.mkdir(parents=True)
    (cli / BAD_FILE).write_bytes(b"1 2 3\n2 caf\xe9 4\n")
    stale = run_lock.lock_path(cli, None)
    stale.write_text(json.dumps({"pid": DEAD_PID, "command": "kedro run (killed)"}))

    pair = make_project(tmp_path_factory, "pair", mlflow_template)
    twin = pair / "conf" / "twin"
    twin.mkdir()
    (twin / "globals.yml").write_text("dataset: twin\n")
    (twin / "parameters_ingest.yml").write_text("ingest:\n  path: data/01_raw/ml-latest-small\n")

    logs = tmp_path_factory.mktemp("logs")
    started = {
        "unknown_pipeline": start_run(cli, logs, "--pipelines=pretrainx"),
        "unknown_node_verbose": start_run(
            cli, logs, "--pipelines=ingest", "--nodes=x", "--verbose"
        ),
        "bad_input": start_run(cli, logs, "--pipelines=ingest", BAD_PARAMS),
        "pair_a": start_run(pair, logs, "--pipelines=ingest"),
        "pair_b": start_run(pair, logs, "--pipelines=ingest"),
        "other_env": start_run(pair, logs, "--pipelines=ingest", "--env=twin"),
    }
    results = {name: finish_run(*process) for name, process in started.items()}
    results["_projects"] = {"cli": cli, "pair": pair}
    return results


def test_unknown_pipeline_names_the_pipelines_that_exist(runs):
    result = runs["unknown_pipeline"]
    assert result["returncode"] != 0
    assert "Error: unknown pipeline(s) pretrainx; this project has: augment," in result["stderr"]
    assert "ingest, pretrain, report, sequences, tune" in result["stderr"]
    assert "Traceback" not in result["stderr"]


def test_unknown_node_is_named_and_verbose_shows_the_traceback(runs):
    result = runs["unknown_node_verbose"]
    assert result["returncode"] != 0
    assert "Pipeline does not contain nodes named ['x']" in result["stderr"]
    assert "Traceback" in result["stderr"]


def test_bad_input_is_one_line_and_the_failed_mlflow_run_carries_it(runs):
    result, project = runs["bad_input"], runs["_projects"]["cli"]
    assert result["returncode"] != 0
    assert error_lines(result["stderr"]) == [
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


def test_two_runs_of_one_environment_at_once_never_mix(runs):
    a, b, project = runs["pair_a"], runs["pair_b"], runs["_projects"]["pair"]
    finished = [r for r in (a, b) if r["returncode"] == 0]
    refused = [(r, o) for r, o in ((a, b), (b, a)) if r["returncode"] != 0]
    assert finished, f"neither run finished:\n{a['stderr'][-1500:]}\n{b['stderr'][-1500:]}"
    for result, other in refused:  # stopped at once, naming the run that held the project
        assert "another run of environment 'local' is using this project" in result["stderr"]
        assert f"pid {other['pid']} " in result["stderr"]
        assert "Traceback" not in result["stderr"]
    events = pd.read_parquet(
        project / "data" / "02_intermediate" / "ml-latest-small" / "interactions.parquet"
    )
    assert len(events) == EMBEDDED_EVENTS
    assert not run_lock.lock_path(project, None).exists()


def test_another_environment_is_not_blocked(runs):
    result, project = runs["other_env"], runs["_projects"]["pair"]
    assert result["returncode"] == 0, result["stderr"][-2000:]
    events = pd.read_parquet(project / "data" / "02_intermediate" / "twin" / "interactions.parquet")
    assert len(events) == EMBEDDED_EVENTS
    assert not run_lock.lock_path(project, "twin").exists()


def start_run(
    project: Path, logs: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, Path]:
    """Output goes to a file: pipes left unread while another run is awaited would fill up
    and stall a run in the middle of an MLflow write, holding sqlite's lock."""
    log = logs / f"{len(list(logs.iterdir()))}.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "kedro", "run", *args],
            cwd=project,
            env={
                **os.environ,
                "CLUE_NUM_THREADS": "1",
                "COLUMNS": "200",
                "PYTHONFAULTHANDLER": "1",
                **(env or {}),
            },
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    return process, log


def finish_run(process: subprocess.Popen, log: Path) -> dict:
    try:
        process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # faulthandler writes every thread's stack to the log
        process.send_signal(signal.SIGABRT)
        process.wait(timeout=60)
        pytest.fail(f"kedro run {process.args[4:]} hung:\n{log.read_text()[-6000:]}")
    return {
        "returncode": process.returncode,
        "stderr": re.sub(r"\s+\n", "\n", log.read_text()),
        "pid": process.pid,
    }


def error_lines(output: str) -> list[str]:
    """The lines of a run's output that report an error to the user."""
    return [line for line in output.splitlines() if line.startswith("Error:")]
