"""FMLP-Rec-style encoder (Zhou et al., WWW 2022): learnable filters in the frequency domain.

Each block replaces self-attention by a filter: the sequence of states goes through a real FFT
along the positions, is multiplied element-wise by a learned complex weight per (frequency,
channel), and comes back by the inverse FFT; dropout, residual, LayerNorm, then the
feed-forward sub-layer of the post-LN transformer block. A filter is a circular convolution
over the whole window, so every state sees every item: the encoder is not causal whatever
``causal`` says, and next-item training needs rows whose input holds no future item
(``finetune.next_item_rows: prefix``).

The encoders' contract counts positions from the right, whatever the padding. A filter's
weights are tied to the window length, so every batch is filtered at the full width
``max_len + 1`` with padding zeroed before each filter: a narrow batch is the wide one with
zero columns cut off, and gives the same states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clue_pipeline.models.encoders import (
    ACTIVATIONS,
    ENCODERS,
    EncoderConfig,
    SequenceEncoder,
    fast_dropout,
)


class FilterEncoder(SequenceEncoder):
    """Item + position embeddings, LayerNorm, dropout, then ``blocks`` filter-MLP blocks."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        d, width = config.hidden, config.max_len + 1
        self.position_embedding = nn.Embedding(width, d)
        nn.init.normal_(self.position_embedding.weight, std=config.init_std)
        self.input_norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(_FilterBlock(config) for _ in range(config.blocks))

    def encode(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        width, full = tokens.shape[1], self.config.max_len + 1
        tokens = F.pad(tokens, (full - width, 0))  # back to the filters' width, zeros = padding
        keep = (tokens != 0).unsqueeze(-1).to(self.item_embedding.weight.dtype)
        x = self.item_embedding(tokens) + self.position_embedding.weight  # (B, full, d)
        x = fast_dropout(self.input_norm(x), self.config.dropout, self.training)
        for block in self.blocks:
            x = block(x * keep)
        return x[:, full - width :]


class _FilterBlock(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        d, frequencies = config.hidden, (config.max_len + 1) // 2 + 1
        self.dropout = config.dropout
        self.activation = ACTIVATIONS[config.activation]
        self.filter = nn.Parameter(torch.randn(frequencies, d, 2) * config.init_std)
        self.filter_norm = nn.LayerNorm(d)
        self.ffn_in = nn.Linear(d, config.ffn_hidden or 4 * d)
        self.ffn_out = nn.Linear(config.ffn_hidden or 4 * d, d)
        self.ffn_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.rfft(x.float(), dim=1, norm="ortho")  # (B, F, d) complex
        filtered = torch.fft.irfft(
            spectrum * torch.view_as_complex(self.filter.float()), n=x.shape[1], dim=1, norm="ortho"
        ).to(x.dtype)
        x = self.filter_norm(x + fast_dropout(filtered, self.dropout, self.training))
        ffn = self.ffn_out(self.activation(self.ffn_in(x)))
        return self.ffn_norm(x + fast_dropout(ffn, self.dropout, self.training))


ENCODERS["filter"] = FilterEncoder
