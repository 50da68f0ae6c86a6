"""Our `next_item_split` as RecBole atomic files whose leave-one-out split is exactly ours.

RecBole 1.2.1 splits sequential data with ``eval_args: {split: {LS: valid_and_test}, order: TO}``:
it sorts interactions by time and, per user, holds out the last item for test and the one before
it for validation. We write each user's sequence ``train + [valid_target, test_target]`` with a
synthetic timestamp equal to the item's position in that sequence, so RecBole's last item is our
test target and its second last our validation target. Only the sequences the project trains on
(the most recent ``max_len + 2`` items per user) are written, so both sides see the same items.

An ``.item`` file lists every token ``1..N`` of ``item_index``: without it RecBole would only know
the items that occur in the kept sequences and would rank fewer items than we do.

Pure pandas/numpy, so both virtual environments (and the tests) can import it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

INTER_HEADER = ("user_id:token", "item_id:token", "timestamp:float")
ITEM_HEADER = ("item_id:token",)
SPLIT_COLUMNS = ("user_id", "train", "valid_target", "test_target")


def atomic_interactions(split: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, item) with ``timestamp`` = position in ``train + [valid, test]``.

    Vectorised over all users: the per-user lists are flattened once and the two held-out
    targets appended after each user's training part.
    """
    _check_split(split)
    train = split["train"].to_numpy()
    lengths = np.fromiter((len(t) for t in train), dtype=np.int64, count=len(train))
    if (lengths < 1).any():
        bad = int(split["user_id"].to_numpy()[np.argmax(lengths < 1)])
        raise ValueError(
            f"next_item_split: user_id {bad} has an empty `train` list; leave-one-out needs at "
            "least one training item per user (the `sequences` pipeline's min_seq_len >= 3)"
        )
    flat_train = np.concatenate(train).astype(np.int64) if len(train) else np.empty(0, np.int64)
    total = lengths + 2
    ends = np.cumsum(total)
    starts = ends - total
    items = np.empty(int(total.sum()), dtype=np.int64)
    is_train = np.ones(items.size, dtype=bool)
    is_train[ends - 2] = False
    is_train[ends - 1] = False
    items[is_train] = flat_train
    items[ends - 2] = split["valid_target"].to_numpy(np.int64)
    items[ends - 1] = split["test_target"].to_numpy(np.int64)
    users = np.repeat(split["user_id"].to_numpy(np.int64), total)
    position = np.arange(items.size, dtype=np.int64) - np.repeat(starts, total)
    return pd.DataFrame({"user_id": users, "item_id": items, "timestamp": position.astype(float)})


def write_atomic(split: pd.DataFrame, num_items: int, folder: Path, name: str) -> dict[str, Path]:
    """``folder/name/name.inter`` and ``.item`` (RecBole's ``data_path``/``dataset`` layout)."""
    if num_items < 1:
        raise ValueError(f"num_items: expected the size N of item_index (>= 1), got {num_items}")
    inter = atomic_interactions(split)
    top = int(inter["item_id"].max()) if len(inter) else 0
    if top > num_items or (len(inter) and int(inter["item_id"].min()) < 1):
        raise ValueError(
            f"next_item_split: item tokens must lie in 1..{num_items} (item_index size), "
            f"found {int(inter['item_id'].min())}..{top}"
        )
    target = Path(folder) / name
    target.mkdir(parents=True, exist_ok=True)
    paths = {"inter": target / f"{name}.inter", "item": target / f"{name}.item"}
    _write_tsv(inter, INTER_HEADER, paths["inter"])
    items = pd.DataFrame({"item_id": np.arange(1, num_items + 1, dtype=np.int64)})
    _write_tsv(items, ITEM_HEADER, paths["item"])
    return paths


def read_atomic_inter(path: Path) -> pd.DataFrame:
    """Read an ``.inter`` file back with the plain column names (for checks and tests)."""
    frame = pd.read_csv(path, sep="\t")
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    return frame


def leave_one_out(inter: pd.DataFrame) -> pd.DataFrame:
    """RecBole's ``LS: valid_and_test`` on ``order: TO``, done the same way in pandas.

    Sort by time (stable), group by user: last item = test, second last = valid, the rest =
    train. Used by the tests to show the file yields our split without RecBole installed.
    """
    ordered = inter.sort_values(["timestamp"], kind="stable")
    grouped = ordered.groupby("user_id", sort=False)["item_id"].agg(list)
    return pd.DataFrame(
        {
            "user_id": grouped.index.to_numpy(np.int64),
            "train": [items[:-2] for items in grouped],
            "valid_target": [items[-2] for items in grouped],
            "test_target": [items[-1] for items in grouped],
        }
    )


def _write_tsv(frame: pd.DataFrame, header: tuple[str, ...], path: Path) -> None:
    frame.to_csv(path, sep="\t", index=False, header=list(header))


def _check_split(split: pd.DataFrame) -> None:
    missing = [c for c in SPLIT_COLUMNS if c not in split.columns]
    if missing:
        raise ValueError(
            f"next_item_split: missing column(s) {missing}; expected {list(SPLIT_COLUMNS)} "
            "(the `sequences` pipeline's next_item_split table)"
        )
