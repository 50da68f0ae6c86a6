"""The parent run a user opens in MLflow: one name per metric, the test table as metrics,
readable tags, and the experiment marked as machine learning, not GenAI."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from clue_pipeline.pipelines.evaluate.nodes import summarise_metrics
from clue_pipeline.run_summary import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    VIEW_TAG,
    RunSummaryHook,
    metric_name,
    parent_metrics,
    readable_tags,
    rounded,
    runner_name,
    runs_table_url,
    runs_table_view,
    set_experiment_tag,
    typed_command,
)
from clue_pipeline.tracking import job_test_metrics

RANKING = {"recall@10": 0.0634123456789, "mrr@10": 0.02, "ndcg@10": 0.03333333, "n_users": 610}
RECORDS = {
    "next_item__clue": {"task": "next_item", "method": "clue", "metrics": RANKING},
    "coldstart__pop": {"task": "coldstart", "method": "pop", "metrics": {"mrr@10": 0.1}},
    "profiling__clue": {
        "task": "profiling",
        "method": "clue",
        "metrics": {"gender": {"accuracy": 0.71234, "macro_f1": 0.6, "majority_rate": 0.7, "n": 9}},
    },
    "profiling__pop": {"task": "profiling", "method": "pop", "skipped": "no attributes"},
}


def test_one_name_per_metric():
    assert metric_name("recall@10") == "recall_at_10"
    assert metric_name("gender.accuracy") == "gender/accuracy"
    assert metric_name("macro_f1") == "macro_f1"


def test_the_parent_carries_the_test_table_under_task_and_method():
    summary, _ = summarise_metrics(**RECORDS)

    metrics = parent_metrics(summary["rows"])

    assert metrics == {
        "next_item/clue/recall_at_10": 0.0634,
        "next_item/clue/mrr_at_10": 0.02,
        "next_item/clue/ndcg_at_10": 0.0333,
        "coldstart/pop/mrr_at_10": 0.1,
        "profiling/clue/gender/accuracy": 0.7123,
        "profiling/clue/gender/macro_f1": 0.6,
    }


def test_metrics_md_columns_are_the_names_mlflow_shows():
    _, markdown = summarise_metrics(**RECORDS)

    assert "| task | method | recall_at_10 | mrr_at_10 | ndcg_at_10 |" in markdown
    assert "@" not in markdown.split("Full ranking")[0]
    child = job_test_metrics(RECORDS["next_item__clue"])
    assert child["test/recall_at_10"] == 0.0634  # as metrics.md prints it
    assert "| next_item | clue | 0.0634 |" in markdown


def test_rounding_keeps_small_values_readable():
    assert rounded(0.123456789) == 0.1235
    assert rounded(7) == 7.0
    assert rounded(0.0000123456) == 0.0000123


def test_tags_name_the_runner_the_lists_and_the_command_as_typed():
    run_params = {
        "run_id": "2026-12-07T00.00.00.000Z",
        "runner": "<kedro.runner.sequential_runner.SequentialRunner object at 0x7f3a2b>",
        "pipeline_names": ["__default__"],
        "runtime_params": {"ingest": {"format": "generic"}},
        "tags": [],
        "env": "local",
    }
    argv = ["/work/.venv/bin/kedro", "run", "--params", "ingest.format=generic"]

    tags = readable_tags(run_params, argv, "kedro run --pipeline=__default__")

    assert tags == {
        "kedro_command": "kedro run --params ingest.format=generic",
        "runner": "SequentialRunner",
        "pipeline_names": "__default__",
        "runtime_params": "ingest.format=generic",
    }


def test_a_session_started_from_python_drops_the_default_pipeline_from_the_command():
    assert typed_command(["pytest"], "kedro run --pipeline=__default__") == "kedro run"
    assert typed_command([], "kedro run --pipeline=pretrain") == "kedro run --pipeline=pretrain"
    assert typed_command(["/x/kedro/__main__.py", "run"], "") == "kedro run"
    assert runner_name("ThreadRunner") == "ThreadRunner"


def test_the_runs_table_link_asks_for_the_machine_learning_view():
    url = runs_table_url("127.0.0.1", "5000", "1")
    assert url == (
        "http://127.0.0.1:5000/#/experiments/1/runs"
        "?workflowType=machine_learning&viewStateShareKey=test-metrics"
    )


def test_the_runs_table_view_shows_test_metrics_as_columns():
    view = json.loads(runs_table_view(["next_item/clue/ndcg_at_10", "next_item/clue/mrr_at_10"]))

    assert view["selectedColumns"] == [
        "metrics.`test/ndcg_at_10`",
        "metrics.`test/recall_at_10`",
        "metrics.`next_item/clue/ndcg_at_10`",
    ]


@pytest.fixture
def tracking(tmp_path):
    previous = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("clue-pipeline", (tmp_path / "mlruns").as_uri())
    yield MlflowClient(uri), experiment
    if mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def test_the_hook_rewrites_tags_marks_the_experiment_and_logs_the_table(tracking):
    client, experiment = tracking
    run = mlflow.start_run(experiment_id=experiment)
    run_params = {"run_id": "session-1", "runner": "<a.b.SequentialRunner object at 0x1>"}
    mlflow.set_tags({**run_params, "kedro_command": "kedro run --pipeline=__default__"})
    hook = RunSummaryHook()

    hook.before_pipeline_run(run_params, None, None)
    summary, _ = summarise_metrics(**RECORDS)
    hook.after_node_run(None, None, {}, {"metrics_summary": summary})

    logged = client.get_run(run.info.run_id)
    assert logged.data.metrics["next_item/clue/ndcg_at_10"] == 0.0333
    assert "run_id" not in logged.data.tags
    assert logged.data.tags["runner"] == "SequentialRunner"
    assert "__default__" not in logged.data.tags["kedro_command"]
    tags = client.get_experiment(experiment).tags
    assert tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert "metrics.`next_item/clue/ndcg_at_10`" in json.loads(tags[VIEW_TAG])["selectedColumns"]


def test_an_experiment_tag_inserted_by_a_concurrent_run_is_updated_on_the_second_try():
    class RacedClient:  # the first insert loses the race to another run of the project
        def __init__(self) -> None:
            self.calls: list[tuple] = []

        def set_experiment_tag(self, experiment_id, key, value) -> None:
            self.calls.append((experiment_id, key, value))
            if len(self.calls) == 1:
                raise MlflowException("UNIQUE constraint failed: experiment_tags.key")

    client = RacedClient()
    set_experiment_tag(client, "1", "mlflow.experimentKind", "custom_model_development")
    assert client.calls == [("1", "mlflow.experimentKind", "custom_model_development")] * 2
