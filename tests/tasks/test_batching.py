"""Token lists to model inputs, next-item targets, and batches of similar length."""

from __future__ import annotations

import numpy as np
import torch

from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.tasks.batching import (
    append_items,
    flatten,
    model_inputs,
    next_item_training_arrays,
    prefix_batch,
    prefix_row_bounds,
)
from clue_pipeline.training.length_batching import bucketed_order, trim_padding

UR = 99


def test_model_inputs_keep_the_most_recent_items_left_padded_then_ur():
    inputs = model_inputs([[1, 2, 3], [4], [5, 6, 7, 8, 9]], max_len=3, user_token=UR)
    assert inputs.tolist() == [[1, 2, 3, UR], [0, 0, 4, UR], [7, 8, 9, UR]]


def test_next_item_targets_are_the_following_item_and_ur_predicts_the_last():
    tokens, targets = next_item_training_arrays([[1, 2, 3], [4]], max_len=3, user_token=UR)
    assert tokens.tolist() == [[0, 1, 2, UR], [0, 0, 0, UR]]
    assert targets.tolist() == [[0, 2, 3, 3], [0, 0, 0, 4]]


def test_append_items_puts_the_validation_item_last():
    merged = append_items([[1, 2], [3]], np.array([7, 8]))
    assert merged.to_pylist() == [[1, 2, 7], [3, 8]]


def test_trimming_padding_changes_no_encoder_output():
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(num_items=20, max_len=8)).eval()
    tokens = torch.as_tensor(model_inputs([[1, 2], [3, 4, 5]], 8, 22))
    targets = torch.arange(tokens.numel()).view_as(tokens)
    trimmed, trimmed_targets = trim_padding(tokens, targets)
    assert trimmed.shape == (2, 4) and torch.equal(trimmed_targets, targets[:, -4:])
    with torch.no_grad():
        assert torch.allclose(encoder(tokens).user, encoder(trimmed).user, atol=1e-6)


def test_bucketed_order_is_a_seeded_permutation_of_similar_length_batches():
    lengths = torch.randint(1, 50, (1000,), generator=torch.Generator().manual_seed(0))
    order = torch.randperm(1000, generator=torch.Generator().manual_seed(1))
    bucketed = bucketed_order(order, lengths, batch_size=50, span=5, seed=3)
    assert sorted(bucketed.tolist()) == list(range(1000))
    assert torch.equal(bucketed, bucketed_order(order, lengths, 50, 5, 3))
    spread = lengths[bucketed].view(20, 50)
    random_spread = lengths[order].view(20, 50)
    widest = (spread.max(1).values - spread.min(1).values).float().mean()
    assert widest < 0.5 * (random_spread.max(1).values - random_spread.min(1).values).float().mean()


def test_prefix_rows_are_every_prefix_then_ur_predicting_the_next_item():
    flat, offsets = flatten([[1, 2, 3], [4], [5, 6]])
    row_starts, row_ends = prefix_row_bounds(offsets[:-1], offsets[1:])
    assert row_starts.tolist() == [0, 0, 4] and row_ends.tolist() == [1, 2, 5]
    tokens, targets = prefix_batch(
        torch.as_tensor(flat), torch.as_tensor(row_starts), torch.as_tensor(row_ends), 3, UR
    )
    assert tokens.tolist() == [[0, 1, UR], [1, 2, UR], [0, 5, UR]]  # cut to the longest: 2
    assert targets.tolist() == [[0, 0, 2], [0, 0, 3], [0, 0, 6]]


def test_prefix_rows_match_a_per_prefix_loop_on_random_lists():
    rng = np.random.default_rng(0)
    lists = [rng.integers(1, 40, rng.integers(1, 12)).tolist() for _ in range(60)]
    max_len = 4
    expected_tokens, expected_next = [], []
    for items in lists:
        for k in range(1, len(items)):
            window = items[max(0, k - max_len) : k]
            expected_tokens.append([0] * (max_len - len(window)) + window + [UR])
            expected_next.append(items[k])
    flat, offsets = flatten(lists)
    row_starts, row_ends = prefix_row_bounds(offsets[:-1], offsets[1:])
    tokens, targets = prefix_batch(
        torch.as_tensor(flat), torch.as_tensor(row_starts), torch.as_tensor(row_ends), max_len, UR
    )
    assert tokens.tolist() == expected_tokens
    assert targets[:, -1].tolist() == expected_next and not targets[:, :-1].any()
