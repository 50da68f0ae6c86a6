"""Catalog tables of the `sequences` pipeline to the arrays each downstream task trains on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clue_pipeline.tasks.batching import (
    append_items,
    flatten,
    model_inputs,
    next_item_training_arrays,
)
from clue_pipeline.tasks.finetuning import RankingData


@dataclass
class NextItemData:
    train_tokens: np.ndarray
    train_targets: np.ndarray
    valid: RankingData
    test: RankingData


@dataclass
class ClassificationData:
    """Model inputs and 0-based labels per split (rows = instances, not users)."""

    tokens: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    num_classes: int


def next_item_data(split: pd.DataFrame, max_len: int, num_items: int) -> NextItemData:
    """Leave-one-out: train on ``train``, validate on ``valid_target``, test on ``test_target``.

    The test input is the training part followed by the validation item, as in SASRec.
    Histories (for the optional exclusion of seen items) are 0-based item indices.
    """
    user = num_items + 2
    train = split["train"]
    valid_target = split["valid_target"].to_numpy(np.int64)
    test_target = split["test_target"].to_numpy(np.int64)
    tokens, targets = next_item_training_arrays(train, max_len, user)
    with_valid = append_items(train, valid_target)
    return NextItemData(
        train_tokens=tokens,
        train_targets=targets,
        valid=RankingData(model_inputs(train, max_len, user), valid_target - 1, _history(train)),
        test=RankingData(
            model_inputs(with_valid, max_len, user), test_target - 1, _history(with_valid)
        ),
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
    joined = instances.merge(
        sequences[["user_id", "items"]], on="user_id", how="inner", validate="m:1"
    )
    tokens, labels = {}, {}
    for split in ("train", "valid", "test"):
        part = joined[joined["split"] == split]
        tokens[split] = model_inputs(part["items"], max_len, num_items + 2)
        labels[split] = part[label].to_numpy(np.int64)
    return ClassificationData(tokens=tokens, labels=labels, num_classes=num_classes)
