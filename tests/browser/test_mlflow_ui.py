"""The MLflow UI shows a run logged into the kind of store the project uses (sqlite)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.browser.conftest import dump_dom, free_port, running_process

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MLFLOW_CLI = Path(sys.executable).with_name("mlflow")
SERVER_START_TIMEOUT_S = 240  # the server imports much of MLflow; slow on a busy 2-core box


def _log_run(tracking_uri: str, artifacts: Path, run_name: str) -> str:
    """One run with a param and a metric, written with the client (no global MLflow state)."""
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("clue-ui-check", artifact_location=artifacts.as_uri())
    run = client.create_run(experiment_id, run_name=run_name)
    client.log_param(run.info.run_id, "encoder.dropout", 0.3)
    client.log_metric(run.info.run_id, "pretrain/loss", 1.25, step=1)
    client.set_terminated(run.info.run_id)
    return experiment_id


def test_mlflow_ui_lists_the_logged_run(chromium, tmp_path):
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_name = f"clue-ui-check-{uuid.uuid4().hex[:8]}"
    experiment_id = _log_run(tracking_uri, tmp_path / "mlruns", run_name)
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        # No background job workers: the UI does not need them and they slow the start.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [
        str(MLFLOW_CLI),
        "server",
        "--backend-store-uri",
        tracking_uri,
        "--default-artifact-root",
        (tmp_path / "mlruns").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    base = f"http://127.0.0.1:{port}"
    with running_process(
        command, f"{base}/health", tmp_path / "server.log", SERVER_START_TIMEOUT_S, env
    ):
        # The runs tab: an experiment's landing page in MLflow 3 may be the GenAI overview.
        dom = dump_dom(chromium, f"{base}/#/experiments/{experiment_id}/runs", tmp_path / "profile")

    assert "clue-ui-check" in dom, "the experiment name is not on the page: the UI did not load"
    assert run_name in dom, f"run {run_name!r} is not in the rendered runs table"
