"""The neighbour-agreement study's arithmetic on hand-made users (not the ML-1M run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clue_pipeline.experiments import neighbour_agreement as study


def test_agreement_is_the_share_of_each_users_neighbours_with_their_label():
    labels = np.array([0, 0, 1, 1, 2])
    neighbours = np.array([[1, 2], [2, 3], [3, 0], [4, -1], [0, 1]])  # -1: no neighbour
    shares = study.agreement(labels, neighbours)
    # user 3 has one neighbour found (user 4, another label): 0 of 1, not 0 of 2
    np.testing.assert_allclose(shares, [0.5, 0.0, 0.5, 0.0, 0.0])


def test_chance_is_the_sum_of_squared_class_shares():
    assert study.chance(np.array([0, 0, 1, 1])) == pytest.approx(0.5)
    assert study.chance(np.array([3, 3, 3, 7])) == pytest.approx(0.75**2 + 0.25**2)


def test_neighbours_are_the_nearest_by_cosine_and_never_the_user():
    vectors = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [0.1, 3.0]])  # length does not count
    np.testing.assert_array_equal(study.neighbour_rows(vectors, k=1), [[1], [0], [3], [2]])
    same_cluster = study.agreement(np.array([0, 0, 1, 1]), study.neighbour_rows(vectors, k=1))
    assert same_cluster.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_random_neighbours_are_distinct_other_users_and_seeded():
    rows = study.random_rows(users=12, k=10, seed=3)
    assert rows.shape == (12, 10)
    for user, drawn in enumerate(rows):
        assert user not in drawn and len(set(drawn)) == 10 and drawn.max() < 12
    np.testing.assert_array_equal(rows, study.random_rows(users=12, k=10, seed=3))


def test_labels_are_read_per_attribute_in_the_users_order_and_a_missing_one_is_named():
    profiles = pd.DataFrame(
        {
            "user_id": [2, 1, 2, 1, 2, 1],
            "task": ["gender", "gender", "age", "age", "occupation", "occupation"],
            "label": [1, 0, 5, 3, 7, 7],
        }
    )
    labels = study.labels_of(profiles, pd.Series([1, 2]))
    assert {k: v.tolist() for k, v in labels.items()} == {
        "gender": [0, 1],
        "age": [3, 5],
        "occupation": [7, 7],
    }
    with pytest.raises(ValueError, match="users without a label"):
        study.labels_of(profiles[profiles["user_id"] == 1], pd.Series([1, 2]))


def test_measure_compares_clue_with_clue_zero_and_the_bag_paired_over_users_holm_corrected():
    users, rng = 40, np.random.default_rng(0)
    labels = {"gender": np.arange(users) % 2}
    same = np.array([[(u + 2) % users, (u + 4) % users] for u in range(users)])  # same label
    neighbours = {row: rng.integers(0, users, (users, 2)) for row in study.ENCODERS}
    neighbours |= {study.BAG: rng.integers(0, users, (users, 2)), study.RANDOM: same}
    neighbours[next(iter(study.ENCODERS))] = same
    result = study.measure(labels, neighbours)
    assert result["chance"] == {"gender": pytest.approx(0.5)}
    assert len(result["comparisons"]) == len(study.PAIRS) == 4
    first = [c for c in result["comparisons"] if c["a"] == next(iter(study.ENCODERS))]
    assert [c["verdict_holm"] for c in first] == ["better", "better"]
    assert all(c["p_holm"] >= c["p"] for c in result["comparisons"])
