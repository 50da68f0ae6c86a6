"""View strategies: each does exactly its transformation, vectorised, seeded, padding-safe."""

from collections import Counter

import pytest
import torch

from clue_pipeline.augment import (
    VIEW_STRATEGIES,
    ViewPolicy,
    apply_views,
    make_views,
    validate_view_policy,
)

NUM_ITEMS = 500
MASK = NUM_ITEMS + 1
UR = NUM_ITEMS + 2
WIDTH = 21


def random_batch(seed: int = 0, rows: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded batch of distinct items with [UR] last; lengths 1..WIDTH-1."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, WIDTH, (rows,), generator=g)
    lengths[:3] = torch.tensor([1, 2, WIDTH - 1])
    tokens = torch.zeros(rows, WIDTH, dtype=torch.long)
    for row, n in enumerate(lengths.tolist()):  # fixture only
        tokens[row, WIDTH - 1 - n : WIDTH - 1] = torch.randperm(NUM_ITEMS, generator=g)[:n] + 1
    tokens[:, -1] = UR
    return tokens, lengths


def real_items(row: torch.Tensor) -> list[int]:
    return [t for t in row[:-1].tolist() if t != 0]


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mask_keeps_positions_and_replaces_exactly_the_ratio():
    tokens, lengths = random_batch()
    out = VIEW_STRATEGIES["mask"](tokens, 0.3, gen(), MASK)
    masked = out == MASK
    assert torch.equal(masked.sum(1), torch.round(0.3 * lengths).long())
    assert torch.equal(out[~masked], tokens[~masked])
    assert torch.all(tokens[masked] != 0)
    assert torch.equal(out[:, -1], tokens[:, -1])


def test_crop_removes_one_contiguous_block_of_the_right_size_in_order():
    tokens, lengths = random_batch()
    out = VIEW_STRATEGIES["crop"](tokens, 0.4, gen(), MASK)
    for row in range(tokens.shape[0]):
        before, after = real_items(tokens[row]), real_items(out[row])
        n = len(before)
        k = min(round(0.4 * n), n - 1)
        assert len(after) == n - k >= 1
        starts = [s for s in range(n - k + 1) if before[:s] + before[s + k :] == after]
        assert starts, f"row {row}: {after} is not {before} minus one contiguous block"
        width_used = len(after) + 1
        assert torch.all(out[row, : WIDTH - width_used] == 0)  # re-left-padded
        assert torch.all(out[row, WIDTH - width_used : -1] != 0)
    assert torch.all(out[:, -1] == UR)


def test_permute_keeps_multiset_and_changes_only_one_contiguous_block():
    tokens, lengths = random_batch()
    out = VIEW_STRATEGIES["permute"](tokens, 0.5, gen(), MASK)
    assert torch.equal(out == 0, tokens == 0)
    changed_rows = 0
    for row in range(tokens.shape[0]):
        before, after = real_items(tokens[row]), real_items(out[row])
        assert Counter(before) == Counter(after)
        diff = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        if diff:
            changed_rows += 1
            assert diff[-1] - diff[0] + 1 <= round(0.5 * len(before))
            # outside the span the order is intact; inside it the same items in another order
            lo, hi = diff[0], diff[-1] + 1
            assert sorted(before[lo:hi]) == sorted(after[lo:hi])
    assert changed_rows > tokens.shape[0] // 2


def test_dropout_view_is_identity():
    tokens, _ = random_batch()
    assert torch.equal(VIEW_STRATEGIES["dropout"](tokens, 0.0, gen(), MASK), tokens)


@pytest.mark.parametrize("compose", ["sequential", "random"])
def test_padding_ur_and_length_one_sequences_stay_valid(compose):
    tokens, lengths = random_batch()
    policy = validate_view_policy(
        {
            "strategies": ["crop", "permute", "mask"],
            "mask_ratio": 0.9,
            "crop_ratio": 0.9,
            "permute_ratio": 0.9,
            "compose": compose,
        }
    )
    out = apply_views(tokens, policy, gen(), MASK)
    assert torch.all(out[:, -1] == UR)
    new_lengths = (out[:, :-1] != 0).sum(1)
    assert torch.all(new_lengths >= 1) and torch.all(new_lengths <= lengths)
    # left-padded: no pad right of a real token
    first_real = (out != 0).to(torch.int8).argmax(1)
    assert torch.all(new_lengths == WIDTH - 1 - first_real)
    assert torch.all(out[lengths == 1][:, -2] != 0)


def test_same_seed_same_views_different_seed_different_views():
    tokens, _ = random_batch()
    policy = ViewPolicy(strategies=["crop", "mask", "permute"], compose="sequential")
    a1, b1 = make_views(tokens, policy, gen(7), MASK)
    a2, b2 = make_views(tokens, policy, gen(7), MASK)
    a3, _ = make_views(tokens, policy, gen(8), MASK)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(a1, a3)
    assert not torch.equal(a1, b1)  # the two views of one call differ


def test_random_compose_picks_one_strategy_per_sequence():
    tokens, lengths = random_batch(rows=200)
    policy = ViewPolicy(
        strategies=["mask", "crop"], mask_ratio=0.5, crop_ratio=0.5, compose="random"
    )
    out = apply_views(tokens, policy, gen(), MASK)
    has_mask = (out == MASK).any(1)
    shorter = (out[:, :-1] != 0).sum(1) < lengths
    assert not torch.any(has_mask & shorter)  # never both
    eligible = lengths >= 2
    assert has_mask[eligible].any() and shorter[eligible].any()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"strategies": ["mask", "shuffle"]}, r"strategies\[1\].*known: \['crop', 'dropout'"),
        ({"strategies": []}, "'strategies'"),
        ({"mask_ratio": 1.0}, "'mask_ratio'"),
        ({"crop_ratio": -0.1}, "'crop_ratio'"),
        ({"compose": "both"}, "'compose'"),
        ({"mask_rate": 0.2}, "unknown parameters"),
    ],
)
def test_validation_names_the_bad_parameter(params, message):
    with pytest.raises(ValueError, match=message):
        validate_view_policy(params)


def test_validation_accepts_a_good_policy():
    policy = validate_view_policy({"strategies": ["dropout"], "mask_ratio": 0})
    assert policy.strategies == ["dropout"] and policy.mask_ratio == 0.0
