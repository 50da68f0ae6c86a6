"""TV-Rec's encoder (Shin et al., "TV-Rec: Time-Variant Convolutional Filter for Sequential
Recommendation", NeurIPS 2025; the authors' code, ``model/tvrec.py`` of yehjin-shin/TV-Rec).

Each block's mixer is a time-variant graph filter in place of self-attention, and the item
embeddings get no position embeddings: the filter is tied to the position. The sequence is a
directed ring graph (column t -> t + 1, adjacency A, padded with K - 1 zero nodes), and the
filter is a polynomial in A whose coefficients depend on the node: ``y_t = sum_k h_t[k]
(A^k x)_t = sum_k h_t[k] x_{t-k}``, with each column's taps ``h_t = c_t B`` a learned mix of
``tv_bases`` (their M) basis filters, each normalised to unit length. The same filter runs on
every channel; the rest is FMLP-Rec's post-LN block (``models/mixer.py``).

The published layer computes it through the eigenvectors of A (a graph Fourier transform);
its output is the real part, so only the real part of the complex bases enters (the
imaginary part only normalises). Here it is the equivalent time-domain matrix over the
window ``n = max_len + 1`` (``[UR]`` included), taps 0..n - 1 (theirs: 0..K, K = 50, over 50
items), cut to the batch's width and, in the last block, to the read-out
rows: padding is zero, so a narrow batch gives the wide batch's states. One term of the
published ring is dropped: with the padding, its A^K wraps the last item onto the first
column (the only way a column reaches a later one), so here every column filters itself and
earlier ones only. The encoder is causal: next-item training may use one row per user, and
the joint pre-training objective's next-item term can train it. The published orthogonality
penalty on the bases is left out (its weight is 0 in the published Beauty and Sports runs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from clue_pipeline.models.mixer import MixerEncoder

if TYPE_CHECKING:
    from clue_pipeline.models.encoders import EncoderConfig

INIT_STD = 1e-3  # the published init of the coefficients and bases (normal(0, 1e-3))


class TVRecEncoder(MixerEncoder):
    """Item embeddings (no positions) into ``blocks`` TV-Rec blocks."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config, TimeVariantFilter, positions=False)


class TimeVariantFilter(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        n, bases = config.max_len + 1, config.tv_bases
        self.window = n
        self.coefficients = nn.Parameter(torch.randn(n, bases) * INIT_STD)  # (n, M): c_t
        self.bases = nn.Parameter(torch.randn(bases, n, 2) * INIT_STD)  # (M, taps, re/im)

    def taps(self) -> torch.Tensor:
        """(n, n): entry (t, k) is column t's weight on the item k columns before it."""
        bases = self.bases.float()
        norms = bases.square().sum(dim=(1, 2)).sqrt()  # (M,): each complex basis' length
        return self.coefficients.float() @ (bases[..., 0] / norms[:, None])

    def forward(self, x: torch.Tensor, keep: torch.Tensor, queries: int) -> torch.Tensor:
        """(B, queries, d): the filter's output at the last ``queries`` of the W columns."""
        width, n = x.shape[1], self.window
        rows = torch.arange(n - queries, n, device=x.device)
        lag = rows[:, None] - torch.arange(n - width, n, device=x.device)[None, :]  # (q, W)
        matrix = self.taps()[rows[:, None], lag.clamp(min=0)] * (lag >= 0)  # lower triangle
        return matrix.to(x.dtype) @ x
