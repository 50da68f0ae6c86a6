"""The ladder's recipes come from conf; its summary compares a rung's seeds with its parent's."""

from __future__ import annotations

import json

from benchmarks.recipe_ladder import (
    COMPARED,
    LADDER,
    PATIENCE,
    cell_path,
    is_current,
    seed_comparisons,
    store_key,
)
from clue_pipeline.experiments.recipes import merge


def _cell(rung: str, value: float) -> dict:
    scores: dict[str, dict[str, float]] = {}
    for split, metric in COMPARED:
        scores.setdefault(split, {})[metric] = value
    return {"rung": rung, "scores": scores}


def test_a_rung_with_seeds_is_tested_against_its_parent_and_one_seed_is_not():
    by_rung = {
        "recbole_block_last_item": [_cell("recbole_block_last_item", v) for v in (0.050, 0.051)],
        "bsarec": [_cell("bsarec", v) for v in (0.060, 0.061, 0.062)],
        "rb_li_smoothing": [_cell("rb_li_smoothing", 0.07)],
    }
    lines = seed_comparisons(by_rung)
    (row,) = [line for line in lines if line.startswith("| bsarec |")]
    assert "3 vs 2" in row and row.count("better") == len(COMPARED)
    assert not any(line.startswith("| rb_li_smoothing") for line in lines)
    assert seed_comparisons({"bsarec": by_rung["bsarec"]}) == []


def test_another_patience_keeps_its_own_cells():
    assert store_key("beauty", PATIENCE) == "beauty"
    assert store_key("beauty", 10) == "beauty-patience10"
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
