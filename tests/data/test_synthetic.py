"""The synthetic MovieLens-like log: the shape it promises, the same log for the same seed."""

from __future__ import annotations

import pandas as pd
import pytest

from clue_pipeline.data.synthetic import LogShape, movielens_like

SMALL = LogShape(users=200, items=1_500, min_length=5, max_length=400, max_item_id=5_000, seed=7)
TOTAL = 8_000


def test_log_has_the_asked_size_distinct_pairs_and_the_shapes_bounds():
    log = movielens_like(TOTAL, SMALL)
    rows = log.interactions
    assert len(rows) == TOTAL
    assert not rows.duplicated(["userId", "movieId"]).any()
    lengths = rows.groupby("userId").size()
    assert len(lengths) == SMALL.users
    assert lengths.min() >= SMALL.min_length and lengths.max() <= SMALL.max_length
    assert set(rows["movieId"]) <= set(log.items["movieId"])
    assert log.items["movieId"].between(1, SMALL.max_item_id).all()
    assert len(log.items) == SMALL.items and len(log.users) == SMALL.users
    assert rows["timestamp"].between(SMALL.first_time, SMALL.last_time).all()
    assert rows.duplicated(["userId", "timestamp"]).any()  # ratings entered in one go tie
    assert rows["rating"].isin([x / 2 for x in range(1, 11)]).all()
    assert log.items["genres"].str.len().gt(0).all()


def test_same_seed_same_log_and_another_seed_another():
    first, again = movielens_like(TOTAL, SMALL), movielens_like(TOTAL, SMALL)
    pd.testing.assert_frame_equal(first.interactions, again.interactions)
    pd.testing.assert_frame_equal(first.items, again.items)
    other = movielens_like(TOTAL, LogShape(**{**SMALL.__dict__, "seed": 8}))
    assert not other.interactions.equals(first.interactions)


def test_too_few_interactions_for_the_length_floor_is_refused():
    with pytest.raises(ValueError, match="below min_length x users"):
        movielens_like(SMALL.users * SMALL.min_length - 1, SMALL)


def test_ensure_log_draws_nothing_where_the_log_is_already_written(tmp_path, monkeypatch):
    from clue_pipeline.data import synthetic

    (tmp_path / "done-25000000").write_text("25000000 interactions\n")
    monkeypatch.setattr(synthetic.subprocess, "run", lambda *a, **k: pytest.fail("drew again"))
    assert synthetic.ensure_log(tmp_path, 25_000_000) is False
    calls = []
    monkeypatch.setattr(synthetic.subprocess, "run", lambda command, check: calls.append(command))
    assert synthetic.ensure_log(tmp_path, 25_000_000, regenerate=True) is True
    assert calls[0][1:] == [
        "-m",
        "clue_pipeline.data.synthetic",
        str(tmp_path),
        "--interactions",
        "25000000",
    ]
