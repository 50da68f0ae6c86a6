"""Encoders: shapes, padding never leaks, causality, checkpoint round trip."""

import io

import pytest
import torch

from clue_pipeline.models.encoders import (
    ENCODERS,
    EncoderConfig,
    attention_mask,
    build_encoder,
    encoder_from_checkpoint,
    encoder_to_checkpoint,
    user_vectors_by_length,
)

NUM_ITEMS = 30
MAX_LEN = 12
UR = NUM_ITEMS + 2
KINDS = sorted(ENCODERS)


def make_encoder(kind: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    config = EncoderConfig(
        num_items=NUM_ITEMS,
        kind=kind,
        max_len=MAX_LEN,
        hidden=16,
        heads=2,
        dropout=0.3,
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return build_encoder(config).eval()


def batch(sequences: list[list[int]], width: int = MAX_LEN + 1) -> torch.Tensor:
    """Left-padded tokens with [UR] in the last column."""
    rows = [[0] * (width - 1 - len(s)) + s + [UR] for s in sequences]
    return torch.tensor(rows, dtype=torch.long)


SEQUENCES = [[3, 7, 1, 30, 31], [5], list(range(1, MAX_LEN + 1)), [9, 9, 2]]


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_padding_zeroed(kind):
    encoder = make_encoder(kind)
    tokens = batch(SEQUENCES)
    out = encoder(tokens)
    assert out.states.shape == (4, MAX_LEN + 1, 16)
    assert out.user.shape == (4, 16)
    assert torch.equal(out.user, out.states[:, -1])
    assert torch.all(out.states[tokens == 0] == 0)
    assert torch.isfinite(out.states).all()
    assert out.states[tokens != 0].abs().sum(-1).min() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_amount_of_left_padding_changes_nothing(kind):
    encoder = make_encoder(kind)
    narrow = batch(SEQUENCES[:2], width=6)  # one item of padding in front of the first row
    wide = batch(SEQUENCES[:2], width=MAX_LEN + 1)
    with torch.no_grad():
        a, b = encoder(narrow), encoder(wide)
    torch.testing.assert_close(a.user, b.user, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.states, b.states[:, -6:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_pass_in_length_groups_gives_the_padded_pass_user_vectors(kind):
    encoder = make_encoder(kind)
    tokens = batch([list(range(1, n + 1)) for n in (1, 12, 2, 3, 5, 8, 4, 7, 11)])
    with torch.no_grad():
        grouped = user_vectors_by_length(encoder, tokens, min_width=2)
        torch.testing.assert_close(grouped, encoder(tokens).user, rtol=1e-5, atol=1e-6)
    encoder.train()
    direction = torch.randn(16, generator=torch.Generator().manual_seed(0))
    (user_vectors_by_length(encoder, tokens, min_width=2) @ direction).sum().backward()
    reached = encoder.item_embedding.weight.grad.abs().sum(dim=1)
    assert (reached[1:13] > 0).all()  # items of every length group get gradients


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [(kind, {}) for kind in KINDS]
    + [("transformer", v) for v in ({"causal": False}, {"norm": "post", "ffn_hidden": 32})],
)
def test_last_columns_alone_equal_the_full_pass(kind, overrides):
    encoder = make_encoder(kind, **overrides)
    tokens = batch(SEQUENCES)
    with torch.no_grad():
        full = encoder(tokens)
        for last in (1, 2, 5):
            part = encoder(tokens, last=last)
            assert part.states.shape == (4, last, 16)
            torch.testing.assert_close(part.states, full.states[:, -last:], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(part.user, full.user, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_rows_do_not_influence_other_rows(kind):
    encoder = make_encoder(kind)
    with torch.no_grad():
        alone = encoder(batch([SEQUENCES[0]])).user
        together = encoder(batch(SEQUENCES)).user[:1]
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kind", "causal"), [("transformer", True), ("gru", True), ("cnn", True), ("caser", True)]
)
def test_later_item_does_not_change_earlier_states(kind, causal):
    encoder = make_encoder(kind, causal=causal)
    first = batch([[4, 5, 6, 7, 8]])
    second = first.clone()
    second[0, -2] = 20  # last real item
    with torch.no_grad():
        a, b = encoder(first).states, encoder(second).states
    torch.testing.assert_close(a[:, :-2], b[:, :-2], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(a[:, -2:], b[:, -2:])  # the changed position and [UR] see it


@pytest.mark.parametrize("kind", ["transformer", "filter"])
def test_bidirectional_encoders_see_later_items(kind):
    encoder = make_encoder(kind, causal=False)
    assert encoder.config.sees_future
    first = batch([[4, 5, 6, 7, 8]])
    second = first.clone()
    second[0, -2] = 20
    with torch.no_grad():
        a, b = encoder(first).states, encoder(second).states
    assert not torch.allclose(a[0, -6], b[0, -6])


def test_filter_block_in_the_time_domain_is_the_frequency_domain_filter():
    block = make_encoder("filter").blocks[0]
    x = torch.randn(3, MAX_LEN + 1, 16, generator=torch.Generator().manual_seed(0))
    x[:, :4] = 0.0  # zeroed padding on the left, as the encoder hands it in
    weight = torch.view_as_complex(block.filter)
    spectrum = torch.fft.rfft(x, dim=1, norm="ortho") * weight
    reference = torch.fft.irfft(spectrum, n=MAX_LEN + 1, dim=1, norm="ortho")
    filtered = torch.einsum("abd,nbd->nad", block.kernel_matrix(MAX_LEN + 1), x)
    torch.testing.assert_close(filtered, reference, atol=1e-5, rtol=1e-4)
    x[:, :-5] = 0.0  # a batch whose rows hold at most 5 columns: its narrow cut is exact
    spectrum = torch.fft.rfft(x, dim=1, norm="ortho") * weight
    reference = torch.fft.irfft(spectrum, n=MAX_LEN + 1, dim=1, norm="ortho")
    narrow = torch.einsum("abd,nbd->nad", block.kernel_matrix(5), x[:, -5:])
    torch.testing.assert_close(narrow, reference[:, -5:], atol=1e-5, rtol=1e-4)


def test_bsarec_frequency_mix_is_its_fft_filter_exact_at_any_width():
    encoder = make_encoder("transformer", norm="post", frequency_mix=0.7, frequency_cutoff=3)
    encoder = build_encoder(encoder.config).eval()  # rebuilt: the options shape the modules
    assert encoder.config.sees_future
    sublayer = encoder.blocks[0].frequency
    x = torch.randn(2, MAX_LEN + 1, 16, generator=torch.Generator().manual_seed(0))
    x[:, :5] = 0.0  # zeroed padding on the left
    spectrum = torch.fft.rfft(x, dim=1, norm="ortho")
    spectrum[:, 3:] = 0.0
    low = torch.fft.irfft(spectrum, n=MAX_LEN + 1, dim=1, norm="ortho")
    beta = sublayer.sqrt_beta.square()
    expected = sublayer.norm(x + low + beta * (x - low))  # BSARec's sub-layer, eval mode
    with torch.no_grad():
        torch.testing.assert_close(sublayer(x, MAX_LEN + 1), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(sublayer(x[:, 5:], 2), expected[:, -2:], atol=1e-5, rtol=1e-4)
        narrow, wide = batch(SEQUENCES[:2], width=6), batch(SEQUENCES[:2])
        torch.testing.assert_close(encoder(narrow).user, encoder(wide).user)
        torch.testing.assert_close(encoder(wide, last=1).user, encoder(wide).user)
    plain = make_encoder("transformer", norm="post")
    assert not hasattr(plain.blocks[0], "frequency")  # checkpoints of plain blocks unchanged
    with pytest.raises(ValueError, match="'norm'.*post with frequency_mix"):
        EncoderConfig(num_items=NUM_ITEMS, frequency_mix=0.5)
    with pytest.raises(ValueError, match="'frequency_cutoff'"):
        EncoderConfig(num_items=NUM_ITEMS, norm="post", frequency_mix=0.5, frequency_cutoff=0)
    with pytest.raises(ValueError, match="'frequency_mix'"):
        EncoderConfig(num_items=NUM_ITEMS, norm="post", frequency_mix=1.5)


def test_causal_frequency_mix_sees_no_later_column_and_keeps_the_last_one():
    options = {"norm": "post", "frequency_mix": 0.7, "frequency_cutoff": 3}
    causal = make_encoder("transformer", frequency_causal=True, **options)
    causal = build_encoder(causal.config).eval()  # rebuilt: the options shape the modules
    whole_row = build_encoder(make_encoder("transformer", **options).config).eval()
    assert not causal.config.sees_future and whole_row.config.sees_future
    causal_sublayer, sublayer = causal.blocks[0].frequency, whole_row.blocks[0].frequency
    sublayer.load_state_dict(causal_sublayer.state_dict())
    x = torch.randn(2, MAX_LEN + 1, 16, generator=torch.Generator().manual_seed(1))
    changed = x.clone()
    changed[:, -3:] += 1.0  # later columns change
    with torch.no_grad():
        before, after = causal_sublayer(x, MAX_LEN + 1), causal_sublayer(changed, MAX_LEN + 1)
        torch.testing.assert_close(before[:, :-3], after[:, :-3])
        torch.testing.assert_close(before[:, -1], sublayer(x, MAX_LEN + 1)[:, -1])
    with pytest.raises(ValueError, match="'frequency_causal'"):
        EncoderConfig(num_items=NUM_ITEMS, frequency_causal=True)


def test_the_bsarec_recipe_file_builds_bsarec_blocks():
    import yaml

    from clue_pipeline.config import encoder_config
    from tests.conftest import REPO_ROOT

    recipe = yaml.safe_load((REPO_ROOT / "conf/recipes/bsarec.yml").read_text())
    base = yaml.safe_load((REPO_ROOT / "conf/base/parameters.yml").read_text())["encoder"]
    config = encoder_config({**base, **recipe["run"]["params"]["encoder"]}, NUM_ITEMS)
    encoder = build_encoder(config)
    assert all(hasattr(block, "frequency") for block in encoder.blocks)
    # the causal filter: the default objective's next-item term can pre-train it
    assert config.frequency_causal and not config.sees_future
    assert recipe["run"]["params"]["finetune"]["next_item"]["rows"] == "prefix"


def test_attention_mask_never_leaves_a_row_empty():
    real = torch.tensor([[False, False, True, True], [True, True, True, True]])
    mask = attention_mask(real, causal=True)
    assert mask.shape == (2, 1, 4, 4)
    assert mask.any(-1).all()
    assert not mask[0, 0, 3, 0] and not mask[0, 0, 3, 1]  # real query never sees padding keys
    assert mask[0, 0, 3, 2] and not mask[1, 0, 1, 2]  # causal


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_round_trip_weights_only(kind):
    encoder = make_encoder(kind)
    buffer = io.BytesIO()
    torch.save(encoder_to_checkpoint(encoder), buffer)
    buffer.seek(0)
    restored = encoder_from_checkpoint(torch.load(buffer, weights_only=True)).eval()
    assert restored.config == encoder.config
    tokens = batch(SEQUENCES)
    with torch.no_grad():
        assert torch.equal(encoder(tokens).states, restored(tokens).states)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_makes_training_passes_differ_and_gradients_flow(kind):
    encoder = make_encoder(kind).train()
    tokens = batch(SEQUENCES)
    a, b = encoder(tokens).user, encoder(tokens).user
    assert not torch.allclose(a, b)
    (a - b).pow(2).sum().backward()
    assert encoder.item_embedding.weight.grad[3].abs().sum() > 0
    assert encoder.item_embedding.weight.grad[0].abs().sum() == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "lstm"}, "'kind'"),
        ({"hidden": 10, "heads": 4}, "'heads'"),
        ({"dropout": 1.0}, "'dropout'"),
        ({"kind": "gru", "causal": False}, "'causal'"),
        ({"max_len": 0}, "'max_len'"),
    ],
)
def test_bad_config_names_the_parameter(overrides, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig(num_items=NUM_ITEMS, **overrides)


def test_too_wide_input_is_rejected():
    encoder = make_encoder("transformer")
    with pytest.raises(ValueError, match="max_len"):
        encoder(torch.ones(1, MAX_LEN + 2, dtype=torch.long))


def test_fast_dropout_drops_the_right_share_and_keeps_the_mean():
    from clue_pipeline.models.encoders import fast_dropout

    x = torch.ones(200_000)
    torch.manual_seed(0)
    out = fast_dropout(x, 0.5, training=True)
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - 0.5) < 0.01
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert abs(fast_dropout(x, 0.1, training=True).mean().item() - 1.0) < 0.01
    assert fast_dropout(x, 0.5, training=False) is x
    torch.manual_seed(1)
    a = fast_dropout(x, 0.3, training=True)
    torch.manual_seed(1)
    assert torch.equal(a, fast_dropout(x, 0.3, training=True))


def test_spelled_out_attention_matches_scaled_dot_product_attention():
    from clue_pipeline.models.encoders import attend

    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 6, 4) for _ in range(3))
    real = torch.tensor([[False, False, True, True, True, True]] * 3)
    mask = attention_mask(real, causal=True)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    # a drop probability that rounds to 0/256 takes the CPU training path but drops nothing
    torch.testing.assert_close(attend(q, k, v, mask, 1e-6), expected, rtol=1e-5, atol=1e-6)


