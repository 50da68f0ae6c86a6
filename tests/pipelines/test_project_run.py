"""The whole default chain in a real KedroSession on the embedded data, tracked in a real
MLflow store (sqlite), inspected through MlflowClient as a user of the MLflow UI would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def latest_version(folder: Path) -> Path:
    """The newest file of a versioned Kedro dataset folder (``<name>/<version>/<name>``)."""
    version = sorted(folder.iterdir())[-1]
    return version / folder.name


def test_default_run_writes_metrics_of_every_task_and_method(finished_project: Path):
    reporting = finished_project / "data" / "08_reporting" / "ml-latest-small"
    table = (reporting / "metrics.md").read_text()
    for method in ("clue", "clue_zero", "mip", "gru", "cnn", "caser", "clue_probe", "pop"):
        assert f"| next_item | {method} |" in table
    for method in ("clue", "clue_zero", "mip", "nfm", "deepfm", "pop"):
        assert f"| coldstart | {method} |" in table
    assert "profiling skipped" in table  # ml-latest-small has no user attributes
    record = json.loads(
        latest_version(reporting / "metrics" / "next_item" / "clue.json").read_text()
    )
    assert record["history_excluded"] is False
    metrics = record["metrics"]
    assert 0.0 <= metrics["ndcg@10"] <= metrics["recall@10"] <= metrics["recall@20"] <= 1.0
    assert metrics["n_users"] == 610
    for figure in ("pretraining_curves.png", "user_vectors_pca.png"):
        assert (reporting / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlflow_store_holds_params_histories_figures_and_model(finished_project: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{finished_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("clue-pipeline")
    # other tests add runs (pretrain, tune) to the same store later; this is the default one
    (run,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`mlflow.runName` = '__default__'"
    )
    assert run.data.params["encoder.hidden"] == "64"
    assert run.data.params["pretrain.train.epochs"] == "2"
    history = client.get_metric_history(run.info.run_id, "next_item.clue_pretrain_history/loss")
    assert [m.step for m in history] == [0, 1]
    finetune = client.get_metric_history(run.info.run_id, "next_item.clue_history/ndcg_10")
    assert len(finetune) == 2
    assert "next_item.clue/ndcg_at_10" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"pretraining_curves.png", "user_vectors_pca.png", "metrics.md"} <= artifacts
    versions = client.search_model_versions("name='clue-user-vectors'")
    assert run.info.run_id in {v.run_id for v in versions}
