"""The profiles of conf/base/parameters_report.yml: what cells they need, and that the `full`
profile reuses the quality grid's cells as they are."""

from __future__ import annotations

import pytest
import yaml

from benchmarks.quality import GRID, grid
from clue_pipeline.experiments.plan import build_plan
from clue_pipeline.experiments.runner import DEFAULT_PATHS
from tests.conftest import REPO_ROOT

CONF = REPO_ROOT / "conf" / "base"


def _report_params() -> dict:
    return yaml.safe_load((CONF / "parameters_report.yml").read_text())["report"]


def test_full_profile_default_cells_are_quality_grid_cells():
    plan = build_plan(_report_params()["profiles"]["full"], default_dropout=0.5)
    # pre-training-only cells (Fig. 6, Fig. 7) are the report's own
    defaults = {c for c in plan.all_cells() if not c.overrides and c.task != "pretrain"}
    quality = set(grid(list(GRID)))
    assert defaults <= quality, sorted(c.label() for c in defaults - quality)
    # CLUE's cells check the paper's claims with the paper's objective, SimSiam alone: three
    # seeds on every dataset of Fig. 3; the others are the grid's own
    paper = {"pretrain.objective.next_item_weight": 0.0}
    fig3 = plan.cells["fig3"]
    assert sum(1 for c in fig3 if c.method == "clue" and c.override_dict == paper) == 12
    assert all(not c.overrides for c in fig3 if c.method != "clue")
    assert all(
        c.override_dict.get("pretrain.objective.next_item_weight") == 0.0
        for c in plan.all_cells()
        if c.method in ("clue", "clue_probe")
    )


def test_quick_profile_shares_cells_between_experiments():
    plan = build_plan(_report_params()["profiles"]["quick"], default_dropout=0.5)
    cells = plan.all_cells()
    assert len(cells) == len(set(cells))
    # the 0.5 dropout point of Fig. 5 and Table III's dropout row are CLUE's own cells
    fig3 = set(plan.cells["fig3"])
    assert {c for c, n in plan.names["fig5"].items() if n == "0.5"} <= fig3
    assert {c for c, n in plan.names["table3"].items() if n == "dropout"} <= fig3
    # every quick cell carries the quick budget, so it never collides with a full-budget cell;
    # the collapse and PCA cells pre-train longer (their own budget)
    epochs = {c.task: c.override_dict["pretrain.train.epochs"] for c in cells}
    assert epochs == {"next_item": 3, "coldstart": 3, "pretrain": 15}
    assert all(c.override_dict["finetune.train.epochs"] == 3 for c in cells)
    # profiling is untestable on the embedded data: no cell is planned for it
    assert not [c for c in cells if c.task == "profiling"]
    # first seeds first: a partial sitting compares methods before repeating seeds
    seeds = [c.seed for c in cells]
    assert seeds == sorted(seeds)


def test_unknown_profile_keys_are_named():
    profile = {**_report_params()["profiles"]["smoke"], "fig9": {}}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['fig9'\]"):
        build_plan(profile, default_dropout=0.5)


def test_reported_paths_are_the_catalog_paths():
    catalog = {}
    for name in ("catalog_models.yml", "catalog_sequences.yml", "catalog_ingest.yml"):
        catalog.update(yaml.safe_load((CONF / name).read_text()))
    expected = {
        "metrics": catalog["{task}__{method}_metrics"]["filepath"],
        "encoder": catalog["{corpus}__{method}_encoder"]["filepath"],
        "pretrain_history": catalog["{corpus}__{method}_pretrain_history"]["filepath"],
        "next_item_split": catalog["next_item_split"]["filepath"],
        "filtered_interactions": catalog["filtered_interactions"]["filepath"],
        "users": catalog["users"]["filepath"],
    }
    expected = {k: v.replace("${globals:dataset}", "{dataset}") for k, v in expected.items()}
    assert {k: v for k, v in expected.items() if k in DEFAULT_PATHS} == DEFAULT_PATHS
    assert _report_params()["paths"] == expected
