"""WEARec's encoder (Xu et al., "Wavelet Enhanced Adaptive Frequency Filter for Sequential
Recommendation", AAAI 2026; the authors' code, ``src/model/wearec.py`` of their repository).

Each block's mixer blends two filters of the whole row, ``fft_mix`` x global + (1 - fft_mix) x
local, in place of self-attention (the rest is FMLP-Rec's post-LN block, ``models/mixer.py``):

- **global, adaptive**: per head, a real gain and an additive offset per frequency of the
  window, ``rfft -> x * g + b -> irfft`` (orthonormal FFTs), where ``g = g0 (1 + s)`` and
  ``b = b0 + t`` and ``(s, t)`` come from a small MLP of the row's mean state, so each row
  gets its own filter;
- **local, wavelet**: one level of the Haar transform on column pairs, the detail coefficient
  of each (pair, channel) scaled by a learned weight, then reconstructed: 1 keeps the pair,
  0 replaces both by their mean.

Both see the whole row (the FFT filter is circular over the window, the mean and the pair
reach later columns), so the encoder sees the future whatever ``causal`` says and next-item
training needs prefix rows, as for ``filter``. Differences from the published code, each so
that padding never reaches a real state and positions count from the right (the encoders'
contract, ``models/sequence_encoder.py``): the window is ``n = max_len + 1`` with ``[UR]``;
padding is zeroed before every block (the published model mixes the position embeddings of
its padding in); the row's mean is over its real columns; pairs count from the right (an odd
window gets a zero column in front, where the published code drops the last column of an odd
window). The FFT filter is applied as its circular convolution over the batch's own width
(a zero-padded narrow batch equals the wide one), one (W, W) matrix per row and head, cut to
the read-out columns in the last block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from clue_pipeline.models.mixer import MixerEncoder

if TYPE_CHECKING:
    from clue_pipeline.models.encoders import EncoderConfig

# The published initial values: gain 1 and offset -0.1 at every frequency, Haar detail
# weights normal(0, 0.02) (the wavelet branch starts near the pair means).
GAIN_INIT, OFFSET_INIT, DETAIL_INIT_STD = 1.0, -0.1, 0.02


class WEARecEncoder(MixerEncoder):
    """Item + position embeddings into ``blocks`` WEARec blocks (``heads`` filter heads)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config, WEARecMixer, positions=True)


class WEARecMixer(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        d, n = config.hidden, config.max_len + 1
        self.heads, self.window, self.fft_mix = config.heads, n, config.fft_mix
        frequencies = n // 2 + 1
        self.gain = nn.Parameter(torch.full((self.heads, frequencies), GAIN_INIT))
        self.offset = nn.Parameter(torch.full((self.heads, frequencies), OFFSET_INIT))
        self.adapt = nn.Sequential(  # row mean -> (scale, shift) per head and frequency
            nn.Linear(d, d), nn.GELU(), nn.Linear(d, self.heads * frequencies * 2)
        )
        self.detail = nn.Parameter(torch.randn((n + 1) // 2, d) * DETAIL_INIT_STD)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, queries: int) -> torch.Tensor:
        """(B, queries, d): the blend of both filters at the last ``queries`` columns."""
        context = x.sum(1) / keep.sum(1).clamp(min=1.0)  # (B, d): mean of the real columns
        scale, shift = self.adapt(context).view(x.shape[0], self.heads, -1, 2).unbind(-1)
        spectral = self.global_filter(x, self.gain * (1 + scale), self.offset + shift, queries)
        local = haar_filter(x, self.detail)[:, -queries:]
        return self.fft_mix * spectral + (1.0 - self.fft_mix) * local

    def global_filter(
        self, x: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor, queries: int
    ) -> torch.Tensor:
        """``irfft(rfft(x) * gain + offset)`` per head (orthonormal FFTs over the window n) at
        the last ``queries`` columns; ``gain``, ``offset``: (B, heads, n // 2 + 1)."""
        b, width, d = x.shape
        n = self.window
        kernel = torch.fft.irfft(gain.float(), n=n)  # (B, h, n): the gain's circular kernel
        signal = torch.fft.irfft(offset.float(), n=n) * n**0.5  # (B, h, n): the offset's
        rows = torch.arange(n - queries, n, device=x.device)
        columns = torch.arange(n - width, n, device=x.device)
        matrix = kernel[..., (rows[:, None] - columns[None, :]) % n]  # (B, h, queries, W)
        heads = x.reshape(b, width, self.heads, d // self.heads)
        out = torch.einsum("bhqw,bwhc->bqhc", matrix.to(x.dtype), heads)
        out = out + signal[..., -queries:].transpose(1, 2).unsqueeze(-1).to(x.dtype)
        return out.reshape(b, queries, d)


def haar_filter(x: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """One Haar level on column pairs counted from the right, detail scaled per (pair, channel):
    an earlier column ``e`` and its later partner ``o`` become ``m + w t`` and ``m - w t``, with
    ``m = (e + o) / 2`` and ``t = (e - o) / 2``. ``detail``: (pairs of the window, d)."""
    b, width, d = x.shape
    odd = width % 2
    pairs = F.pad(x, (0, 0, odd, 0)).view(b, (width + odd) // 2, 2, d)
    earlier, later = pairs.unbind(2)
    mean = (earlier + later) / 2
    difference = (earlier - later) / 2 * detail[-pairs.shape[1] :].to(x.dtype)
    out = torch.stack((mean + difference, mean - difference), dim=2).view(b, -1, d)
    return out[:, odd:]
