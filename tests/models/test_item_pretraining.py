"""Masked item prediction: masks the right positions and learns a tiny fixed batch."""

import pytest
import torch

from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.models.item_pretraining import MaskedItemPretrainer

NUM_ITEMS = 20
MAX_LEN = 8
MASK, UR = NUM_ITEMS + 1, NUM_ITEMS + 2


def tokens_batch() -> torch.Tensor:
    rows = [[1, 2, 3, 4, 5, 6, 7, 8], [11, 12, 13], [20], [5, 6, 7, 8, 9]]
    tokens = torch.zeros(len(rows), MAX_LEN + 1, dtype=torch.long)
    for r, items in enumerate(rows):  # fixture only
        tokens[r, MAX_LEN - len(items) : MAX_LEN] = torch.tensor(items)
    tokens[:, -1] = UR
    return tokens


def pretrainer(causal: bool = False, ratio: float = 0.25) -> MaskedItemPretrainer:
    torch.manual_seed(0)
    config = EncoderConfig(
        num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=32, heads=2, dropout=0.0, causal=causal
    )
    return MaskedItemPretrainer(build_encoder(config), mask_ratio=ratio)


def test_mask_chooses_at_least_one_real_item_per_sequence_and_never_ur_or_padding():
    model = pretrainer()
    tokens = tokens_batch()
    masked, chosen = model.mask(tokens, torch.Generator().manual_seed(0))
    assert torch.equal(chosen.sum(1), torch.tensor([2, 1, 1, 1]))  # round(.25 n), at least 1
    assert torch.all(masked[chosen] == MASK) and torch.all(tokens[chosen] != 0)
    assert torch.equal(masked[~chosen], tokens[~chosen])
    assert not chosen[:, -1].any()


@pytest.mark.parametrize("causal", [False, True])
def test_loss_decreases_on_a_tiny_fixed_batch(causal):
    model = pretrainer(causal=causal)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tokens, g = tokens_batch(), torch.Generator().manual_seed(1)
    first = model.loss(tokens, torch.Generator().manual_seed(99)).item()
    for _ in range(40):
        loss = model.loss(tokens, g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    last = model.loss(tokens, torch.Generator().manual_seed(99)).item()
    assert last < 0.6 * first


def test_bad_ratio_is_rejected():
    with pytest.raises(ValueError, match="mask_ratio"):
        pretrainer(ratio=0.0)
