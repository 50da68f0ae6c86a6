"""From an interaction log to per-user token sequences.

The path is: order the log (user, time, original row), filter it (k-core, minimum length),
index the items (tokens ``1..N``), then cut each user's history to the most recent
``max_len + 2`` tokens. Everything works on flat sorted arrays plus per-user offsets, so the
cost is a handful of numpy passes whatever the number of users.

Item tokens are assigned by **popularity**: token 1 is the most frequent item of the kept
interactions, ties broken by the original id. This makes the numbering independent of the
row order of the input file, and it puts the frequent items first in the embedding table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clue_pipeline.data.errors import DataError

REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp")
# The two most recent items are the leave-one-out targets; `sequences` keeps them beside
# the `max_len` items the model reads.
HELD_OUT_TARGETS = 2
# Dense id -> token lookup tables are used while the largest id is at most this many times
# the number of distinct ids; beyond that a hash index costs less memory.
_DENSE_LOOKUP_SLACK = 16
_LIST_TYPE = pa.list_(pa.int32())


@dataclass(frozen=True)
class FilterReport:
    """What filtering kept, for the logs and for the error raised when nothing is left."""

    users_before: int
    items_before: int
    interactions_before: int
    users_after: int
    items_after: int
    interactions_after: int
    rounds: int


def order_interactions(interactions: pd.DataFrame) -> pd.DataFrame:
    """Sort by user, then timestamp, keeping the file order of ties.

    Ties are common (ML-1M rates many movies in the same second) and the file order is the
    only information left about them, so the sort must be stable. A single int64 key
    ``user * span + time`` is sorted instead of a two-key lexsort: it is several times
    faster on tens of millions of rows and gives the same order.
    """
    require_columns(interactions, REQUIRED_COLUMNS, "interactions")
    users = interactions["user_id"].to_numpy(dtype=np.int64)
    times = interactions["timestamp"].to_numpy(dtype=np.int64)
    if len(users) == 0:
        return interactions.reset_index(drop=True)
    order = _stable_user_time_order(users, times)
    if order is None:
        return interactions.reset_index(drop=True)
    return interactions.take(order).reset_index(drop=True)


def filter_interactions(
    ordered: pd.DataFrame, k_core: int, min_seq_len: int
) -> tuple[pd.DataFrame, FilterReport]:
    """Keep users with at least ``max(k_core, min_seq_len)`` and items with at least
    ``k_core`` interactions, iterating until both hold (dropping items can shorten users).

    ``ordered`` must come from :func:`order_interactions`; the order is preserved.
    ``k_core = 0`` switches the item condition off.
    """
    check_int(k_core, "sequences.k_core", minimum=0)
    check_int(min_seq_len, "sequences.min_seq_len", minimum=1)
    user_codes = _user_codes(ordered["user_id"].to_numpy(dtype=np.int64))
    item_codes, item_uniques = pd.factorize(ordered["item_id"].to_numpy(dtype=np.int64))
    n_users = int(user_codes[-1]) + 1 if len(user_codes) else 0
    before = (n_users, len(item_uniques), len(ordered))
    user_min, item_min = max(k_core, min_seq_len), k_core
    rows = np.arange(len(ordered))
    rounds = 0
    while len(rows):
        rounds += 1
        user_counts = np.bincount(user_codes, minlength=n_users)
        keep = user_counts[user_codes] >= user_min
        if item_min > 1:
            item_counts = np.bincount(item_codes, minlength=len(item_uniques))
            keep &= item_counts[item_codes] >= item_min
        if keep.all():
            break
        rows, user_codes, item_codes = rows[keep], user_codes[keep], item_codes[keep]
    kept = ordered if len(rows) == len(ordered) else ordered.take(rows).reset_index(drop=True)
    report = FilterReport(
        users_before=before[0],
        items_before=before[1],
        interactions_before=before[2],
        users_after=int(np.count_nonzero(np.bincount(user_codes, minlength=n_users))),
        items_after=int(np.count_nonzero(np.bincount(item_codes, minlength=len(item_uniques)))),
        interactions_after=len(rows),
        rounds=rounds,
    )
    if len(rows) == 0:
        raise DataError(
            f"no interactions left after filtering ({before[2]} interactions of {before[0]} "
            f"users and {before[1]} items before; k-core filter k_core={k_core}, "
            f"minimum sequence length min_seq_len={min_seq_len})",
            parameter="sequences.k_core / sequences.min_seq_len",
            expected="thresholds that some users and items of this dataset reach",
        )
    return kept, report


def build_item_index(ordered: pd.DataFrame) -> pd.DataFrame:
    """``item_id`` (original) -> ``token`` (int32, ``1..N``) by popularity, ties by id."""
    require_columns(ordered, ("item_id",), "interactions")
    codes, uniques = pd.factorize(ordered["item_id"].to_numpy(dtype=np.int64))
    counts = np.bincount(codes, minlength=len(uniques))
    ranking = np.lexsort((uniques, -counts))
    return pd.DataFrame(
        {
            "item_id": uniques[ranking].astype(np.int64),
            "token": np.arange(1, len(uniques) + 1, dtype=np.int32),
        }
    )


def tokenize(item_ids: np.ndarray, item_index: pd.DataFrame) -> np.ndarray:
    """Tokens (int32) of original item ids; every id must be in ``item_index``."""
    ids = np.asarray(item_ids, dtype=np.int64)
    known = item_index["item_id"].to_numpy(dtype=np.int64)
    tokens = item_index["token"].to_numpy(dtype=np.int32)
    if len(ids) == 0:
        return np.empty(0, dtype=np.int32)
    low = int(min(ids.min(), known.min())) if len(known) else 0
    high = int(max(ids.max(), known.max())) if len(known) else 0
    if low >= 0 and high < _DENSE_LOOKUP_SLACK * max(len(known), 1) + 1024:
        lookup = np.zeros(high + 1, dtype=np.int32)
        lookup[known] = tokens
        found = lookup[ids]
    else:
        position = pd.Index(known).get_indexer(ids)
        found = np.where(position >= 0, tokens[np.maximum(position, 0)], 0).astype(np.int32)
    missing = np.flatnonzero(found == 0)
    if len(missing):
        raise DataError(
            f"{len(missing)} interactions name items absent from item_index "
            f"(first: item_id {int(ids[missing[0]])})",
            column="item_id",
            expected="every item of the interactions listed in item_index",
        )
    return found


def build_sequences(ordered: pd.DataFrame, item_index: pd.DataFrame, max_len: int) -> pd.DataFrame:
    """``user_id`` + ``items`` (tokens in time order, the most recent ``max_len + 2``)."""
    check_int(max_len, "sequences.max_len", minimum=1)
    users = ordered["user_id"].to_numpy(dtype=np.int64)
    tokens = tokenize(ordered["item_id"].to_numpy(), item_index)
    starts, lengths = group_bounds(users)
    keep = positions_from_end(starts, lengths) < max_len + HELD_OUT_TARGETS
    kept_lengths = np.minimum(lengths, max_len + HELD_OUT_TARGETS)
    return pd.DataFrame(
        {
            "user_id": users[starts],
            "items": to_list_series(tokens[keep], lengths_to_offsets(kept_lengths)),
        }
    )


# --- flat arrays <-> list columns, shared by splits and cold-start -------------------------


def group_bounds(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start row and length of each run of equal keys in a grouped array."""
    if len(sorted_keys) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    change = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate(([0], change))
    lengths = np.diff(np.concatenate((starts, [len(sorted_keys)])))
    return starts, lengths


