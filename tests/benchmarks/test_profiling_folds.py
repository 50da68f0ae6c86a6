"""The k-fold profiling study's tests: paired by fold, rows with fewer than two folds in common
left out, Holm within each family (against the floor; each change against its parent)."""

from __future__ import annotations

from benchmarks import profiling_folds

FLOOR = {"gender": [0.80, 0.78, 0.81, 0.79, 0.80], "age": [0.45] * 5, "occupation": [0.19] * 5}


def _shifted(by: dict[str, list[float]], attribute_shift: dict[str, list[float]]) -> dict:
    return {a: [x + d for x, d in zip(v, attribute_shift[a], strict=True)] for a, v in by.items()}


def test_rows_pair_by_fold_and_holm_counts_the_family():
    behind = [-0.05, -0.04, -0.06, -0.05, -0.045]
    noise = [0.01, -0.01, 0.0, 0.005, -0.004]
    folds = {
        "floor": FLOOR,
        "behind": _shifted(FLOOR, {"gender": noise, "age": behind, "occupation": noise}),
        "one fold": {a: [v[0], None, None, None, None] for a, v in FLOOR.items()},
    }
    rows = profiling_folds.compare(folds, [("behind", "floor"), ("one fold", "floor")])
    assert [(r["row"], r["attribute"]) for r in rows] == [
        ("behind", "gender"),
        ("behind", "age"),
        ("behind", "occupation"),
    ]  # one fold cannot be tested, so it is neither shown nor counted
    age = rows[1]
    assert age["n"] == 5 and age["verdict_holm"] == "worse"
    assert age["diff"] < 0 and age["high"] < 0 and age["p_holm"] >= age["p"]
    assert rows[0]["verdict_holm"] == "not shown"
    alone = profiling_folds.compare(folds, [("behind", "floor")])
    assert alone[1]["p_holm"] == age["p_holm"]  # untestable rows do not enlarge the family


def test_every_parent_names_a_row_of_the_study():
    for row, parent in profiling_folds.PARENTS.items():
        assert row in profiling_folds.VARIANTS and parent in profiling_folds.VARIANTS
        assert row != parent
