"""What every sequence encoder shares: the input contract, the output, and their layers.

Every backbone honours the same input contract: a ``LongTensor (B, W)`` with ``W <= max_len + 1``,
left-padded with ``0``, real items (and ``[MASK]``) next, ``[UR]`` in the last column. Padding
never influences a real position: the tests compare the same sequences under different amounts
of left padding. Positions are counted from the right end (the ``[UR]`` column is always
position ``max_len``), so a narrower batch gives the same states as a wider one.

The backbones themselves (``models/encoders.py``, ``caser.py``, ``filter.py``) build on this
module and are listed in one table, ``encoders.ENCODERS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from clue_pipeline.data.tokens import PAD
from clue_pipeline.training.length_batching import length_groups

if TYPE_CHECKING:
    from clue_pipeline.models.encoders import EncoderConfig


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


def circulant(kernel: torch.Tensor, width: int) -> torch.Tensor:
    """(W, W, ...) matrix of the circular convolution with ``kernel`` (n, ...) over a window of
    n columns, restricted to its last W: entry (a, b), the weight of input column b in output
    column a, is ``kernel[(a - b) mod n]``. Exact when the columns left of them are zero."""
    columns = torch.arange(width, device=kernel.device)
    return kernel[(columns[:, None] - columns[None, :]) % kernel.shape[0]]


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


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


def init_linear_layers(blocks: nn.Module, std: float | None) -> None:
    """Every Linear layer of ``blocks`` drawn from normal(0, ``std``) with a zero bias, as the
    published SASRec-family trainers initialise them; ``None`` keeps PyTorch's default."""
    if std is None:
        return
    for module in blocks.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            nn.init.zeros_(module.bias)
