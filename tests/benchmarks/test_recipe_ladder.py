"""The ladder's recipes come from conf; its summary compares a rung's seeds with its parent's."""

from __future__ import annotations

import json

from benchmarks.recipe_ladder import (
    COMPARED,
    LADDER,
    PATIENCE,
    best_epochs,
    cell_path,
    is_current,
    seed_comparisons,
    store_key,
)
from clue_pipeline.experiments.recipes import merge


def _cell(rung: str, value: float, seed: int = 0) -> dict:
    scores: dict[str, dict[str, float]] = {}
    for split, metric in COMPARED:
        scores.setdefault(split, {})[metric] = value
    return {"rung": rung, "seed": seed, "scores": scores}


def test_a_rung_is_paired_with_its_parent_by_seed_and_one_common_seed_is_not_enough():
    parent = [_cell("recbole_block_last_item", v, s) for s, v in enumerate((0.050, 0.051, 0.052))]
    rung = [_cell("bsarec", v, s) for s, v in enumerate((0.0600, 0.0612, 0.0619))]
    by_rung = {
        "recbole_block_last_item": parent,
        "bsarec": rung,
        "rb_li_smoothing": [_cell("rb_li_smoothing", 0.07)],
    }
    lines = seed_comparisons(by_rung)
    (row,) = [line for line in lines if line.startswith("| bsarec |")]
    assert "| 3 |" in row and row.count("better") == len(COMPARED)
    assert "p_holm" in row and any("Holm" in line for line in lines)
    assert not any(line.startswith("| rb_li_smoothing") for line in lines)
    assert seed_comparisons({"bsarec": rung}) == []
    # the same rung on other seeds than its parent's: nothing to pair
    shifted = [_cell("bsarec", v, s + 3) for s, v in enumerate((0.0600, 0.0612, 0.0619))]
    assert seed_comparisons({**by_rung, "bsarec": shifted}) == []


def test_another_patience_or_selection_keeps_its_own_cells():
    assert store_key("beauty", PATIENCE) == "beauty"
    assert store_key("beauty", 10) == "beauty-patience10"
    assert store_key("sports", PATIENCE, "excluded") == "sports-select-excluded"
    assert cell_path("beauty", "bsarec", 0) != cell_path(store_key("beauty", 10), "bsarec", 0)


def test_every_stored_cell_still_matches_its_rung_in_conf():
    """The recipes moved from Python to conf/recipes/ladder.yml unchanged: each stored cell's
    fingerprint is still its rung's (a cell whose rung changed would be retrained)."""
    stored = sorted(cell_path("beauty", "x", 0).parents[1].glob("*/*.json"))
    assert stored
    for path in stored:
        assert is_current(json.loads(path.read_text())), path


def test_a_rung_is_its_parent_plus_its_change():
    recipe = LADDER.recipe("bsarec")
    assert recipe["encoder"]["heads"] == 1 and recipe["encoder"]["norm"] == "post"
    assert recipe["train"] == {**LADDER.base["train"], "lr": 0.0005}
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": None}}) == {"a": {"b": 1, "c": None}}


def test_a_selection_the_early_stop_may_have_cut_is_marked():
    config = {"epochs": 200, "patience": 5}
    cell = {"best_epoch": 5, "best_epoch_excluded": 10, "epochs_run": 11, "config": config}
    assert best_epochs(cell) == "5 (10, cut)"
    assert best_epochs({**cell, "best_epoch_excluded": 4}) == "5 (4)"
    excluded_first = {**cell, "selected_under": "excluded"}  # the other is then kept's
    assert best_epochs({**excluded_first, "best_epoch": 3}) == "3 (10)"
    assert best_epochs({**excluded_first, "best_epoch": 8}) == "8 (10, cut)"
    assert best_epochs({"best_epoch": 7, "epochs_run": 12, "config": config}) == "7"  # older cell
