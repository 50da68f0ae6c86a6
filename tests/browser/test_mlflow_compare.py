"""MLflow's own compare view puts methods side by side: the runs of a real `kedro run`.

The store is the one the whole default chain wrote (the ``finished_project`` fixture, shared
with the other whole-run tests), served by ``mlflow server`` on 127.0.0.1. The runs page,
filtered by the ``method`` and ``task`` tags, lists the child runs; the compare page of
CLUE's and CLUE-Zero's next-item runs shows both names and ``test/ndcg_at_10``.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.browser.conftest import (
    dump_dom,
    keep_screenshot,
    mlflow_server,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PARENT = "ml-latest-small: full chain"
ORDER_BY = "metrics.`test/ndcg_at_10`"


@pytest.fixture(scope="module")
def next_item_runs(finished_project: Path) -> dict:
    """The default run's experiment and its CLUE and CLUE-Zero next-item child runs."""
    client = MlflowClient(f"sqlite:///{finished_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("clue-pipeline")
    (parent,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.runName` = '{PARENT}'"
    )
    children = client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' "
            "AND tags.task = 'next_item' AND tags.stage = 'finetune'"
        ),
    )
    by_method = {run.data.tags["method"]: run for run in children}
    return {"experiment_id": experiment.experiment_id, "parent": parent, "runs": by_method}


@pytest.fixture(scope="module")
def mlflow_ui(finished_project: Path, tmp_path_factory) -> str:
    logs = tmp_path_factory.mktemp("mlflow-ui")
    with mlflow_server(
        finished_project / "mlflow.db", finished_project / "mlruns", logs / "server.log"
    ) as base:
        yield base


def _runs_page(base: str, experiment_id: str, search: str) -> str:
    """The runs table filtered by ``search``, best test NDCG@10 first.

    Sorted by anything but the start time, MLflow lists matching child runs flat rather
    than folded under their parent run.
    """
    query = urllib.parse.urlencode(
        {"searchFilter": search, "orderByKey": ORDER_BY, "orderByAsc": "false"},
        quote_via=urllib.parse.quote,
    )
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def test_the_runs_page_lists_child_runs_by_their_method_tag(
    chromium, mlflow_ui, next_item_runs, tmp_path
):
    experiment_id = next_item_runs["experiment_id"]
    names = {method: run.info.run_name for method, run in next_item_runs["runs"].items()}
    assert {"clue", "clue_zero", "mip", "gru", "cnn"} <= set(names)

    dom = dump_dom(
        chromium,
        _runs_page(mlflow_ui, experiment_id, "tags.stage = 'finetune' AND tags.task = 'next_item'"),
        tmp_path / "profile-all",
    )
    missing = [name for name in names.values() if name not in dom]
    assert not missing, f"child runs not listed on the runs page: {missing}"

    dom = dump_dom(
        chromium,
        _runs_page(mlflow_ui, experiment_id, "tags.method = 'clue_zero'"),
        tmp_path / "profile-method",
    )
    assert names["clue_zero"] in dom
    assert "coldstart clue_zero seed 42" in dom
    for other in ("clue", "gru", "cnn"):
        assert f">{names[other]}<" not in dom, f"{names[other]} shown under method = clue_zero"


def test_the_compare_page_puts_clue_beside_clue_zero(chromium, mlflow_ui, next_item_runs, tmp_path):
    runs = [next_item_runs["runs"][m] for m in ("clue", "clue_zero")]
    query = urllib.parse.urlencode(
        {
            "runs": json.dumps([run.info.run_id for run in runs]),
            "experiments": json.dumps([next_item_runs["experiment_id"]]),
        },
        quote_via=urllib.parse.quote,
    )
    url = f"{mlflow_ui}/#/compare-runs?{query}"

    dom = dump_dom(chromium, url, tmp_path / "profile-compare")

    for run in runs:
        assert run.info.run_name in dom, f"{run.info.run_name} is not on the compare page"
    assert "test/ndcg_at_10" in dom, "the shared test metric is not compared"
    png = screenshot(
        chromium, url, tmp_path / "mlflow_compare.png", tmp_path / "profile-shot", (1600, 2100)
    )
    keep_screenshot(png)
