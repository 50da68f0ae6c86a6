"""Representation health of pre-training: in the history, in MLflow, in a figure, and a warning
when the effective rank falls below ``pretrain.health.min_effective_rank``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from clue_pipeline.pipelines.pretrain.nodes import (
    plot_pretraining_health,
    pretrain_clue,
    pretrain_masked_items,
)
from clue_pipeline.tracking import STAGE_PRETRAIN, Job, job_history_metrics

HEALTH = ("effective_rank", "top2_share", "alignment", "uniformity", "user_std")
NUM_ITEMS = 30


def _corpus(users: int = 96, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    train = [list(rng.integers(1, NUM_ITEMS + 1, size=rng.integers(3, 12))) for _ in range(users)]
    item_index = pd.DataFrame({"item_id": range(NUM_ITEMS), "token": range(1, NUM_ITEMS + 1)})
    return pd.DataFrame({"train": train}), item_index


def _params(**objective) -> dict:
    return {
        "objective": {"name": "simsiam", **objective},
        "simsiam": {"proj_dim": 16, "pred_dim": 8},
        "masked_item": {"mask_ratio": 0.2},
        "health": {"users": 64, "min_effective_rank": 60.0},
        "train": {"epochs": 2, "batch_size": 32, "seed": 0, "device": "cpu"},
    }


ENCODER = {"max_len": 12, "hidden": 16, "blocks": 1, "heads": 2, "dropout": 0.2}
VIEWS = {"strategies": ["mask"], "mask_ratio": 0.3}


def test_each_epoch_logs_health_and_warns_below_the_rank_threshold(caplog):
    corpus, item_index = _corpus()
    with caplog.at_level(logging.WARNING, logger="clue_pipeline.tasks.pretraining"):
        _, history = pretrain_clue(corpus, item_index, VIEWS, ENCODER, _params())
    assert [entry["epoch"] for entry in history] == [0, 1]
    for entry in history:
        assert set(HEALTH) | {"projection_std", "z_std", "loss"} <= set(entry)
        assert 1.0 <= entry["effective_rank"] <= 16.0  # of hidden = 16: always below 60
    warnings = [r for r in caplog.records if "min_effective_rank = 60.0" in r.getMessage()]
    assert len(warnings) == 2, "one warning per epoch below the threshold"

    caplog.clear()
    quiet = {**_params(), "health": {"users": 64, "min_effective_rank": None}}
    with caplog.at_level(logging.WARNING, logger="clue_pipeline.tasks.pretraining"):
        pretrain_clue(corpus, item_index, VIEWS, ENCODER, quiet)
    assert not [r for r in caplog.records if "effective rank" in r.getMessage()]


def test_objective_from_conf_changes_the_training_and_typos_are_named():
    corpus, item_index = _corpus()
    _, simsiam = pretrain_clue(corpus, item_index, VIEWS, ENCODER, _params())
    _, joint = pretrain_clue(
        corpus, item_index, VIEWS, ENCODER, _params(name="vicreg", masked_item_weight=0.5)
    )
    assert "masked_item_loss" in joint[0] and "covariance" in joint[0]
    assert "masked_item_loss" not in simsiam[0]
    with pytest.raises(
        ValueError, match=r"pretrain.objective: unknown parameter\(s\) \['lambda'\]"
    ):
        pretrain_clue(corpus, item_index, VIEWS, ENCODER, _params(**{"lambda": 1.0}))


def test_health_reaches_mlflow_as_per_epoch_metrics_and_is_drawn(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    corpus, item_index = _corpus()
    _, clue = pretrain_clue(corpus, item_index, VIEWS, ENCODER, _params())
    _, mip = pretrain_masked_items(corpus, item_index, ENCODER, _params())
    assert set(HEALTH) <= set(mip[-1]) and "projection_std" not in mip[-1]

    # The pre-training job's child run gets these rows (tracking.ChildRuns).
    rows = job_history_metrics(Job(STAGE_PRETRAIN, "next_item", "clue"), clue)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store)
    experiment = client.create_experiment("health", (tmp_path / "mlruns").as_uri())
    run = client.create_run(experiment)
    client.log_batch(run.info.run_id, metrics=rows)
    read_back = client.get_metric_history(run.info.run_id, "train/effective_rank")
    # logged rounded to 4 decimals, as every metric the project logs
    assert [m.value for m in sorted(read_back, key=lambda m: m.step)] == pytest.approx(
        [round(entry["effective_rank"], 4) for entry in clue]
    )
    keys = client.get_run(run.info.run_id).data.metrics
    assert {"train/top2_share", "train/uniformity", "train/projection_std"} <= set(keys)

    figure = plot_pretraining_health(next_item__clue=clue, next_item__mip=mip, coldstart__clue=[])
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["effective_rank", "top2_share", "alignment", "uniformity", "projection_std"]
    assert len(figure.axes[0].lines) == 2  # one line per run that has a history
    png = tmp_path / "health.png"
    figure.savefig(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_kedro_pretrain_run_logs_health_curves_and_figure(finished_project: Path):
    figure = finished_project / "data/08_reporting/ml-latest-small/figures/pretraining_health.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    client = MlflowClient(tracking_uri=f"sqlite:///{finished_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("clue-pipeline")
    # The oldest CLUE pre-training child run is the whole run's (later tests resume it).
    run = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`mlflow.runName` LIKE 'pretrain next_item clue%'",
        order_by=["attributes.start_time ASC"],
    )[0]
    for key in ("effective_rank", "top2_share", "alignment", "uniformity", "projection_std"):
        history = client.get_metric_history(run.info.run_id, f"train/{key}")
        assert sorted(m.step for m in history) == [0, 1], key
    parent = run.data.tags["mlflow.parentRunId"]
    assert client.get_run(parent).info.run_name.endswith(": full chain")
    assert "pretraining_health.png" in {a.path for a in client.list_artifacts(parent)}


def test_the_paper_recipe_file_trains_clue_and_masked_items():
    import yaml

    from tests.conftest import REPO_ROOT

    recipe = yaml.safe_load((REPO_ROOT / "conf/recipes/simsiam_paper.yml").read_text())
    overrides = recipe["run"]["params"]["pretrain"]
    params = _params()
    params["train"] = {**params["train"], **overrides["train"]}
    params["simsiam"] = {**overrides["simsiam"], "proj_dim": 32, "pred_dim": 8}
    corpus, item_index = _corpus()
    _, clue = pretrain_clue(corpus, item_index, VIEWS, ENCODER, params)
    _, mip = pretrain_masked_items(corpus, item_index, ENCODER, params)
    assert len(clue) == len(mip) == 2


def test_the_default_objective_adds_the_next_item_term_and_the_simsiam_recipe_drops_it():
    import yaml

    from tests.conftest import REPO_ROOT

    base = yaml.safe_load((REPO_ROOT / "conf/base/parameters_pretrain.yml").read_text())
    recipe = yaml.safe_load((REPO_ROOT / "conf/recipes/clue_simsiam.yml").read_text())
    corpus, item_index = _corpus()
    for objective, term in (
        (base["pretrain"]["objective"], True),
        (
            {**base["pretrain"]["objective"], **recipe["run"]["params"]["pretrain"]["objective"]},
            False,
        ),
    ):
        _, history = pretrain_clue(corpus, item_index, VIEWS, ENCODER, _params(**objective))
        assert all((entry.get("next_item_loss", 0) > 0) == term for entry in history), history
