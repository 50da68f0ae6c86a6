"""WEARec and TV-Rec encoders: each filter equals its published layer, what each sees, they learn
a fixed batch on every device, they train deterministically on CPU, bad knobs are refused by name.

The input contract every encoder keeps (shapes, padding, narrow batches, the ``last`` columns,
checkpoints) is tested for every kind in ``test_encoders.py``.
"""

import pytest
import torch
import torch.nn.functional as F

from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.models.item_pretraining import NextItemPretrainer
from clue_pipeline.models.wearec import haar_filter

NUM_ITEMS = 30
UR = NUM_ITEMS + 2
KINDS = ("wearec", "tvrec")
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
    ),
]


def make_encoder(kind: str, max_len: int = 12, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    config = EncoderConfig(
        num_items=NUM_ITEMS,
        kind=kind,
        max_len=max_len,
        hidden=16,
        heads=4,
        dropout=0.3,
        **overrides,
    )
    return build_encoder(config).eval()


def batch(sequences: list[list[int]], width: int) -> torch.Tensor:
    """Left-padded tokens with [UR] in the last column."""
    return torch.tensor([[0] * (width - 1 - len(s)) + s + [UR] for s in sequences])


def published_wearec_layer(mixer, x: torch.Tensor) -> torch.Tensor:
    """The authors' WEARecLayer mixing step (before its dropout, residual and LayerNorm), on a
    full window of even length without padding, with this module's parameters."""
    b, n, d = x.shape
    h = mixer.heads
    heads = x.view(b, n, h, d // h).permute(0, 2, 1, 3)  # (B, h, n, d/h)
    adapt = mixer.adapt(x.mean(dim=1)).view(b, h, n // 2 + 1, 2)
    gain = mixer.gain[..., None] * (1 + adapt[..., 0:1])
    offset = mixer.offset[..., None] + adapt[..., 1:2]
    spectrum = torch.fft.rfft(heads, dim=2, norm="ortho") * gain + offset
    global_ = torch.fft.irfft(spectrum, dim=2, n=n, norm="ortho")
    even, odd = heads[:, :, 0::2], heads[:, :, 1::2]
    detail = (even - odd) / 2 * mixer.detail.view(n // 2, h, d // h).permute(1, 0, 2)
    local = torch.zeros_like(heads)
    local[:, :, 0::2], local[:, :, 1::2] = (even + odd) / 2 + detail, (even + odd) / 2 - detail
    mixed = mixer.fft_mix * global_ + (1 - mixer.fft_mix) * local
    return mixed.permute(0, 2, 1, 3).reshape(b, n, d)


def test_wearec_mixer_is_the_published_layer_and_its_last_columns():
    encoder = make_encoder("wearec", max_len=11, fft_mix=0.3)  # a window of 12: even, as theirs
    mixer = encoder.blocks[0].mixer
    with torch.no_grad():  # move the parameters off their initial values
        for parameter in mixer.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    x = torch.randn(3, 12, 16, generator=torch.Generator().manual_seed(0))
    keep = torch.ones(3, 12, 1)
    with torch.no_grad():
        expected = published_wearec_layer(mixer, x)
        torch.testing.assert_close(mixer(x, keep, 12), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(mixer(x, keep, 3), expected[:, -3:], atol=1e-5, rtol=1e-4)


def test_haar_pairs_count_from_the_right_whatever_the_width():
    detail = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))  # a window of 13
    x = torch.randn(2, 13, 4, generator=torch.Generator().manual_seed(1))
    x[:, :6] = 0.0  # padding: the last 7 columns are real
    wide, narrow = haar_filter(x, detail), haar_filter(x[:, -7:], detail)
    torch.testing.assert_close(narrow, wide[:, -7:])
    torch.testing.assert_close(haar_filter(x, torch.ones(7, 4)), x)  # weight 1 keeps the pair
    means = haar_filter(x, torch.zeros(7, 4))
    torch.testing.assert_close(means[:, -1], (x[:, -1] + x[:, -2]) / 2)


def published_tvrec_filter(taps_filter, x: torch.Tensor) -> torch.Tensor:
    """The authors' NVRecLayer filter (graph Fourier transform of the ring, K = n - 1 taps), in
    complex128, with this module's coefficients and bases."""
    n = x.shape[1]
    k = n - 1
    nodes = n + k - 1
    ring = torch.zeros(nodes, nodes, dtype=torch.float64)
    ring[0, -1] = 1
    ring[1:, :-1].fill_diagonal_(1)
    eigenvalues, gft_inverse = torch.linalg.eig(ring)
    powers = torch.stack([eigenvalues**i for i in range(k + 1)], dim=1)  # (nodes, K + 1)
    coefficients = torch.zeros(nodes, taps_filter.coefficients.shape[1], dtype=torch.float64)
    coefficients[:n] = taps_filter.coefficients.double()  # rows past the window are unused
    bases = torch.view_as_complex(taps_filter.bases.double().contiguous())
    response = coefficients.to(torch.complex128) @ (bases / bases.norm(dim=1, keepdim=True))
    graph_filter = (gft_inverse * (response @ powers.T)) @ torch.linalg.inv(gft_inverse)
    padded = F.pad(x.double(), (0, 0, 0, k - 1))
    return (graph_filter.real @ padded)[:, :n]


def test_tvrec_filter_is_the_published_graph_filter_without_its_wrap():
    encoder = make_encoder("tvrec", tv_bases=4)
    mixer = encoder.blocks[0].mixer
    with torch.no_grad():
        mixer.coefficients.normal_(generator=torch.Generator().manual_seed(0))
        mixer.bases.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(2, 13, 16, generator=torch.Generator().manual_seed(2))
    keep = torch.ones(2, 13, 1)
    with torch.no_grad():
        ours, theirs = mixer(x, keep, 13).double(), published_tvrec_filter(mixer, x)
        torch.testing.assert_close(ours[:, 1:], theirs[:, 1:], atol=1e-4, rtol=1e-4)
        # the one dropped term: the ring carries the last column onto the first through A^K
        wrap = mixer.taps()[0, -1].double() * x[:, -1].double()
        torch.testing.assert_close(ours[:, 0] + wrap, theirs[:, 0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(mixer(x, keep, 2), ours[:, -2:].float(), atol=1e-5, rtol=1e-4)


def test_wearec_sees_later_items_and_tvrec_does_not():
    first = batch([[4, 5, 6, 7, 8]], width=13)
    second = first.clone()
    second[0, -2] = 20  # the last item changes
    for kind, sees_future in (("wearec", True), ("tvrec", False)):
        encoder = make_encoder(kind)
        assert encoder.config.sees_future is sees_future
        with torch.no_grad():
            a, b = encoder(first).states, encoder(second).states
        assert not torch.allclose(a[:, -2:], b[:, -2:])  # the item and [UR] see it
        assert torch.allclose(a[:, :-2], b[:, :-2], atol=1e-6) is not sees_future


def test_next_item_pretraining_refuses_wearec_and_takes_tvrec():
    NextItemPretrainer(make_encoder("tvrec"))
    with pytest.raises(ValueError, match="'wearec'.*sees the whole row"):
        NextItemPretrainer(make_encoder("wearec"))


def test_s3rec_pretraining_keeps_the_tvrec_filter_causal():
    import numpy as np

    from clue_pipeline.tasks.pretraining import PretrainJob, build_pretraining
    from clue_pipeline.training.loop import TrainConfig

    config = EncoderConfig(num_items=10, kind="tvrec", max_len=5, hidden=8, heads=2, blocks=1)
    tokens = np.array([[0, 1, 2, 3, 4, 12], [0, 0, 5, 6, 7, 12]], dtype=np.int64)
    job = PretrainJob("s3rec", tokens, config, TrainConfig(epochs=1, batch_size=2))
    assert build_pretraining(job).model.encoder.config == config  # no bidirectional form


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_learns_a_fixed_batch_of_next_items(kind, device):
    """Next-item scoring with the tied item embedding, as the next-item head does."""
    encoder = make_encoder(kind, linear_init_std=0.02).train().to(device)
    sequences = [[3, 7, 1, 9], [5, 2], [11, 12, 13, 14, 15, 16], [9, 9, 2]]
    tokens = batch(sequences, width=13).to(device)
    targets = torch.tensor([4, 6, 17, 21], device=device)  # the next items
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        scores = encoder(tokens, last=1).user @ encoder.item_embedding.weight.T
        loss = F.cross_entropy(scores, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    encoder.eval()
    with torch.no_grad():
        scores = encoder(tokens).user @ encoder.item_embedding.weight.T
    assert torch.equal(scores.argmax(dim=1), targets)


@pytest.mark.parametrize("kind", KINDS)
def test_cpu_training_is_deterministic(kind):
    def train() -> tuple[list[float], torch.Tensor]:
        encoder = make_encoder(kind).train()  # seeds the init; dropout draws come next
        optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
        tokens = batch([[3, 7, 1, 9], [5, 2], [11, 12, 13]], width=13)
        losses = []
        for _ in range(3):
            loss = encoder(tokens).states.square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses, encoder.item_embedding.weight.detach().clone()

    (losses_a, weights_a), (losses_b, weights_b) = train(), train()
    assert losses_a == losses_b
    assert torch.equal(weights_a, weights_b)


def test_linear_init_reaches_every_block_linear_layer():
    encoder = make_encoder("wearec", linear_init_std=0.02)
    linears = [m for m in encoder.blocks.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 2 * 4  # the adaptive MLP's two and the FFN's two, per block
    assert all(torch.all(m.bias == 0) and m.weight.std() < 0.03 for m in linears)
    assert make_encoder("tvrec").position_embedding is None  # the filter carries the position


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "wearec", "fft_mix": 1.5}, "'fft_mix'"),
        ({"kind": "wearec", "hidden": 16, "heads": 3}, "'heads'"),
        ({"kind": "tvrec", "tv_bases": 0}, "'tv_bases'"),
        ({"kind": "tvrec", "causal": False}, "'causal'"),
    ],
)
def test_bad_knob_names_the_parameter(overrides, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig(num_items=NUM_ITEMS, **overrides)


def test_ladder_rungs_build_their_encoders():
    from clue_pipeline.config import encoder_config
    from clue_pipeline.experiments.recipes import load_ladder

    ladder = load_ladder()
    for rung, kind in (("wearec", "wearec"), ("tvrec", "tvrec")):
        settings = ladder.recipe(rung)
        config = encoder_config(settings["encoder"], NUM_ITEMS, where=f"rung {rung} encoder")
        assert config.kind == kind and type(build_encoder(config)).__name__.lower().startswith(kind)
        assert settings["rows"] == "prefix" and ladder.rungs[rung].parent
