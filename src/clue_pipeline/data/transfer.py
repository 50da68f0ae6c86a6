"""Which users pre-training may read: the transfer protocols.

``transductive`` (the default, the paper's): pre-training reads every user's training
sequence, and the same users are fine-tuned and tested. What it measures is the reuse of
training on those users, not transfer to users the encoder never saw.
``inductive``: a seeded ``pretrain_share`` of the users is set apart for pre-training; the
others are the downstream users, fine-tuned (with any share of their labels) and tested. No
downstream user's sequence is ever pre-trained on, so a gain over CLUE-Zero is transfer.

Each table of the sequences stage carries a ``pretrain_user`` column under ``inductive``; the
pre-training corpus keeps those rows, fine-tuning and evaluation keep the others. A user's
side depends on the user id and the seed only, so it is the same in every table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clue_pipeline.data.errors import DataError

PROTOCOLS = ("transductive", "inductive")
PRETRAIN_USER = "pretrain_user"


def check_protocol(protocol: str, pretrain_share: float) -> None:
    if protocol not in PROTOCOLS:
        raise DataError(
            f"value {protocol!r} is not a transfer protocol",
            parameter="sequences.transfer.protocol",
            expected=f"one of {list(PROTOCOLS)}",
        )
    if not isinstance(pretrain_share, int | float) or not 0.0 < pretrain_share < 1.0:
        raise DataError(
            f"value {pretrain_share!r} leaves no user on one side",
            parameter="sequences.transfer.pretrain_share",
            expected="a share strictly between 0 and 1",
        )


def pretraining_users(user_ids: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Per user id, whether it is set apart for pre-training (a seeded hash, ~``share``)."""
    x = np.asarray(user_ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):  # splitmix64: wrapping arithmetic is the point
        x = x + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) < share


def mark_users(table: pd.DataFrame, protocol: str, share: float, seed: int) -> pd.DataFrame:
    """``table`` with a ``pretrain_user`` column under ``inductive``; as it is otherwise."""
    check_protocol(protocol, share)
    if protocol == "transductive":
        return table
    marked = table.copy()
    marked[PRETRAIN_USER] = pretraining_users(marked["user_id"].to_numpy(), share, seed)
    return marked


def pretraining_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows pre-training may read (all of them unless the table is marked)."""
    if PRETRAIN_USER not in table.columns:
        return table
    return table[table[PRETRAIN_USER].to_numpy(dtype=bool)].reset_index(drop=True)


def downstream_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows fine-tuning and evaluation use (all of them unless the table is marked)."""
    if PRETRAIN_USER not in table.columns:
        return table
    return table[~table[PRETRAIN_USER].to_numpy(dtype=bool)].reset_index(drop=True)
