"""K-fold profiling splits: every user tested once, classes in proportion, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from clue_pipeline.data.errors import DataError
from clue_pipeline.data.splits import profile_split
from tests.data.test_splits import RATIOS, TASKS, _population


def _fold(sequences, users, fold, folds=5, seed=3):
    table, _ = profile_split(
        sequences, users, TASKS, RATIOS, seed, 20, "toy", folds=folds, fold=fold
    )
    return table


def test_every_user_is_tested_in_exactly_one_fold():
    sequences, users = _population(1000)
    tables = [_fold(sequences, users, f) for f in range(5)]
    for task in TASKS:
        tested = np.concatenate(
            [t[(t["task"] == task) & (t["split"] == "test")]["user_id"] for t in tables]
        )
        everyone = tables[0][tables[0]["task"] == task]["user_id"]
        assert sorted(tested) == sorted(everyone)
    for table in tables:
        counts = table[table["task"] == "gender"]["split"].value_counts()
        assert counts["test"] == pytest.approx(200, abs=2)
        # of the other 800: valid / (train + valid) = 0.05 / 0.85
        assert counts["valid"] == pytest.approx(800 * 0.05 / 0.85, abs=3)


def test_folds_hold_each_class_in_proportion_and_are_seeded():
    sequences, users = _population(1000)
    a, b = _fold(sequences, users, 2), _fold(sequences, users, 2)
    assert a.equals(b)
    other = _fold(sequences, users, 2, seed=4)
    assert not a["split"].equals(other["split"])
    gender = a[a["task"] == "gender"]
    overall = gender["label"].mean()
    tested = gender[gender["split"] == "test"]["label"].mean()
    assert tested == pytest.approx(overall, abs=0.02)


def test_one_fold_is_the_ratio_split():
    sequences, users = _population(300)
    single, _ = profile_split(sequences, users, TASKS, RATIOS, 1, 20, "toy")
    explicit, _ = profile_split(sequences, users, TASKS, RATIOS, 1, 20, "toy", folds=1, fold=0)
    assert single.equals(explicit)


@pytest.mark.parametrize(
    ("folds", "fold", "parameter"),
    [(0, 0, "folds"), (5, 5, "fold"), (5, -1, "fold"), (True, 0, "folds")],
)
def test_bad_folds_name_their_parameter(folds, fold, parameter):
    sequences, users = _population(100)
    with pytest.raises(DataError, match=f"sequences.profiling.{parameter}"):
        profile_split(sequences, users, TASKS, RATIOS, 0, 20, "toy", folds=folds, fold=fold)
