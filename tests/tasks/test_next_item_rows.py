"""Next-item training rows in both layouts: the same users under sparsity, and prefix rows
that teach the [UR] state what the evaluation asks of it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.tasks.finetuning import evaluate_next_item, finetune_next_item
from clue_pipeline.tasks.task_data import keep_training_users, next_item_data
from clue_pipeline.training.loop import TrainConfig

NUM_ITEMS = 30


def _split(lists: list[list[int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": np.arange(len(lists)),
            "train": [s[:-2] for s in lists],
            "valid_target": [s[-2] for s in lists],
            "test_target": [s[-1] for s in lists],
        }
    )


def _successor_lists(users: int, seed: int) -> list[list[int]]:
    """Each user walks the items in order from a random start: item i is followed by i + 1."""
    rng = np.random.default_rng(seed)
    lists = []
    for _ in range(users):
        start, length = rng.integers(0, NUM_ITEMS), rng.integers(5, 12)
        lists.append([int((start + k) % NUM_ITEMS) + 1 for k in range(length)])
    return lists


def test_sparsity_keeps_the_same_users_in_both_layouts():
    lists = _successor_lists(80, seed=0)
    data = keep_training_users(next_item_data(_split(lists), 8, NUM_ITEMS), 0.5, seed=3)
    prefix = data.training_rows("prefix")
    kept_rows = len(data.train_tokens)
    assert kept_rows == 40
    # every kept user gives (training length - 1) prefix rows, no row from a dropped user
    lengths = data.train_ends - data.train_starts
    assert prefix.count == int((lengths - 1).sum())
    row_starts = prefix.dataset[0].numpy()
    assert set(np.unique(row_starts)) <= set(data.train_starts.tolist())
    # the per-user rows are those same users: their last target is each kept list's last item
    last_items = data.train_flat[data.train_ends - 1]
    np.testing.assert_array_equal(data.train_targets[:, -1], last_items)


def test_prefix_rows_teach_ur_the_successor_pattern():
    torch.manual_seed(0)
    data = next_item_data(_split(_successor_lists(200, seed=1)), 8, NUM_ITEMS)
    encoder = build_encoder(
        EncoderConfig(num_items=NUM_ITEMS, max_len=8, hidden=32, blocks=1, heads=2, dropout=0.0)
    )
    config = TrainConfig(
        epochs=6, batch_size=64, lr=5e-3, seed=0, device="cpu", bucket_by_length=True
    )
    model, _ = finetune_next_item(data.training_rows("prefix"), data.valid, encoder, config)
    metrics = evaluate_next_item(model, data.valid)
    assert metrics["mrr@10"] > 0.8  # chance: about 0.1
