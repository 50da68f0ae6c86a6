"""The link a run ends with opens MLflow on its runs table, the test metrics as columns.

MLflow 3.17 opens an experiment in its GenAI view (traces) unless told otherwise, and its
runs table shows no metric until a user picks one; ``run_summary.runs_table_url`` asks for
both. The store is written here by the project's own hook on a small test table (no
training), so the test costs one MLflow server and one page load.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from clue_pipeline.pipelines.evaluate.nodes import summarise_metrics
from clue_pipeline.run_summary import RunSummaryHook, runs_table_url
from tests.browser.conftest import (
    dump_dom,
    keep_screenshot,
    mlflow_server,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PARENT = "ml-latest-small: full chain"
RECORDS = {
    f"{task}__{method}": {
        "task": task,
        "method": method,
        "metrics": {"recall@10": 0.1 + score, "mrr@10": score / 2, "ndcg@10": score},
    }
    for task, methods in {
        "next_item": {"clue": 0.0634, "clue_zero": 0.0512, "pop": 0.0201},
        "coldstart": {"clue": 0.0423, "pop": 0.0198},
    }.items()
    for method, score in methods.items()
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, str]:
    """A store with one parent run as `kedro run` leaves it, and one child run."""
    root = tmp_path_factory.mktemp("mlflow-runs-table")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("clue-pipeline", (root / "mlruns").as_uri())
        with mlflow.start_run(experiment_id=experiment, run_name=PARENT) as parent:
            hook = RunSummaryHook()
            hook.before_pipeline_run({"runner": "SequentialRunner"}, None, None)
            summary, _ = summarise_metrics(**RECORDS)
            hook.after_node_run(None, None, {}, {"metrics_summary": summary})
            with mlflow.start_run(run_name="next_item clue seed 42", nested=True):
                mlflow.log_metric("test/ndcg_at_10", 0.0634)
        assert parent.info.run_id
    finally:
        mlflow.set_tracking_uri(previous)
    return root, experiment


@pytest.fixture(scope="module")
def mlflow_ui(store, tmp_path_factory) -> str:
    root, _ = store
    with mlflow_server(root / "mlflow.db", root / "mlruns", root / "server.log") as base:
        yield base.rsplit(":", 1)[1]


def test_the_link_opens_the_runs_table_with_test_metric_columns(
    chromium, mlflow_ui, store, tmp_path
):
    _, experiment = store
    url = runs_table_url("127.0.0.1", mlflow_ui, experiment)

    # metric columns come in name order and only those in view are drawn: a wide window
    dom = dump_dom(chromium, url, tmp_path / "profile", (3600, 900))

    assert PARENT in dom, "the parent run is not listed"
    assert 'data-testid="experiment-view-runs-table"' in dom or "ag-root" in dom, "no runs table"
    for column in ("next_item/clue/ndcg_at_10", "coldstart/pop/ndcg_at_10"):
        assert f">{column}<" in dom, f"no {column} column in the runs table"
    assert ">0.0634<" in dom, "the parent's next_item/clue/ndcg_at_10 value is not shown"
    png = screenshot(chromium, url, tmp_path / "mlflow_runs.png", tmp_path / "shot", (1600, 700))
    keep_screenshot(png)