BLOCK_VARIANTS = {
    "pre_ln_relu": {},
    "recbole": {
        "norm": "post",
        "embedding_norm": True,
        "attn_output_dropout": True,
        "ffn_hidden": 32,
        "activation": "gelu",
        "linear_init_std": 0.02,
    },
    "post_ln_only": {"norm": "post"},
}
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason="no CUDA device on this machine"
        ),
    ),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", sorted(BLOCK_VARIANTS))
def test_block_variants_keep_the_input_contract(variant, device):
    encoder = make_encoder("transformer", **BLOCK_VARIANTS[variant]).to(device)
    tokens = batch(SEQUENCES).to(device)
    out = encoder(tokens)
    assert torch.all(out.states[tokens == 0] == 0)
    assert torch.isfinite(out.states).all()
    narrow = batch(SEQUENCES[:2], width=6).to(device)
    with torch.no_grad():
        torch.testing.assert_close(encoder(narrow).user, encoder(tokens[:2]).user)
    # Training mode runs every dropout site and still learns.
    encoder.train()
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    target = torch.randn(4, 16, device=device)
    losses = []
    for _ in range(5):
        loss = (encoder(tokens).user - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_block_variants_build_what_they_name():
    post = make_encoder("transformer", **BLOCK_VARIANTS["recbole"])
    assert post.final_norm is None and post.embedding_norm is not None
    linears = [m for m in post.blocks.modules() if isinstance(m, torch.nn.Linear)]
    assert all(torch.all(m.bias == 0) for m in linears)
    assert all(0.01 < m.weight.std().item() < 0.03 for m in linears)
    assert post.blocks[0].ffn_in.out_features == 32
    pre = make_encoder("transformer")
    assert pre.final_norm is not None and pre.embedding_norm is None
    assert pre.blocks[0].ffn_in.out_features == 16


@pytest.mark.parametrize(
    ("key", "value"),
    [("norm", "middle"), ("activation", "tanh"), ("linear_init_std", 0.0)],
)
def test_block_options_reject_unknown_values(key, value):
    with pytest.raises(ValueError, match=key):
        EncoderConfig(num_items=NUM_ITEMS, **{key: value})


def test_old_checkpoints_without_block_options_load_as_pre_ln():
    encoder = make_encoder("transformer")
    checkpoint = encoder_to_checkpoint(encoder)
    for key in ("norm", "activation", "attn_output_dropout", "embedding_norm", "linear_init_std"):
        checkpoint["config"].pop(key)
    restored = encoder_from_checkpoint(checkpoint).eval()
    tokens = batch(SEQUENCES)
    with torch.no_grad():
        torch.testing.assert_close(restored(tokens).states, encoder(tokens).states)
