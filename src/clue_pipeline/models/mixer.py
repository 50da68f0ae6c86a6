"""The block that the frequency-domain recommenders after FMLP-Rec share: a token mixer in place
of self-attention, then the feed-forward sub-layer, each with dropout, residual and LayerNorm
after the sum (post-LN).

WEARec (``models/wearec.py``) and TV-Rec (``models/tvrec.py``) differ from each other only in
the mixer and in whether item embeddings get position embeddings (TV-Rec's filter is tied to
the position, so it has none); the rest of their published models is this encoder. A mixer
is a module ``mixer(x, keep, queries) -> (B, queries, d)``: ``x`` (B, W, d) with padding
zeroed, ``keep`` (B, W, 1) 1 at real columns, and the output for the last ``queries`` columns
only, so the last block mixes, normalises and feeds forward the read-out columns alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from clue_pipeline.models.sequence_encoder import (
    ACTIVATIONS,
    SequenceEncoder,
    fast_dropout,
    init_linear_layers,
)

if TYPE_CHECKING:
    from clue_pipeline.models.encoders import EncoderConfig


class MixerEncoder(SequenceEncoder):
    """Item (+ position) embeddings, LayerNorm, dropout, then ``blocks`` mixer blocks.

    ``linear_init_std`` (when set) initialises every Linear layer of the blocks as the published
    trainers do (normal(0, 0.02), zero bias); the mixers' own parameters keep their papers' init.
    """

    def __init__(
        self,
        config: EncoderConfig,
        mixer: Callable[[EncoderConfig], nn.Module],
        positions: bool = True,
    ) -> None:
        super().__init__(config)
        d = config.hidden
        self.position_embedding = nn.Embedding(config.max_len + 1, d) if positions else None
        if self.position_embedding is not None:
            nn.init.normal_(self.position_embedding.weight, std=config.init_std)
        self.input_norm = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(MixerBlock(config, mixer(config)) for _ in range(config.blocks))
        init_linear_layers(self.blocks, config.linear_init_std)

    def encode(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.encode_last(tokens, real, tokens.shape[1])

    def encode_last(self, tokens: torch.Tensor, real: torch.Tensor, last: int) -> torch.Tensor:
        """Every block but the last runs on all columns; the last one on the ``last`` wanted."""
        width = tokens.shape[1]
        keep = real.unsqueeze(-1).to(self.item_embedding.weight.dtype)  # (B, W, 1)
        x = self.item_embedding(tokens)  # (B, W, d)
        if self.position_embedding is not None:
            x = x + self.position_embedding.weight[-width:]  # positions count from the right
        x = fast_dropout(self.input_norm(x), self.config.dropout, self.training)
        for index, block in enumerate(self.blocks):
            queries = last if index == len(self.blocks) - 1 else width
            x = block(x * keep, keep, queries)
        return x


class MixerBlock(nn.Module):
    """``LN(x + dropout(mixer(x)))``, then ``LN(h + dropout(FFN(h)))`` (FMLP-Rec's block)."""

    def __init__(self, config: EncoderConfig, mixer: nn.Module) -> None:
        super().__init__()
        d, ffn_hidden = config.hidden, config.ffn_hidden or 4 * config.hidden
        self.dropout = config.dropout
        self.activation = ACTIVATIONS[config.activation]
        self.mixer = mixer
        self.mixer_norm = nn.LayerNorm(d)
        self.ffn_in = nn.Linear(d, ffn_hidden)
        self.ffn_out = nn.Linear(ffn_hidden, d)
        self.ffn_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, queries: int) -> torch.Tensor:
        """(B, queries, d): the block's output at the last ``queries`` of the W columns."""
        mixed = self.mixer(x, keep, queries)
        x = self.mixer_norm(x[:, -queries:] + fast_dropout(mixed, self.dropout, self.training))
        ffn = self.ffn_out(self.activation(self.ffn_in(x)))
        return self.ffn_norm(x + fast_dropout(ffn, self.dropout, self.training))
