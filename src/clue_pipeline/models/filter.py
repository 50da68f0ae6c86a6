"""FMLP-Rec-style encoder (Zhou et al., WWW 2022): learnable filters in the frequency domain.

Each block replaces self-attention by a filter: the sequence of states goes through a real FFT
along the positions, is multiplied element-wise by a learned complex weight per (frequency,
channel), and comes back by the inverse FFT; dropout, residual, LayerNorm, then the
feed-forward sub-layer of the post-LN transformer block. A filter is a circular convolution
over the whole window, so every state sees every item: the encoder is not causal whatever
``causal`` says, and next-item training needs rows whose input holds no future item
(``finetune.next_item_rows: prefix``).

The encoders' contract counts positions from the right, whatever the padding. A filter's
weights are tied to the window length ``n = max_len + 1``: the filter is the circular
convolution with the kernel ``h = irfft(weight, n)``, applied here in the time domain to the
batch's own width W (padding zeroed before each filter), so a narrow batch is the wide one
with zero columns cut off and gives the same states, at W^2 rather than n log n per channel
and with every other layer at W columns: batches bucketed by length then run as fast as the
transformer's (Amazon sequences hold ~9 items of 50).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from clue_pipeline.models.sequence_encoder import (
    ACTIVATIONS,
    SequenceEncoder,
    circulant,
    fast_dropout,
)

if TYPE_CHECKING:
    from clue_pipeline.models.encoders import EncoderConfig


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
        width = tokens.shape[1]
        keep = real.unsqueeze(-1).to(self.item_embedding.weight.dtype)
        positions = self.position_embedding.weight[-width:]
        x = self.item_embedding(tokens) + positions  # (B, W, d)
        x = fast_dropout(self.input_norm(x), self.config.dropout, self.training)
        for block in self.blocks:
            x = block(x * keep)
        return x


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
        self.window = config.max_len + 1

    def kernel_matrix(self, width: int) -> torch.Tensor:
        """(W, W, d): this block's frequency-domain filter as a :func:`circulant` matrix over
        the last W columns of its window."""
        kernel = torch.fft.irfft(torch.view_as_complex(self.filter.float()), n=self.window, dim=0)
        return circulant(kernel, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        filtered = torch.einsum("abd,nbd->nad", self.kernel_matrix(x.shape[1]).to(x.dtype), x)
        x = self.filter_norm(x + fast_dropout(filtered, self.dropout, self.training))
        ffn = self.ffn_out(self.activation(self.ffn_in(x)))
        return self.ffn_norm(x + fast_dropout(ffn, self.dropout, self.training))
