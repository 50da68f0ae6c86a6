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
        [experiment.experiment_id],
        filter_string="tags.`mlflow.runName` = 'ml-latest-small: full chain'",
    )
    assert run.data.params["encoder.hidden"] == "64"
    assert run.data.params["pretrain.train.epochs"] == "2"
    # the test table, one metric per task x method x score, rounded as metrics.md shows it
    record = json.loads(
        latest_version(
            finished_project / "data/08_reporting/ml-latest-small/metrics/next_item/clue.json"
        ).read_text()
    )
    assert run.data.metrics["next_item/clue/ndcg_at_10"] == round(record["metrics"]["ndcg@10"], 4)
    assert {"coldstart/pop/mrr_at_10", "next_item/clue_zero/recall_at_10"} <= set(run.data.metrics)
    assert not any(key.startswith(("train/", "valid/")) for key in run.data.metrics)
    # tags a reader understands: no object repr, no second run id, the command as typed
    tags = run.data.tags
    assert tags["runner"] == "SequentialRunner"
    assert "run_id" not in tags
    assert tags["kedro_command"].startswith("kedro run")
    assert "__default__" not in tags["kedro_command"]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"pretraining_curves.png", "user_vectors_pca.png", "metrics.md"} <= artifacts
    resources = json.loads(
        Path(client.download_artifacts(run.info.run_id, "run_resources.json")).read_text()
    )
    stages = {row["stage"]: row for row in resources["stages"]}
    assert set(stages) == {
        "ingest",
        "sequences",
        "augment",
        "pretrain",
        "finetune",
        "evaluate",
        "embed",
    }
    assert all(row["seconds"] >= 0 and row["peak_rss_gib"] > 0.05 for row in stages.values())
    assert stages["pretrain"]["seconds"] > 0 and stages["finetune"]["seconds"] > 0
    assert sum(row["nodes"] for row in stages.values()) == len(resources["nodes"])
    versions = client.search_model_versions("name='clue-user-vectors'")
    assert run.info.run_id in {v.run_id for v in versions}


def test_each_training_job_is_a_child_run_with_the_same_metric_names(finished_project: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{finished_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("clue-pipeline")
    (parent,) = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`mlflow.runName` = 'ml-latest-small: full chain'",
    )
    children = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    jobs = {(c.data.tags["stage"], c.data.tags["task"], c.data.tags["method"]) for c in children}
    # ml-latest-small has no user attributes: profiling is skipped and has no runs
    pretraining = {
        ("pretrain", c, m) for c in ("next_item", "coldstart") for m in ("clue", "mip", "s3rec")
    }
    next_item = {
        ("finetune", "next_item", m)
        for m in ("clue", "clue_zero", "mip", "gru", "cnn", "caser", "s3rec", "pop")
    }
    coldstart = {
        ("finetune", "coldstart", m)
        for m in ("clue", "clue_zero", "nfm", "deepfm", "s3rec", "pop", "linear")
    }
    assert pretraining | next_item | coldstart <= jobs
    assert len(children) == len(jobs) == 6 + 10 + 10
    for child in children:
        tags = child.data.tags
        assert tags["dataset"] == "ml-latest-small" and tags["seed"] == "42", tags
        assert child.info.status == "FINISHED"
        history = client.get_metric_history(child.info.run_id, "train/loss")
        # the popularity floor counts items, the linear floor fits per C: no loss to log
        untrained = tags["method"] in ("pop", "linear")
        assert [m.step for m in history] == ([] if untrained else [0, 1])
        if tags["stage"] == "finetune":
            assert {"test/ndcg_at_10", "valid/ndcg_at_10", "test/recall_at_10"} <= set(
                child.data.metrics
            )
            assert child.data.params["train.epochs"] == "2"
            assert not any(key.startswith(("pretrain.", "simsiam.")) for key in child.data.params)
        else:
            assert "test/ndcg_at_10" not in child.data.metrics
            assert child.data.params["train.epochs"] == "2"
    by_method = {
        c.data.tags["method"]: c
        for c in children
        if c.data.tags["task"] == "next_item" and c.data.tags["stage"] == "finetune"
    }
    assert by_method["clue"].data.params["init"] == "next_item__clue_encoder"
    assert by_method["clue_zero"].data.params["init"] == "random"
