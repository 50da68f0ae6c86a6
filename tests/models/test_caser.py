"""Caser as an encoder: its window of the last L items, the [UR] contract, learning, devices."""

import pytest
import torch

from clue_pipeline.models.encoders import ENCODERS, EncoderConfig, build_encoder
from clue_pipeline.models.heads import NextItemModel

NUM_ITEMS = 30
UR = NUM_ITEMS + 2


def caser(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    config = EncoderConfig(
        num_items=NUM_ITEMS, kind="caser", max_len=12, hidden=16, dropout=0.5, **overrides
    )
    return build_encoder(config).eval()


def rows(*sequences: list[int], width: int = 13) -> torch.Tensor:
    return torch.tensor([[0] * (width - 1 - len(s)) + s + [UR] for s in sequences])


def test_registered_with_the_papers_settings_by_default():
    encoder = caser()
    assert ENCODERS["caser"] is type(encoder)
    assert (encoder.config.window, encoder.config.horizontal_filters) == (5, 16)
    assert encoder.config.vertical_filters == 4
    assert len(encoder.horizontal) == 5  # heights 1..L
    assert encoder.fc.in_features == 16 * 5 + 4 * 16


def test_user_vector_is_the_window_of_the_last_l_items():
    encoder = caser(window=3)
    with torch.no_grad():
        base = encoder(rows([1, 2, 3, 4, 5, 6]))
        older_changed = encoder(rows([9, 9, 9, 4, 5, 6]))  # outside the last 3 items
        recent_changed = encoder(rows([1, 2, 3, 4, 5, 9]))
    torch.testing.assert_close(base.user, older_changed.user)
    assert not torch.allclose(base.user, recent_changed.user)
    # [UR] reads the window ending at the last item: the state that predicts the next item
    torch.testing.assert_close(base.user, base.states[:, -2])


def test_short_history_equals_zero_padding_and_empty_history_is_finite():
    encoder = caser()
    with torch.no_grad():
        short = encoder(rows([7, 8], width=3)).user
        padded = encoder(rows([7, 8], width=13)).user
        empty = encoder(torch.tensor([[UR]])).user
    torch.testing.assert_close(short, padded)
    assert empty.shape == (1, 16) and torch.isfinite(empty).all()


def test_bad_window_names_the_parameter():
    with pytest.raises(ValueError, match="'window'"):
        caser(window=0)


def _fit_steps(device: str) -> tuple[float, float]:
    model = NextItemModel(caser()).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tokens = rows([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15]).to(device)
    targets = torch.zeros_like(tokens)
    targets[:, -1] = torch.tensor([6, 11, 16], device=device)
    losses = []
    for _ in range(20):
        loss = model.loss(tokens, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_a_few_steps_lower_the_loss_on_cpu():
    first, last = _fit_steps("cpu")
    assert last < 0.5 * first


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_few_steps_lower_the_loss_on_cuda():
    first, last = _fit_steps("cuda")
    assert last < 0.5 * first