def positions_from_end(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For each row of a grouped array, how many rows of its group follow it (last = 0)."""
    ends = np.repeat(starts + lengths, lengths)
    return ends - np.arange(len(ends)) - 1


def positions_from_start(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For each row of a grouped array, its rank inside its group (first = 0)."""
    return np.arange(int(lengths.sum())) - np.repeat(starts, lengths)


def lengths_to_offsets(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def to_list_series(values: np.ndarray, offsets: np.ndarray) -> pd.Series:
    """A list<int32> column from flat values and offsets.

    Cells are numpy int32 arrays, the same form a parquet file of the table loads back as,
    so nodes see one form whether the catalog keeps the table in memory or on disk.
    """
    array = pa.ListArray.from_arrays(
        pa.array(np.asarray(offsets, dtype=np.int32)),
        pa.array(np.asarray(values, dtype=np.int32)),
    )
    if len(array) == 0:
        # An empty Arrow-typed column would write pandas metadata that pandas cannot read back.
        return pd.Series(np.empty(0, dtype=object))
    return pd.Series(array.to_pandas(), dtype=object)


def list_values_offsets(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Flat int32 values and int64 offsets of a list column (numpy cells or Arrow lists)."""
    if isinstance(column.dtype, pd.ArrowDtype):
        array = pa.array(column)
    elif len(column) == 0:
        return np.empty(0, dtype=np.int32), np.zeros(1, dtype=np.int64)
    else:
        array = pa.array(column.to_numpy(), type=_LIST_TYPE, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(array).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    return values, lengths_to_offsets(lengths.astype(np.int64))


# --- helpers ------------------------------------------------------------------------------


def _stable_user_time_order(users: np.ndarray, times: np.ndarray) -> np.ndarray | None:
    """The stable (user, time) order, or None when the rows are already in it."""
    user_low, user_high = int(users.min()), int(users.max())
    time_low, time_high = int(times.min()), int(times.max())
    time_span = time_high - time_low + 1
    if (user_high - user_low + 1) * time_span < 2**63:
        key = (users - user_low) * time_span + (times - time_low)
    else:
        user_codes, uniques = pd.factorize(users, sort=True)
        if len(uniques) * time_span >= 2**63:
            return np.lexsort((times, users))
        key = user_codes.astype(np.int64) * time_span + (times - time_low)
    if bool(np.all(key[1:] >= key[:-1])):
        return None
    return np.argsort(key, kind="stable")


def _user_codes(sorted_users: np.ndarray) -> np.ndarray:
    """0..U-1 per row of a user-grouped array (a user's rows are contiguous)."""
    codes = np.zeros(len(sorted_users), dtype=np.int64)
    if len(sorted_users) > 1:
        np.cumsum(sorted_users[1:] != sorted_users[:-1], out=codes[1:])
    return codes


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...], table: str) -> None:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise DataError(
            f"table '{table}' lacks column(s) {missing}; it has {list(frame.columns)}",
            column=missing[0],
            expected=f"columns {list(columns)}",
        )


def check_int(value: object, parameter: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise DataError(
            f"value {value!r} is not usable",
            parameter=parameter,
            expected=f"an integer >= {minimum}",
        )
