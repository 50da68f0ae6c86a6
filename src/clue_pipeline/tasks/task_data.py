"""Catalog tables of the `sequences` pipeline to the arrays each downstream task trains on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clue_pipeline.data.tokens import special_tokens
from clue_pipeline.tasks.batching import (
    append_items,
    flatten,
    model_inputs,
    next_item_training_arrays,
)
from clue_pipeline.tasks.finetuning import (
    NEXT_ITEM_LAYOUTS,
    NextItemRows,
    RankingData,
    prefix_rows,
    user_rows,
)


@dataclass
class NextItemData:
    """Per-user training arrays, plus each user's training part as bounds into ``train_flat``
    (row ``u`` of the arrays is ``train_flat[train_starts[u]:train_ends[u]]``)."""

    train_tokens: np.ndarray
    train_targets: np.ndarray
    valid: RankingData
    test: RankingData
    train_flat: np.ndarray
    train_starts: np.ndarray
    train_ends: np.ndarray
    max_len: int
    user_token: int

    def training_rows(self, layout: str = "user") -> NextItemRows:
        """The training rows in ``layout`` (see :class:`NextItemRows`)."""
        if layout == "user":
            return user_rows(self.train_tokens, self.train_targets)
        if layout == "prefix":
            return prefix_rows(
                self.train_flat, self.train_starts, self.train_ends, self.max_len, self.user_token
            )
        raise ValueError(
            f"finetune.next_item.rows = {layout!r}: expected one of {list(NEXT_ITEM_LAYOUTS)}"
        )


@dataclass
class ClassificationData:
    """Model inputs and 0-based labels per split (rows = instances, not users)."""

    tokens: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    num_classes: int
    users: dict[str, np.ndarray] | None = None


def next_item_data(split: pd.DataFrame, max_len: int, num_items: int) -> NextItemData:
    """Leave-one-out: train on ``train``, validate on ``valid_target``, test on ``test_target``.

    The test input is the training part followed by the validation item, as in SASRec.
    Histories (for the optional exclusion of seen items) are 0-based item indices.
    """
    user = special_tokens(num_items).user
    train = split["train"]
    valid_target = split["valid_target"].to_numpy(np.int64)
    test_target = split["test_target"].to_numpy(np.int64)
    tokens, targets = next_item_training_arrays(train, max_len, user)
    with_valid = append_items(train, valid_target)
    flat, offsets = flatten(train)
    return NextItemData(
        train_tokens=tokens,
        train_targets=targets,
        valid=RankingData(model_inputs(train, max_len, user), valid_target - 1, _history(train)),
        test=RankingData(
            model_inputs(with_valid, max_len, user), test_target - 1, _history(with_valid)
        ),
        train_flat=flat,
        train_starts=offsets[:-1],
        train_ends=offsets[1:],
        max_len=max_len,
        user_token=user,
    )


def _history(lists) -> tuple[np.ndarray, np.ndarray]:
    flat, offsets = flatten(lists)
    return offsets, flat - 1


def classification_data(
    sequences: pd.DataFrame,
    instances: pd.DataFrame,
    label: str,
    max_len: int,
    num_items: int,
    num_classes: int,
) -> ClassificationData:
    """Join instances (user_id, label, split) to the users' input sequences, per split."""
    joined = instances.drop(columns=["items"], errors="ignore").merge(
        sequences[["user_id", "items"]], on="user_id", how="inner", validate="m:1"
    )
    tokens, labels, users = {}, {}, {}
    for split in ("train", "valid", "test"):
        part = joined[joined["split"] == split]
        tokens[split] = model_inputs(part["items"], max_len, special_tokens(num_items).user)
        labels[split] = part[label].to_numpy(np.int64)
        users[split] = part["user_id"].to_numpy(np.int64)
    return ClassificationData(tokens=tokens, labels=labels, num_classes=num_classes, users=users)


def keep_training_users(data, fraction: float, seed: int):
    """The paper's sparsity setting: train on a seeded ``fraction`` of the training users.

    Validation and test stay whole, so results at 40/60/80/100 % are comparable.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"finetune.train_user_fraction = {fraction!r}: expected a value in (0, 1]")
    if fraction == 1.0:
        return data
    rng = np.random.default_rng(seed)
    if isinstance(data, NextItemData):
        keep = np.sort(
            rng.permutation(len(data.train_tokens))[: _count(len(data.train_tokens), fraction)]
        )
        data.train_tokens, data.train_targets = data.train_tokens[keep], data.train_targets[keep]
        data.train_starts, data.train_ends = data.train_starts[keep], data.train_ends[keep]
        return data
    users = np.unique(data.users["train"])
    chosen = rng.permutation(users)[: _count(len(users), fraction)]
    rows = np.isin(data.users["train"], chosen)
    data.tokens["train"], data.labels["train"] = (
        data.tokens["train"][rows],
        data.labels["train"][rows],
    )
    data.users["train"] = data.users["train"][rows]
    return data


def _count(total: int, fraction: float) -> int:
    return max(1, int(round(total * fraction)))
