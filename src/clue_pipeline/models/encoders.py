"""Sequence encoders f_theta: a padded token batch -> per-position states and a user vector.

The input contract, the output and the shared layers are in ``models/sequence_encoder.py``;
here are the config, the transformer, GRU and CNN backbones, and the one registry:
``ENCODERS`` lists every ``EncoderConfig.kind`` with its class (Caser, the filter encoder,
WEARec and TV-Rec live in their own modules and are listed here too, nothing registers itself
on import), and ``build_encoder`` is the only constructor the rest of the code uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from clue_pipeline.data.tokens import SpecialTokens, special_tokens
from clue_pipeline.models.caser import CaserEncoder
from clue_pipeline.models.filter import FilterEncoder
from clue_pipeline.models.sequence_encoder import (
    ACTIVATIONS,
    EncoderOutput,
    SequenceEncoder,
    attend,
    attention_mask,
    circulant,
    fast_dropout,
    init_linear_layers,
    item_positions,
    user_vectors_by_length,
)
from clue_pipeline.models.tvrec import TVRecEncoder
from clue_pipeline.models.wearec import WEARecEncoder


@dataclass
class EncoderConfig:
    """Shape of an encoder; stored beside its weights so a checkpoint rebuilds itself."""

    num_items: int  # N; vocabulary N + 3 (pad, items 1..N, [MASK], [UR])
    # registry key: transformer | gru | cnn | caser | filter | wearec | tvrec
    kind: str = "transformer"
    max_len: int = 50  # items per sequence; the input has max_len + 1 columns with [UR]
    hidden: int = 64  # d
    blocks: int = 2  # transformer blocks / GRU layers / repeats of the CNN dilation stack
    heads: int = 4  # attention heads (transformer); the FFT filter's heads (wearec)
    dropout: float = 0.5
    # transformer only; GRU, CNN, Caser and TV-Rec are causal by construction, the filter and
    # WEARec never are
    causal: bool = True
    init_std: float = 0.02  # std of the normal init of embeddings (small logits at start)
    # FFN width; None = hidden for the transformer (SASRec), 4 x hidden for filter, wearec, tvrec
    ffn_hidden: int | None = None
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
    # WEARec (Xu et al., AAAI 2026; models/wearec.py): each block blends fft_mix x an adaptive
    # FFT filter of the whole row (its alpha) with (1 - fft_mix) x a learned Haar wavelet.
    fft_mix: float = 0.2
    # TV-Rec (Shin et al., NeurIPS 2025; models/tvrec.py): each position's causal filter is a
    # learned mix of tv_bases basis filters (its M).
    tv_bases: int = 32
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
        return self.kind in ("filter", "wearec") or (
            self.kind == "transformer" and (not self.causal or frequency_sees_future)
        )

    @property
    def tokens(self) -> SpecialTokens:
        """Padding, ``[MASK]``, ``[UR]`` and the vocabulary size (``data/tokens.py``)."""
        return special_tokens(self.num_items)


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
        init_linear_layers(self.blocks, config.linear_init_std)

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


NORMS = ("pre", "post")


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


ENCODERS: dict[str, type[SequenceEncoder]] = {
    "transformer": TransformerEncoder,
    "gru": GRUEncoder,
    "cnn": CNNEncoder,
    "caser": CaserEncoder,
    "filter": FilterEncoder,
    "wearec": WEARecEncoder,
    "tvrec": TVRecEncoder,
}

__all__ = [  # the shared parts, re-exported for the modules that build on encoders
    "EncoderOutput",
    "SequenceEncoder",
    "attend",
    "attention_mask",
    "fast_dropout",
    "item_positions",
    "user_vectors_by_length",
]


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
    for name in ("num_items", "max_len", "hidden", "blocks", "heads", "kernel_size", "tv_bases"):
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
    if not 0.0 <= config.fft_mix <= 1.0:
        fail("fft_mix", config.fft_mix, "a float in [0, 1] (0 = the wavelet filter alone)")
    if not config.dilations or min(config.dilations) < 1:
        fail("dilations", config.dilations, "a non-empty list of positive integers")
    if config.kind not in ("transformer", "filter", "wearec") and not config.causal:
        fail(
            "causal", config.causal, f"true: the '{config.kind}' encoder is causal by construction"
        )
