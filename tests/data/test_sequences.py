"""Ordering, filtering, item tokens and truncation of the `sequences` table."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clue_pipeline.data.errors import DataError
from clue_pipeline.data.sequences import (
    build_item_index,
    build_sequences,
    filter_interactions,
    list_values_offsets,
    order_interactions,
    to_list_series,
    tokenize,
)
from clue_pipeline.data.tokens import special_tokens


def _log(rows: list[tuple[int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype("int64")


def _items(sequences: pd.DataFrame) -> list[list[int]]:
    return [list(map(int, cell)) for cell in sequences["items"]]


def test_special_tokens_follow_the_items():
    tokens = special_tokens(10)
    assert (tokens.pad, tokens.mask, tokens.user, tokens.vocab_size) == (0, 11, 12, 13)
    assert special_tokens(np.int64(3)).vocab_size == 6
    with pytest.raises(ValueError, match="non-negative"):
        special_tokens(-1)


def test_ties_keep_the_file_order_and_users_are_grouped():
    log = _log([(2, 30, 5), (1, 10, 7), (2, 31, 5), (1, 11, 3), (2, 32, 5), (2, 33, 1)])
    ordered = order_interactions(log)
    assert ordered["user_id"].tolist() == [1, 1, 2, 2, 2, 2]
    assert ordered["item_id"].tolist() == [11, 10, 33, 30, 31, 32]


def test_order_falls_back_when_the_key_would_overflow():
    log = _log([(2**62, 1, 2**62), (0, 2, 0), (2**62, 3, 0), (0, 4, 0)])
    assert order_interactions(log)["item_id"].tolist() == [2, 4, 3, 1]


def test_item_tokens_are_dense_and_ranked_by_popularity():
    log = _log([(1, 500, 1), (1, 7, 2), (2, 7, 1), (2, 900, 2), (3, 900, 1), (3, 7, 2)])
    index = build_item_index(log)
    assert index["item_id"].tolist() == [7, 900, 500]  # 3 uses, 2 uses, 1 use
    assert index["token"].tolist() == [1, 2, 3]
    assert index["token"].dtype == np.int32
    assert tokenize(np.array([500, 7, 900]), index).tolist() == [3, 1, 2]
    with pytest.raises(DataError, match="item_id 8"):
        tokenize(np.array([7, 8]), index)


def test_tokenize_handles_sparse_large_ids():
    index = pd.DataFrame({"item_id": [10**15, 3], "token": np.array([1, 2], dtype=np.int32)})
    assert tokenize(np.array([3, 10**15, 3]), index).tolist() == [2, 1, 2]


def test_truncation_keeps_the_most_recent_items():
    log = _log([(1, item, 100 - item) for item in range(1, 11)] + [(2, 4, 1), (2, 5, 2)])
    ordered = order_interactions(log)
    index = build_item_index(ordered)
    sequences = build_sequences(ordered, index, max_len=3)
    token_of = dict(zip(index["item_id"], index["token"], strict=True))
    # user 1 saw item 10 first and item 1 last: the 5 most recent are items 5..1
    assert _items(sequences)[0] == [token_of[item] for item in [5, 4, 3, 2, 1]]
    assert _items(sequences)[1] == [token_of[4], token_of[5]]
    assert sequences["user_id"].tolist() == [1, 2]


def test_k_core_iterates_until_users_and_items_both_hold():
    # item 9 is used by user 3 only; dropping it leaves user 3 with one item, so user 3 goes,
    # which leaves item 8 with one user, so it goes too.
    log = _log(
        [(1, 1, 1), (1, 2, 2), (2, 1, 1), (2, 2, 2), (3, 9, 1), (3, 8, 2), (4, 8, 1), (4, 1, 2)]
        + [(4, 2, 3)]
    )
    kept, report = filter_interactions(order_interactions(log), k_core=2, min_seq_len=1)
    assert sorted(set(kept["user_id"])) == [1, 2, 4]
    assert sorted(set(kept["item_id"])) == [1, 2]
    assert report.rounds >= 3
    assert (report.users_after, report.items_after, report.interactions_after) == (3, 2, 6)
    counts = kept.groupby("user_id").size()
    assert (counts >= 2).all() and (kept.groupby("item_id").size() >= 2).all()


def test_min_seq_len_drops_short_users_only():
    log = _log([(1, 1, 1), (1, 2, 2), (1, 3, 3), (2, 1, 1)])
    kept, report = filter_interactions(order_interactions(log), k_core=0, min_seq_len=2)
    assert kept["user_id"].tolist() == [1, 1, 1]
    assert (report.users_before, report.users_after) == (2, 1)


def test_empty_result_names_the_filter_and_parameters():
    log = _log([(1, 1, 1), (2, 2, 1)])
    with pytest.raises(DataError, match=r"k_core=3.*min_seq_len=5"):
        filter_interactions(order_interactions(log), k_core=3, min_seq_len=5)


@pytest.mark.parametrize("max_len", [0, -4, 2.5])
def test_absurd_max_len_is_refused(max_len):
    log = _log([(1, 1, 1)])
    with pytest.raises(DataError, match="sequences.max_len"):
        build_sequences(log, build_item_index(log), max_len)


def test_missing_column_is_named():
    with pytest.raises(DataError, match="timestamp"):
        order_interactions(pd.DataFrame({"user_id": [1], "item_id": [2]}))


def test_list_column_round_trips_through_parquet_as_list_int32(tmp_path):
    column = to_list_series(np.array([5, 6, 7], dtype=np.int32), np.array([0, 2, 2, 3]))
    frame = pd.DataFrame({"user_id": np.array([1, 2, 3], dtype=np.int64), "items": column})
    path = tmp_path / "s.parquet"
    frame.to_parquet(path)
    assert pq.read_schema(path).field("items").type == pa.list_(pa.int32())
    values, offsets = list_values_offsets(pd.read_parquet(path)["items"])
    assert values.tolist() == [5, 6, 7] and offsets.tolist() == [0, 2, 2, 3]
    arrow = pd.read_parquet(path, dtype_backend="pyarrow")["items"]
    assert list_values_offsets(arrow)[1].tolist() == [0, 2, 2, 3]


def test_movielens_100k_sequences(shared_data):
    path = shared_data / "movielens-100k" / "u.data"
    log = pd.read_csv(path, sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    ordered = order_interactions(log)
    kept, _ = filter_interactions(ordered, k_core=0, min_seq_len=5)
    index = build_item_index(kept)
    sequences = build_sequences(kept, index, max_len=50)
    values, offsets = list_values_offsets(sequences["items"])
    assert len(sequences) == 943 and len(index) == 1682
    assert sorted(index["token"]) == list(range(1, 1683))
    assert np.diff(offsets).max() == 52 and np.diff(offsets).min() == 20
    # the last token of user 1 is the item of their latest rating (file order on ties)
    latest = ordered[ordered["user_id"] == 1].iloc[-1]["item_id"]
    assert values[offsets[1] - 1] == index.set_index("item_id").loc[latest, "token"]
