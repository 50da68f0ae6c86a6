"""NFM / DeepFM bag-of-items baselines: shapes, token handling, learning."""

import pytest
import torch

from clue_pipeline.models.baselines import (
    BASELINES,
    NFM,
    BaselineConfig,
    DeepFM,
    build_baseline,
)

N = 30  # items 1..30; [MASK] = 31, [UR] = 32
MASK, UR = N + 1, N + 2


def _config(**overrides) -> BaselineConfig:
    return BaselineConfig(**{"num_items": N, "num_classes": 4, "hidden": 8, **overrides})


def _batch() -> torch.Tensor:
    # Left-padded histories with [UR] in the last column, as the model input contract says.
    return torch.tensor(
        [
            [0, 0, 3, 7, 9, UR],
            [1, 2, 3, 4, 5, UR],
            [0, 0, 0, 0, 30, UR],
        ]
    )


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_shapes_and_registry(name):
    model = build_baseline(name, _config(mlp_layers=(16, 12)))
    assert isinstance(model, BASELINES[name])
    tokens = _batch()
    assert model.logits(tokens).shape == (3, 4)
    expected_dim = 12 if name == "nfm" else 8 + 12
    assert model.user_vectors(tokens).shape == (3, expected_dim)
    loss = model.loss(tokens, torch.tensor([0, 1, 3]))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.item_embedding.weight.grad is not None


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_padding_mask_ur_order_and_repeats_are_ignored(name):
    torch.manual_seed(0)
    model = build_baseline(name, _config()).eval()
    # Same bag {3, 7, 9} written five ways: more padding, a [MASK], no [UR], other order,
    # and a repeated item (multi-hot, so a repeat counts once).
    variants = torch.tensor(
        [
            [0, 0, 3, 7, 9, UR],
            [0, 0, 0, 3, 7, 9],
            [MASK, 0, 3, 7, 9, UR],
            [0, 0, 9, 3, 7, UR],
            [0, 3, 9, 3, 7, UR],
        ]
    )
    with torch.no_grad():
        # Give the linear term and embeddings non-trivial values so ignoring matters.
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        logits = model.logits(variants)
        users = model.user_vectors(variants)
        other = model.logits(torch.tensor([[0, 0, 3, 7, 10, UR]]))
    for row in range(1, variants.shape[0]):
        torch.testing.assert_close(logits[row], logits[0])
        torch.testing.assert_close(users[row], users[0])
    assert not torch.allclose(other[0], logits[0])  # a different bag gives different logits


def test_bi_interaction_equals_sum_of_pairwise_products():
    torch.manual_seed(1)
    model = NFM(_config())
    ids, weights = model.bag(torch.tensor([[0, 4, 11, 2, UR]]))
    bi = model.bi_interaction(ids, weights)[0]
    v = model.item_embedding.weight
    expected = v[4] * v[11] + v[4] * v[2] + v[11] * v[2]
    torch.testing.assert_close(bi, expected)


def test_empty_history_gives_finite_output():
    model = DeepFM(_config()).eval()
    with torch.no_grad():
        out = model.logits(torch.tensor([[0, 0, 0, UR], [0, 5, 6, UR]]))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_loss_decreases_on_a_learnable_problem(name):
    # Class = whether the bag holds item 1 or item 2, plus which of items 3/4 co-occurs:
    # an interaction-dependent label the models can fit in a few steps.
    g = torch.Generator().manual_seed(2)
    first = torch.randint(0, 2, (64,), generator=g)
    second = torch.randint(0, 2, (64,), generator=g)
    noise = torch.randint(5, N + 1, (64, 3), generator=g)
    tokens = torch.cat(
        [noise, (first + 1).unsqueeze(1), (second + 3).unsqueeze(1), torch.full((64, 1), UR)],
        dim=1,
    )
    labels = first * 2 + second
    torch.manual_seed(3)
    model = build_baseline(name, _config(hidden=16, dropout=0.0))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        optimiser.zero_grad()
        loss = model.loss(tokens, labels)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    model.eval()
    with torch.no_grad():
        accuracy = (model.logits(tokens).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9


def test_without_first_order_or_batch_norm_still_works():
    model = NFM(_config(first_order=False, batch_norm=False, mlp_layers=()))
    assert model.linear is None
    assert model.user_vectors(_batch()).shape == (3, 8)


def test_config_and_input_errors_name_the_parameter():
    with pytest.raises(ValueError, match="'num_classes' = 1"):
        NFM(_config(num_classes=1))
    with pytest.raises(ValueError, match="'dropout' = 1.5"):
        DeepFM(_config(dropout=1.5))
    with pytest.raises(ValueError, match="baseline 'fm': unknown"):
        build_baseline("fm", _config())
    with pytest.raises(ValueError, match="expected a LongTensor"):
        NFM(_config()).logits(torch.zeros(2, 5))


def test_runs_on_cuda_when_available():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    model = DeepFM(_config()).cuda()
    assert model.logits(_batch().cuda()).device.type == "cuda"
