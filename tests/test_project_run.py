"""The whole chain in a real KedroSession on the embedded data, tracked in a real MLflow store.

Runs in a copy of the project (conf/ and the embedded data) so the checkout stays clean; a tiny
training budget keeps it to about a minute on 2 cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from tests.conftest import REPO_ROOT

TINY_BUDGET = {
    "pretrain": {"train": {"epochs": 2, "checkpoint_every_steps": 5}},
    "finetune": {"train": {"epochs": 2}},
}


def copy_project(destination: Path) -> Path:
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO_ROOT / name, destination / name)
    shutil.copytree(REPO_ROOT / "conf", destination / "conf", ignore=_local_conf)
    raw = destination / "data" / "01_raw" / "ml-latest-small"
    shutil.copytree(REPO_ROOT / "data" / "01_raw" / "ml-latest-small", raw)
    (destination / "conf" / "local").mkdir(exist_ok=True)
    return destination


def _local_conf(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if Path(folder).name == "local" and n != ".gitkeep"]


def run_project(project: Path, pipeline: str | None = None, extra: dict | None = None) -> None:
    bootstrap_project(project)
    params = {**TINY_BUDGET, **(extra or {})}
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_names=[pipeline] if pipeline else None)


@pytest.fixture(scope="module")
def finished_project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("project"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        run_project(project)
    return project


def test_default_run_writes_metrics_of_every_task_and_method(finished_project: Path):
    reporting = finished_project / "data" / "08_reporting" / "ml-latest-small"
    table = (reporting / "metrics.md").read_text()
    for row in ("| next_item | clue |", "| next_item | clue_zero |", "| coldstart | clue |"):
        assert row in table
    assert "profiling skipped" in table  # ml-latest-small has no user attributes
    versions = list((reporting / "metrics" / "next_item" / "clue.json").iterdir())
    record = json.loads((versions[0] / "clue.json").read_text())
    assert record["history_excluded"] is False
    assert 0.0 <= record["metrics"]["ndcg@10"] <= record["metrics"]["recall@10"] <= 1.0


def test_mlflow_store_holds_the_run(finished_project: Path):
    mlflow.set_tracking_uri(f"sqlite:///{finished_project / 'mlflow.db'}")
    client = MlflowClient()
    experiment = client.get_experiment_by_name("clue-pipeline")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["encoder.hidden"] == "64"
    history = client.get_metric_history(run.info.run_id, "next_item.clue_pretrain_history/loss")
    assert [m.step for m in history] == [0, 1]
    assert "next_item.clue/ndcg_at_10" in run.data.metrics
    versions = client.search_model_versions("name='clue-user-vectors'")
    assert versions and versions[0].run_id == run.info.run_id
