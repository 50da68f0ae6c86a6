"""Caser (Tang & Wang, WSDM 2018): convolutions over the embedding matrix of the last L items.

At every column the state is Caser's ``z``: the embeddings of the L most recent items (an
``L x d`` "image") go through horizontal filters (``horizontal_filters`` of each height
``1..L``, spanning the full width d, ReLU, max-pooled over the window: union-level and
point-level sequential patterns) and vertical filters (``vertical_filters`` of shape ``L x 1``:
learned weighted sums of the L embeddings); both are concatenated, dropped out, and a fully
connected layer with ReLU maps them to d. The paper's settings are the defaults (L = 5,
d = 64, 16 horizontal filters per height, 4 vertical, dropout 0.5).

How it meets the encoders' ``[UR]`` contract: an item column's window is the L items ending
at it (the state that predicts the next item during training), and the ``[UR]`` column's
window is the L items before it, so the user vector is Caser's ``z`` of the user's last L
items. Two departures from the paper, both forced by the contract: no per-user embedding
``P_u`` (the encoder sees item sequences, not user ids, and its vectors must exist for users
it never trained on), and the output layer is the tied item embedding table, as for every
backbone here, instead of a separate ``W'`` and bias.

All columns are computed at once: a height-h filter slid over the (left zero-padded) sequence
gives its value at every offset, and a max-pool of width ``L - h + 1`` collects the offsets
inside each column's window. Padding rows are zeroed first, so a window reaching into padding
sees exactly the zeros Caser pads short sequences with, whatever the amount of padding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from clue_pipeline.models.sequence_encoder import SequenceEncoder, fast_dropout

if TYPE_CHECKING:
    from clue_pipeline.models.encoders import EncoderConfig


class CaserEncoder(SequenceEncoder):
    """Horizontal and vertical convolutions over each column's window of the last L items."""

    def __init__(self, config: EncoderConfig) -> None:
        _validate(config)
        super().__init__(config)
        d, window = config.hidden, config.window
        self.horizontal = nn.ModuleList(
            nn.Conv1d(d, config.horizontal_filters, height) for height in range(1, window + 1)
        )
        self.vertical = nn.Conv1d(1, config.vertical_filters, window)
        conv_width = config.horizontal_filters * window + config.vertical_filters * d
        self.fc = nn.Linear(conv_width, d)

    def encode(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        b, w = tokens.shape
        window, d = self.config.window, self.config.hidden
        x = self.item_embedding(tokens) * real.unsqueeze(-1).to(self.item_embedding.weight.dtype)
        # one zero column in front, so that the window "before column 0" exists; then L - 1
        # more zeros, so that every window has L rows: (B, d, 1 + W + L - 1)
        padded = F.pad(x.transpose(1, 2), (window, 0))
        features = [self._horizontal(padded), self._vertical(padded, b, d)]
        z = self.fc(fast_dropout(torch.cat(features, dim=-1), self.config.dropout, self.training))
        z = F.relu(z)  # (B, 1 + W, d): z[:, j] is the window ending at padded column j
        # an item column t reads the window ending at it (j = t + 1); [UR] the one before it
        ends = torch.arange(1, w + 1, device=tokens.device).expand(b, w)
        ends = ends - (tokens == self.config.tokens.user).long()
        return z.gather(1, ends.unsqueeze(-1).expand(-1, -1, d))

    def _horizontal(self, padded: torch.Tensor) -> torch.Tensor:
        """(B, 1 + W, horizontal_filters * L): each height's ReLU output, max over the window."""
        window = self.config.window
        pooled = []
        for height, conv in enumerate(self.horizontal, start=1):
            h = F.relu(conv(padded))  # (B, n_h, 1 + W + L - height): offsets of the filter
            pooled.append(F.max_pool1d(h, kernel_size=window - height + 1, stride=1))
        return torch.cat(pooled, dim=1).transpose(1, 2)

    def _vertical(self, padded: torch.Tensor, b: int, d: int) -> torch.Tensor:
        """(B, 1 + W, vertical_filters * d): weighted sums of the window's L embeddings."""
        out = self.vertical(padded.reshape(b * d, 1, -1))  # (B * d, n_v, 1 + W)
        return out.view(b, d, -1, out.shape[-1]).permute(0, 3, 2, 1).flatten(2)


def _validate(config: EncoderConfig) -> None:
    for name in ("window", "horizontal_filters", "vertical_filters"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"encoder parameter '{name}' = {value!r}: expected a positive integer (Caser)"
            )
