"""Nodes of the `augment` pipeline: validate the view settings, show what they do."""

from __future__ import annotations

import logging
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch

from clue_pipeline.augment import make_views, validate_view_policy
from clue_pipeline.data.tokens import special_tokens
from clue_pipeline.tasks.batching import model_inputs

logger = logging.getLogger(__name__)


def build_view_policy(view_params: dict) -> dict:
    """The validated view settings that `pretrain` consumes (raises naming a bad parameter)."""
    policy = validate_view_policy(view_params)
    logger.info("view policy: %s", asdict(policy))
    return asdict(policy)


def sample_views(
    sequences: pd.DataFrame,
    item_index: pd.DataFrame,
    view_policy: dict,
    sample_params: dict,
    max_len: int,
) -> pd.DataFrame:
    """A few users' sequences beside their two views, in original item ids, for inspection
    (the model's ``encoder.max_len`` most recent items)."""
    num_items = len(item_index)
    rng = np.random.default_rng(sample_params["seed"])
    count = min(int(sample_params["users"]), len(sequences))
    chosen = sequences.iloc[np.sort(rng.choice(len(sequences), size=count, replace=False))]
    tokens = torch.as_tensor(
        model_inputs(chosen["items"], int(max_len), special_tokens(num_items).user)
    )
    generator = torch.Generator().manual_seed(int(sample_params["seed"]))
    view_a, view_b = make_views(
        tokens,
        validate_view_policy(view_policy),
        generator,
        mask_token=special_tokens(num_items).mask,
    )
    decode = _decoder(item_index, num_items)
    return pd.DataFrame(
        {
            "user_id": chosen["user_id"].to_numpy(),
            "original": [decode(row) for row in tokens.numpy()],
            "view_a": [decode(row) for row in view_a.numpy()],
            "view_b": [decode(row) for row in view_b.numpy()],
        }
    )


def _decoder(item_index: pd.DataFrame, num_items: int):
    """Token row -> list of original ids; [MASK] shown as -1, padding and [UR] dropped."""
    layout = special_tokens(num_items)
    lookup = np.full(layout.vocab_size, -1, dtype=np.int64)
    lookup[item_index["token"].to_numpy()] = item_index["item_id"].to_numpy()

    def decode(row: np.ndarray) -> list[int]:
        real = row[(row != layout.pad) & (row != layout.user)]
        return lookup[real].tolist()

    return decode
