"""Sequence encoders f_theta: a padded token batch -> per-position states and a user vector.

Every backbone honours the same input contract: a ``LongTensor (B, W)`` with ``W <= max_len + 1``,
left-padded with ``0``, real items (and ``[MASK]``) next, ``[UR]`` in the last column. Padding
never influences a real position: the tests compare the same sequences under different amounts
of left padding. Positions are counted from the right end (the ``[UR]`` column is always
position ``max_len``), so a narrower batch gives the same states as a wider one.

One registry, ``ENCODERS``, maps ``EncoderConfig.kind`` to a class; ``build_encoder`` is the
only constructor the rest of the code uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from clue_pipeline.data.tokens import PAD, SpecialTokens, special_tokens
from clue_pipeline.training.length_batching import length_groups


@dataclass
class EncoderConfig:
    """Shape of an encoder; stored beside its weights so a checkpoint rebuilds itself."""

    num_items: int  # N; vocabulary N + 3 (pad, items 1..N, [MASK], [UR])
    kind: str = "transformer"  # registry key: transformer | gru | cnn | caser | filter
    max_len: int = 50  # items per sequence; the input has max_len + 1 columns with [UR]
    hidden: int = 64  # d
    blocks: int = 2  # transformer blocks / GRU layers / repeats of the CNN dilation stack
    heads: int = 4  # attention heads (transformer only)
    dropout: float = 0.5
    # transformer only; GRU, CNN and Caser are causal by construction, the filter never is
    causal: bool = True
    init_std: float = 0.02  # std of the normal init of embeddings (small logits at start)
    ffn_hidden: int | None = None  # transformer FFN width; None = hidden (SASRec)
    # Transformer block variants (see TransformerEncoder): where LayerNorm sits, the FFN's
    # non-linearity, dropout on the attention output, LayerNorm on item + position embeddings,
    # and the init of Linear layers (None = PyTorch's default; a float = normal(0, std), zero bias).
    norm: str = "pre"  # pre | post
    activation: str = "relu"  # relu | gelu
    attn_output_dropout: bool = False
    embedding_norm: bool = False
    linear_init_std: float | None = None
    # BSARec (Shin et al., AAAI 2024), transformer with norm post only: each block mixes
    # frequency_mix x a frequency sub-layer (the lowest `frequency_cutoff` frequencies of the
    # window kept, the rest scaled by a learned beta^2 per channel) with (1 - frequency_mix) x
    # self-attention. 0 = plain self-attention. The filter sees the whole row (prefix rows only)
    # unless frequency_causal: each column then filters only itself and earlier columns (the
    # last column's output is unchanged), so the block is causal like its attention.
    frequency_mix: float = 0.0
    frequency_cutoff: int = 3
    frequency_causal: bool = False
    kernel_size: int = 3  # CNN only
    dilations: tuple[int, ...] = (1, 2, 4, 8)  # CNN only; one residual unit per dilation
    window: int = 5  # Caser only (models/caser.py): L, the most recent items a state sees
    horizontal_filters: int = 16  # Caser only: filters of each height 1..window
    vertical_filters: int = 4  # Caser only

    def __post_init__(self) -> None:
        self.dilations = tuple(int(d) for d in self.dilations)
        _validate_config(self)

    @property
    def sees_future(self) -> bool:
        """Whether a state may depend on later positions (then next-item training needs rows
        whose input holds no future item: prefix rows)."""
        frequency_sees_future = self.frequency_mix > 0 and not self.frequency_causal
        return self.kind == "filter" or (
            self.kind == "transformer" and (not self.causal or frequency_sees_future)
        )

    @property
    def tokens(self) -> SpecialTokens:
        """Padding, ``[MASK]``, ``[UR]`` and the vocabulary size (``data/tokens.py``)."""
        return special_tokens(self.num_items)


@dataclass
class EncoderOutput:
    """Per-position states (B, W, d), zero at padding, and the user vector (B, d) at [UR].

    Asked for its ``last`` columns only, an encoder returns states (B, last, d): those of the
    last ``last`` columns, the same as the full pass's.
    """

    states: torch.Tensor
    user: torch.Tensor


class SequenceEncoder(nn.Module):
    """Common part of every backbone: config, the tied item embedding, the input checks."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.tokens.vocab_size, config.hidden, padding_idx=PAD)
        nn.init.normal_(self.item_embedding.weight, std=config.init_std)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()

    def forward(self, tokens: torch.Tensor, last: int | None = None) -> EncoderOutput:
        """``last``: only the states of the last ``last`` columns are wanted (the user vector
        needs 1, a next-item read-out 1 or 2); backbones that can skip the work of the others
        do (the transformer's last block)."""
        _check_tokens(tokens, self.config)
        real = tokens != PAD  # (B, W)
        last = tokens.shape[1] if last is None else max(1, min(last, tokens.shape[1]))
        keep = real[:, -last:].unsqueeze(-1).to(self.item_embedding.weight.dtype)
        states = self.encode_last(tokens, real, last) * keep
        return EncoderOutput(states=states, user=states[:, -1])

    def encode(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Backbone-specific states (B, W, d); padded rows may hold anything finite."""
        raise NotImplementedError

    def encode_last(self, tokens: torch.Tensor, real: torch.Tensor, last: int) -> torch.Tensor:
        """States of the last ``last`` columns, (B, last, d)."""
        return self.encode(tokens, real)[:, -last:]


class TransformerEncoder(SequenceEncoder):
    """SASRec-style self-attention encoder with the block variants of ``EncoderConfig``.

    ``norm: pre`` puts LayerNorm before each sub-layer and once at the end (trains stably without
    warm-up); ``norm: post`` is SASRec / RecBole's block (LayerNorm after each residual sum, with
    ``embedding_norm`` normalising the input). Dropout runs in as few places as possible because
    its random numbers are a large share of a CPU step: on the input embeddings, on the attention
    probabilities, on each FFN output and, with ``attn_output_dropout``, on each attention output.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        d = config.hidden
        self.position_embedding = nn.Embedding(config.max_len + 1, d)
        nn.init.normal_(self.position_embedding.weight, std=config.init_std)
        self.embedding_norm = nn.LayerNorm(d) if config.embedding_norm else None
        self.blocks = nn.ModuleList(_TransformerBlock(config) for _ in range(config.blocks))
        self.final_norm = nn.LayerNorm(d) if config.norm == "pre" else None
        if config.linear_init_std is not None:
            for module in self.blocks.modules():
                if isinstance(module, nn.Linear):
                    nn.init.normal_(module.weight, std=config.linear_init_std)
                    nn.init.zeros_(module.bias)

    def encode(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.encode_last(tokens, real, tokens.shape[1])

    def encode_last(self, tokens: torch.Tensor, real: torch.Tensor, last: int) -> torch.Tensor:
        """Every block but the last runs on all columns; the last one computes its queries,
        attention output and feed-forward for the ``last`` wanted columns only."""
        width = tokens.shape[1]
        positions = torch.arange(
            self.config.max_len + 1 - width, self.config.max_len + 1, device=tokens.device
        )
        x = self.item_embedding(tokens) + self.position_embedding(positions)  # (B, W, d)
        if self.embedding_norm is not None:
            x = self.embedding_norm(x)
        x = fast_dropout(x, self.config.dropout, self.training)
        mask = attention_mask(real, self.config.causal)  # (B, 1, W, W)
        attn_dropout = self.config.dropout if self.training else 0.0
        # (B, W, 1): zeroes padding before a frequency sub-layer; attention masks it instead
        keep = real.unsqueeze(-1).to(x.dtype) if self.config.frequency_mix > 0 else None
        for index, block in enumerate(self.blocks):
            queries = last if index == len(self.blocks) - 1 else width
            x = block(x, mask, attn_dropout, queries, keep)
        return x if self.final_norm is None else self.final_norm(x)


def attention_mask(real: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean (B, 1, W, W) mask, True = may attend: real keys (and, if causal, earlier ones).

    Each position may always attend to itself, so padded query rows keep one finite entry
    instead of a row of -inf (which would turn softmax into NaN); their outputs are zeroed later.
    """
    width = real.shape[1]
    allowed = real[:, None, None, :]  # (B, 1, 1, W) keys
    eye = torch.eye(width, dtype=torch.bool, device=real.device)
    if causal:
        allowed = allowed & torch.ones_like(eye).tril()
    return allowed | eye


class _TransformerBlock(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        d, ffn_hidden = config.hidden, config.ffn_hidden or config.hidden
        self.heads, self.dropout, self.pre_norm = config.heads, config.dropout, config.norm == "pre"
        self.attn_output_dropout = config.attn_output_dropout
        self.activation = ACTIVATIONS[config.activation]
        self.attn_norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn_in = nn.Linear(d, ffn_hidden)
        self.ffn_out = nn.Linear(ffn_hidden, d)
        self.frequency_mix = config.frequency_mix
        if self.frequency_mix > 0:
            self.frequency = FrequencySublayer(config)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        attn_dropout: float,
        queries: int,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Outputs (B, queries, d) of the last ``queries`` columns, which attend to all W;
        ``keep`` (B, W, 1) is 1 at real columns, for the frequency sub-layer."""
        b, w, d = x.shape
        h = self.attn_norm(x) if self.pre_norm else x
        frequency = None
        if self.frequency_mix > 0:
            frequency = self.frequency(x if keep is None else x * keep, queries)
        if queries == w:
            qkv = self.qkv(h).view(b, w, 3, self.heads, d // self.heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, W, d/h)
        else:
            q = F.linear(h[:, -queries:], self.qkv.weight[:d], self.qkv.bias[:d])
            q = q.view(b, queries, self.heads, d // self.heads).transpose(1, 2)
            kv = F.linear(h, self.qkv.weight[d:], self.qkv.bias[d:])
            k, v = kv.view(b, w, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
            mask, x = mask[:, :, -queries:], x[:, -queries:]
        attended = attend(q, k, v, mask, attn_dropout).transpose(1, 2).reshape(b, queries, d)
        attended = self.out(attended)
        if self.attn_output_dropout:
            attended = fast_dropout(attended, self.dropout, self.training)
        x = x + attended
        if not self.pre_norm:
            x = self.attn_norm(x)
        if frequency is not None:
            x = self.frequency_mix * frequency + (1.0 - self.frequency_mix) * x
        h = self.ffn_norm(x) if self.pre_norm else x
        x = x + fast_dropout(
            self.ffn_out(self.activation(self.ffn_in(h))), self.dropout, self.training
        )
        return x if self.pre_norm else self.ffn_norm(x)


class FrequencySublayer(nn.Module):
    """BSARec's inductive-bias sub-layer: ``LN(x + dropout(low(x) + beta^2 (x - low(x))))``.

    ``low`` keeps the lowest ``frequency_cutoff`` frequencies of the window ``n = max_len + 1``
    (BSARec filters with an FFT over its fixed window). Here it is applied as the equivalent
    circular convolution in the time domain, one (n, n) matrix shared by all channels cut to
    the batch's last W columns: padding is zero, so a narrow batch gives the wide batch's
    states and length buckets stay exact. ``frequency_causal`` keeps the matrix's lower
    triangle: column a filters columns <= a with the same weights, so the last column's output
    is BSARec's and no column sees a later one.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        n = config.max_len + 1
        self.dropout = config.dropout
        self.sqrt_beta = nn.Parameter(torch.randn(config.hidden))
        self.norm = nn.LayerNorm(config.hidden)
        kept = torch.zeros(n // 2 + 1)
        kept[: config.frequency_cutoff] = 1.0
        low_pass = circulant(torch.fft.irfft(kept, n=n), n)  # (n, n): out x in
        if config.frequency_causal:
            low_pass = low_pass.tril()
        self.register_buffer("low_pass", low_pass, persistent=False)

    def forward(self, x: torch.Tensor, queries: int) -> torch.Tensor:
        """(B, queries, d): the last ``queries`` columns of the sub-layer over all W columns."""
        width = x.shape[1]
        low = self.low_pass[-queries:, -width:].to(x.dtype) @ x  # (B, queries, d)
        last = x[:, -queries:]
        filtered = low + self.sqrt_beta.square() * (last - low)
        return self.norm(last + fast_dropout(filtered, self.dropout, self.training))


def circulant(kernel: torch.Tensor, width: int) -> torch.Tensor:
    """(W, W, ...) matrix of the circular convolution with ``kernel`` (n, ...) over a window of
    n columns, restricted to its last W: entry (a, b), the weight of input column b in output
    column a, is ``kernel[(a - b) mod n]``. Exact when the columns left of them are zero."""
    columns = torch.arange(width, device=kernel.device)
    return kernel[(columns[:, None] - columns[None, :]) % kernel.shape[0]]


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}
NORMS = ("pre", "post")


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, dropout: float
) -> torch.Tensor:
    """Masked multi-head attention with dropout on the attention probabilities.

    scaled_dot_product_attention everywhere except CPU training, where it would materialise the
    probabilities anyway and draw its dropout with a slow Bernoulli sampler; there the same
    computation is spelled out so the probabilities get ``fast_dropout``.
    """
    if dropout == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, -torch.inf)
    scores = torch.baddbmm(
        bias.expand(-1, q.shape[1], -1, -1).reshape(-1, *mask.shape[-2:]),
        q.reshape(-1, *q.shape[-2:]),
        k.reshape(-1, *k.shape[-2:]).transpose(1, 2),
        alpha=q.shape[-1] ** -0.5,
    )  # (B * h, W, W)
    probs = fast_dropout(scores.softmax(-1), dropout, True)
    return (probs @ v.reshape(-1, *v.shape[-2:])).view(q.shape)


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout whose CPU mask costs a quarter of ``F.dropout``'s.

    On CPU, ``F.dropout`` draws one Bernoulli sample per element and is the largest single cost
    of a training step. Here one 64-bit random word gives eight independent random bytes, and an
    element is dropped when its byte is below ``round(256 p)``: the drop probability is ``p``
    rounded to a multiple of 1/256 (exact for 0.5, 0.25, ...), and kept values are scaled by the
    exact inverse keep rate, so the expectation is unchanged. Other devices use ``F.dropout``,
    whose fused kernels are already cheap.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    threshold = min(round(p * 256), 255)
    words = torch.empty((x.numel() + 7) // 8, dtype=torch.int64, device=x.device)
    random_bytes = words.random_(-(2**63), None).view(torch.uint8)[: x.numel()].view(x.shape)
    keep = (random_bytes >= threshold).to(x.dtype).mul_(256.0 / (256 - threshold))
    return x * keep


class GRUEncoder(SequenceEncoder):
    """GRU4Rec-style recurrent encoder: embedding -> dropout -> GRU (``blocks`` layers) -> LN.

    Left padding would feed the GRU a run of pad steps before the first item (its biases move
    the hidden state even on zero input), so each row is rotated to start at its first real
    token and packed: the recurrence begins at the first item whatever the padding.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        d = config.hidden
        inter_layer_dropout = config.dropout if config.blocks > 1 else 0.0
        self.gru = nn.GRU(
            d, d, num_layers=config.blocks, batch_first=True, dropout=inter_layer_dropout
        )
        self.final_norm = nn.LayerNorm(d)  # same output scale as the other backbones

    def encode(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        width = tokens.shape[1]
        lengths = real.sum(1).clamp(min=1)  # (B,)
        columns = torch.arange(width, device=tokens.device)
        to_left = (columns + (width - lengths)[:, None]) % width  # rotate pads to the end
        left_tokens = tokens.gather(1, to_left)
        x = fast_dropout(self.item_embedding(left_tokens), self.config.dropout, self.training)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=width)  # (B, W, d)
        to_right = ((columns - (width - lengths)[:, None]) % width).unsqueeze(-1)
        return self.final_norm(out.gather(1, to_right.expand(-1, -1, out.shape[-1])))


class CNNEncoder(SequenceEncoder):
    """NextItNet-style dilated causal convolutions in residual units.

    Each unit: zero the padding, left-pad by (kernel-1)*dilation, conv, LayerNorm, ReLU,
    dropout, residual. Zeroing before every convolution makes padding indistinguishable from
    the convolution's own causal zero padding, so the number of pads never matters.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        d = config.hidden
        self.dilations = [dil for _ in range(config.blocks) for dil in config.dilations]
        self.convs = nn.ModuleList(
            nn.Conv1d(d, d, config.kernel_size, dilation=dil) for dil in self.dilations
        )
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in self.dilations)
        self.final_norm = nn.LayerNorm(d)

    def encode(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        keep = real.unsqueeze(1).to(self.item_embedding.weight.dtype)  # (B, 1, W)
        x = fast_dropout(self.item_embedding(tokens), self.config.dropout, self.training)
        x = x.transpose(1, 2)  # (B, d, W): channels first for conv1d
        for conv, norm, dil in zip(self.convs, self.norms, self.dilations, strict=True):
            h = conv(F.pad(x * keep, ((self.config.kernel_size - 1) * dil, 0)))
            h = F.relu(norm(h.transpose(1, 2))).transpose(1, 2)
            x = x + fast_dropout(h, self.config.dropout, self.training)
        return self.final_norm(x.transpose(1, 2))


def item_positions(tokens: torch.Tensor, num_items: int) -> torch.Tensor:
    """True where a token is an item (1..N): not padding, ``[MASK]`` or ``[UR]``."""
    return (tokens != PAD) & (tokens <= num_items)


def user_vectors_by_length(
    encoder: SequenceEncoder, tokens: torch.Tensor, min_width: int = 4
) -> torch.Tensor:
    """The ``[UR]`` vectors (B, d) of a left-padded batch, encoded in :func:`length_groups`.

    The result is the one padded pass's (positions count from the right and padding never
    reaches a real position), while the batch stays mixed for whatever comes next: BatchNorm
    heads see every length.
    """
    groups = length_groups(tokens, min_width)
    parts = [encoder(tokens[rows, -width:], last=1).user for rows, width in groups]
    order = torch.cat([rows for rows, _ in groups])
    return torch.cat(parts)[torch.argsort(order)]


ENCODERS: dict[str, type[SequenceEncoder]] = {
    "transformer": TransformerEncoder,
    "gru": GRUEncoder,
    "cnn": CNNEncoder,
}


def build_encoder(config: EncoderConfig) -> SequenceEncoder:
    """The one constructor of encoders, by ``config.kind``."""
    return ENCODERS[config.kind](config)


def encoder_to_checkpoint(encoder: SequenceEncoder) -> dict[str, Any]:
    """Plain dict (config of ints/floats/strs, tensors) that ``torch.load(weights_only=True)`` reads."""
    state = {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()}
    return {"config": asdict(encoder.config), "state_dict": state}


def encoder_from_checkpoint(checkpoint: dict[str, Any]) -> SequenceEncoder:
    """Rebuild an encoder from ``encoder_to_checkpoint``'s dict, with a clear error if malformed."""
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= checkpoint.keys():
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(
            f"encoder checkpoint: expected a dict with keys 'config' and 'state_dict', got {found}"
        )
    known = {f.name for f in fields(EncoderConfig)}
    unknown = sorted(set(checkpoint["config"]) - known)
    if unknown:
        raise ValueError(
            f"encoder checkpoint config: unknown keys {unknown}; known: {sorted(known)}"
        )
    encoder = build_encoder(EncoderConfig(**checkpoint["config"]))
    encoder.load_state_dict(checkpoint["state_dict"])
    return encoder


def _validate_config(config: EncoderConfig) -> None:
    def fail(name: str, value: Any, expected: str) -> None:
        raise ValueError(f"encoder parameter '{name}' = {value!r}: expected {expected}")

    if config.kind not in ENCODERS:
        fail("kind", config.kind, f"one of {sorted(ENCODERS)}")
    for name in ("num_items", "max_len", "hidden", "blocks", "heads", "kernel_size"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            fail(name, value, "a positive integer")
    if config.hidden % config.heads:
        fail("heads", config.heads, f"a divisor of hidden = {config.hidden}")
    if not 0.0 <= config.dropout < 1.0:
        fail("dropout", config.dropout, "a float in [0, 1)")
    if config.init_std <= 0:
        fail("init_std", config.init_std, "a positive float")
    if config.norm not in NORMS:
        fail("norm", config.norm, f"one of {list(NORMS)}")
    if config.activation not in ACTIVATIONS:
        fail("activation", config.activation, f"one of {sorted(ACTIVATIONS)}")
    if config.linear_init_std is not None and not config.linear_init_std > 0:
        fail("linear_init_std", config.linear_init_std, "null (PyTorch's default) or a float > 0")
    if config.ffn_hidden is not None and config.ffn_hidden < 1:
        fail("ffn_hidden", config.ffn_hidden, "a positive integer or null (= hidden)")
    if not 0.0 <= config.frequency_mix <= 1.0:
        fail("frequency_mix", config.frequency_mix, "a float in [0, 1] (0 = attention alone)")
    if config.frequency_mix > 0 and config.norm != "post":
        fail("norm", config.norm, "post with frequency_mix > 0 (BSARec's block is post-LN)")
    frequencies = (config.max_len + 1) // 2 + 1
    if not isinstance(config.frequency_cutoff, int) or not (
        1 <= config.frequency_cutoff <= frequencies
    ):
        fail("frequency_cutoff", config.frequency_cutoff, f"an integer in [1, {frequencies}]")
    if config.frequency_causal and config.frequency_mix == 0:
        fail("frequency_causal", config.frequency_causal, "false when frequency_mix is 0")
    if not config.dilations or min(config.dilations) < 1:
        fail("dilations", config.dilations, "a non-empty list of positive integers")
    if config.kind not in ("transformer", "filter") and not config.causal:
        fail(
            "causal", config.causal, f"true: the '{config.kind}' encoder is causal by construction"
        )


def _check_tokens(tokens: torch.Tensor, config: EncoderConfig) -> None:
    if tokens.dim() != 2 or tokens.dtype != torch.long:
        raise ValueError(
            f"encoder input: expected a LongTensor (batch, <= {config.max_len + 1}), "
            f"got {tokens.dtype} of shape {tuple(tokens.shape)}"
        )
    if tokens.shape[1] > config.max_len + 1:
        raise ValueError(
            f"encoder input: {tokens.shape[1]} columns exceed max_len + 1 = {config.max_len + 1}"
        )
