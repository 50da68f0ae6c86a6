"""The user index (``clue_pipeline.neighbours``): exact below the threshold, HNSW above it
close to exact, the same answers every time and after a save/load, and bad input refused
naming the parameter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clue_pipeline.embedding import nearest_users, vectors_to_frame
from clue_pipeline.neighbours import (
    IndexConfig,
    UnindexedUserError,
    UserIndex,
    build_index,
    choose_method,
    recall_at_k,
)


def _mixture(users: int, dim: int = 16, components: int = 20, seed: int = 0) -> np.ndarray:
    """Clustered vectors, as user vectors are: a Gaussian mixture of overlapping components."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(components, dim))
    return (centres[rng.integers(0, components, users)] + rng.normal(size=(users, dim))).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return _mixture(3000)


@pytest.fixture(scope="module")
def user_ids() -> np.ndarray:
    return np.arange(3000, dtype=np.int64) * 7 + 100  # sparse original ids


def test_auto_is_exact_below_the_threshold_and_hnsw_from_it():
    config = IndexConfig(exact_below=1000)
    assert choose_method(999, config) == "exact"
    assert choose_method(1000, config) == "hnsw"
    assert choose_method(10**7, IndexConfig(method="exact")) == "exact"
    small = build_index(np.arange(50), _mixture(50), config)
    assert small.method == "exact"


def test_exact_index_equals_the_matrix_product_of_embedding(vectors, user_ids):
    index = build_index(user_ids, vectors, IndexConfig(method="exact"))
    ids, similarity = index.neighbours_of(user_ids[:5].tolist(), 10)
    table = nearest_users(vectors_to_frame(user_ids, vectors), user_ids[:5].tolist(), 10)
    assert np.array_equal(ids.ravel(), table["user_id"].to_numpy())
    np.testing.assert_allclose(similarity.ravel(), table["similarity"], atol=1e-5)


def test_hnsw_recall_against_exact_search_on_held_out_queries(vectors, user_ids):
    exact = build_index(user_ids, vectors, IndexConfig(method="exact"))
    approximate = build_index(user_ids, vectors, IndexConfig(method="hnsw", hnsw_m=16))
    assert approximate.method == "hnsw"
    queries = _mixture(200, seed=1)
    truth, _ = exact.search(queries, 10)
    found, similarity = approximate.search(queries, 10)
    assert recall_at_k(found, truth) >= 0.95
    assert (np.diff(similarity, axis=1) <= 1e-6).all()  # most similar first


def test_a_user_is_not_their_own_neighbour(vectors, user_ids):
    for method in ("exact", "hnsw"):
        index = build_index(user_ids, vectors, IndexConfig(method=method))
        ids, _ = index.neighbours_of(user_ids[:50].tolist(), 5)
        assert ids.shape == (50, 5)
        assert not (ids == user_ids[:50, None]).any()
        assert (ids >= 0).all()


def test_the_same_input_gives_the_same_answers_and_a_saved_index_too(vectors, user_ids, tmp_path):
    config = IndexConfig(method="hnsw", hnsw_m=8, ef_search=16)
    first = build_index(user_ids, vectors, config)
    second = build_index(user_ids, vectors, config)
    queries = _mixture(100, seed=2)
    assert first.to_bytes() == second.to_bytes()
    first.save(tmp_path / "users.index")
    loaded = UserIndex.load(tmp_path / "users.index")
    assert loaded.method == "hnsw" and len(loaded) == len(user_ids)
    for a, b in zip(first.search(queries, 10), loaded.search(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)


def test_cosine_ignores_the_vector_length():
    vectors = np.array([[1.0, 0.0], [10.0, 1.0], [0.0, 3.0], [0.0, 0.0]], np.float32)
    index = build_index([1, 2, 3, 4], vectors, IndexConfig(method="exact"))
    ids, similarity = index.search(np.array([[5.0, 0.0]]), 4)
    assert ids[0, :2].tolist() == [1, 2]
    assert similarity[0, 0] == pytest.approx(1.0)
    assert similarity[0, 3] == pytest.approx(0.0)  # the zero vector is similar to no one


def test_asking_for_more_neighbours_than_users_pads_with_minus_one():
    index = build_index([5, 6, 7], _mixture(3), IndexConfig(method="exact"))
    ids, similarity = index.neighbours_of([5], 4)
    assert sorted(ids[0, :2].tolist()) == [6, 7]
    assert ids[0, 2:].tolist() == [-1, -1] and np.isnan(similarity[0, 2:]).all()


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda i: i.search(np.ones((1, 16)), 0), "k = 0: expected an integer >= 1"),
        (lambda i: i.neighbours_of([100], -3), "k = -3: expected an integer >= 1"),
        (lambda i: i.search(np.full((2, 16), np.nan), 3), "query vectors: 2 row(s) hold NaN"),
        (lambda i: i.search(np.ones((1, 5)), 3), "query vectors: shape (1, 5)"),
    ],
    ids=["k-zero", "k-negative", "nan-query", "wrong-width"],
)
def test_bad_queries_are_refused_naming_the_parameter(vectors, user_ids, call, named):
    index = build_index(user_ids[:100], vectors[:100], IndexConfig(method="exact"))
    with pytest.raises(ValueError) as info:
        call(index)
    assert named in str(info.value)


def test_nan_vectors_are_refused_when_building_naming_the_rows():
    vectors = _mixture(10)
    vectors[[3, 7], 1] = np.nan
    with pytest.raises(ValueError, match=r"vectors: 2 row\(s\) hold NaN .*rows \[3, 7\]"):
        build_index(np.arange(10), vectors)


def test_unknown_user_ids_are_named(vectors, user_ids):
    index = build_index(user_ids[:100], vectors[:100], IndexConfig(method="exact"))
    with pytest.raises(UnindexedUserError, match=r"1 of 2 user id\(s\) .*\[3\]; .*100 users"):
        index.neighbours_of([100, 3], 5)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"method": "ivf"}, "index.method = 'ivf'"),
        ({"hnsw_m": 0}, "index.hnsw_m = 0"),
        ({"ef_search": 2.5}, "index.ef_search = 2.5"),
        ({"k": 0}, "index.k = 0"),
    ],
)
def test_settings_are_checked_naming_the_key(settings, named):
    with pytest.raises(ValueError) as info:
        IndexConfig(**settings)
    assert named in str(info.value)


def test_duplicate_user_ids_are_refused():
    with pytest.raises(ValueError, match=r"user_ids: \[4\] appear more than once"):
        build_index(pd.Series([1, 4, 4]).to_numpy(), _mixture(3))
