"""SimSiam: loss values, stop-gradient and predictor switches, diagnostics."""

import math

import pytest
import torch

from clue_pipeline.augment import ViewPolicy, make_views
from clue_pipeline.models.clue import SimSiam, alignment, simsiam_loss, uniformity, z_std
from clue_pipeline.models.encoders import EncoderConfig, build_encoder

NUM_ITEMS = 40
MAX_LEN = 10


def tokens_batch(rows: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, NUM_ITEMS + 1, (rows, MAX_LEN + 1), generator=g)
    lengths = torch.randint(1, MAX_LEN + 1, (rows,), generator=g)
    pads = torch.arange(MAX_LEN + 1)[None, :] < (MAX_LEN - lengths)[:, None]
    tokens = tokens.masked_fill(pads, 0)
    tokens[:, -1] = NUM_ITEMS + 2
    return tokens


def make_model(**kwargs) -> SimSiam:
    torch.manual_seed(0)
    config = EncoderConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=16, heads=2, dropout=0.2)
    return SimSiam(build_encoder(config), proj_dim=16, pred_dim=8, **kwargs)


def test_loss_is_minus_one_for_identical_aligned_vectors_and_plus_one_for_opposite():
    v = torch.randn(8, 5)
    assert simsiam_loss(v, v, v, v).item() == pytest.approx(-1.0, abs=1e-6)
    assert simsiam_loss(v, v, 2 * v, 3 * v).item() == pytest.approx(-1.0, abs=1e-6)
    assert simsiam_loss(v, v, -v, -v).item() == pytest.approx(1.0, abs=1e-6)


def test_forward_shapes_and_stop_gradient_blocks_target_branch():
    model = make_model()
    views = make_views(
        tokens_batch(), ViewPolicy(), torch.Generator().manual_seed(1), NUM_ITEMS + 1
    )
    p1, p2, z1, z2 = model(*views)
    assert p1.shape == z1.shape == (16, 16)
    assert not z1.requires_grad and not z2.requires_grad
    # gradient only through p: the cosine against a constant target
    p1.retain_grad()
    simsiam_loss(p1, p2, z1, z2).backward()
    assert p1.grad is not None and p1.grad.abs().sum() > 0
    assert model.encoder.item_embedding.weight.grad.abs().sum() > 0


def test_without_stop_gradient_gradients_flow_through_z():
    model = make_model(stop_gradient=False)
    tokens = tokens_batch()
    out = model.views_forward(tokens, tokens)
    assert out.z1.requires_grad
    z_only = -torch.nn.functional.cosine_similarity(out.z1, out.z2 + 1.0).mean()
    z_only.backward()
    assert model.projector[0].weight.grad.abs().sum() > 0
    # with stop-gradient the same z-only objective would not be differentiable at all
    blocked = make_model().views_forward(tokens, tokens)
    assert not blocked.z1.requires_grad


def test_predictor_switch():
    with_pred, without = make_model(), make_model(predictor=False)
    assert sum(p.numel() for p in with_pred.parameters()) > sum(
        p.numel() for p in without.parameters()
    )
    without.eval()
    tokens = tokens_batch()
    p1, _, z1, _ = without(tokens, tokens)
    assert torch.equal(p1, z1)
    p1, _, z1, _ = with_pred.eval()(tokens, tokens)
    assert not torch.allclose(p1, z1)


def test_loss_decreases_in_a_few_steps():
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    tokens, g = tokens_batch(32), torch.Generator().manual_seed(3)
    losses = []
    for _ in range(15):
        loss = simsiam_loss(*model(*make_views(tokens, ViewPolicy(), g, NUM_ITEMS + 1)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < losses[0] - 0.1


def test_collapse_diagnostics():
    torch.manual_seed(0)
    spread = torch.randn(512, 32)
    collapsed = torch.ones(512, 32) + 1e-4 * torch.randn(512, 32)
    assert z_std(spread).item() == pytest.approx(1 / math.sqrt(32), rel=0.1)
    assert z_std(collapsed).item() < 1e-3
    assert alignment(spread, spread).item() == pytest.approx(0.0, abs=1e-6)
    assert alignment(spread, -spread).item() == pytest.approx(4.0, rel=1e-5)
    assert uniformity(spread).item() < -3.0  # near the sphere's optimum log E exp(-4 + ...)
    assert uniformity(collapsed).item() == pytest.approx(0.0, abs=1e-3)


def test_stop_gradient_halves_the_gradient_without_predictor():
    """Without h, L = -0.5 (cos(z1, sg z2) + cos(z2, sg z1)): each z gets only its own term,
    exactly half of the gradient of -cos(z1, z2) that flows when stop_gradient is off."""
    tokens = tokens_batch()
    grads = {}
    for stop in (True, False):
        model = make_model(stop_gradient=stop, predictor=False)
        torch.manual_seed(5)  # same dropout masks in both runs
        simsiam_loss(*model(tokens, tokens.flip(0))).backward()
        grads[stop] = model.projector[0].weight.grad.clone()
    assert grads[True].abs().sum() > 0
    torch.testing.assert_close(grads[False], 2 * grads[True], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_encoding_by_length_changes_neither_vectors_nor_batchnorm_statistics(mode):
    """Without dropout, the grouped pass gives the same projections in both modes: in train
    mode the BatchNorm heads normalise the same mixed batch."""
    config = EncoderConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=16, heads=2, dropout=0.0)
    outputs = []
    for grouped in (False, True):
        torch.manual_seed(0)
        model = SimSiam(build_encoder(config), proj_dim=16, pred_dim=8, encode_by_length=grouped)
        model.train(mode == "train")
        outputs.append(model.views_forward(tokens_batch(seed=1), tokens_batch(seed=2)))
    for padded, grouped in zip(*outputs, strict=True):
        torch.testing.assert_close(grouped, padded, rtol=1e-4, atol=1e-5)
