"""S3-Rec pre-training (Zhou et al., CIKM 2020): four mutual-information objectives.

The same transformer as CLUE, pre-trained bidirectionally (every position sees the whole
sequence, as S3-Rec's pre-training does) on one masked copy of each sequence and one segment
task, then fine-tuned causally like every other encoder:

- **AAP** (associated attribute prediction): an unmasked item's state predicts the item's
  attributes, ``sigmoid(W_aap(F_t) . e_a)`` against the multi-hot attributes, BCE over all.
- **MIP** (masked item prediction): a masked position's state scores its original item above
  a random item, ``BCE(sigmoid(W_mip(F_t) . e_i - W_mip(F_t) . e_neg), 1)``.
- **MAP** (masked attribute prediction): a masked position's state predicts the original
  item's attributes, as AAP.
- **SP** (segment prediction): a contiguous segment is masked out; the user vector of the
  rest scores the user vector of the segment alone above that of a segment from another
  sequence (the next row of the batch; random items where it has none).

The loss is ``w_aap AAP + w_mip MIP + w_map MAP + w_sp SP``, S3-Rec's defaults 0.2, 1, 1, 0.5.
States are read as in S3-Rec's released code (AAP on the contextual states of unmasked
items; SP on the sequence's last state, here the ``[UR]`` vector). Data without attributes
(``num_attributes = 0``) trains MIP and SP only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clue_pipeline.augment import _random_block, mask_positions, real_lengths
from clue_pipeline.config.pretraining import S3RecConfig
from clue_pipeline.data.tokens import FIRST_ITEM, special_tokens
from clue_pipeline.models.sequence_encoder import SequenceEncoder, item_positions


class S3RecPretrainer(nn.Module):
    """The encoder, an attribute embedding and one bilinear map per objective."""

    def __init__(
        self, encoder: SequenceEncoder, attributes: torch.Tensor, config: S3RecConfig
    ) -> None:
        """``attributes``: bool (vocab, A), row = item token, True where the item has it."""
        super().__init__()
        self.encoder, self.config = encoder, config
        d = encoder.config.hidden
        self.num_attributes = int(attributes.shape[1])
        self.register_buffer("attributes", attributes.bool(), persistent=False)
        self.attribute_embedding = nn.Embedding(max(self.num_attributes, 1), d)
        nn.init.normal_(self.attribute_embedding.weight, std=encoder.config.init_std)
        self.aap, self.mip, self.map, self.sp = (nn.Linear(d, d) for _ in range(4))

    def forward(self, tokens: torch.Tensor, generator: torch.Generator):
        return self.loss(tokens, generator)

    def loss(
        self, tokens: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of the four objectives, and each of them (detached) for the history."""
        cfg = self.config
        items = self.encoder.config.num_items
        counts = torch.round(cfg.mask_ratio * real_lengths(tokens)).long().clamp(min=1)
        chosen = mask_positions(tokens, counts, generator)
        masked = tokens.masked_fill(chosen, self.encoder.config.tokens.mask)
        states = self.encoder(masked).states  # (B, W, d)
        unmasked = item_positions(tokens, items) & ~chosen
        parts = {
            "aap": self._attribute_loss(self.aap(states[unmasked]), tokens[unmasked]),
            "map": self._attribute_loss(self.map(states[chosen]), tokens[chosen]),
            "mip": self._mip_loss(states[chosen], tokens[chosen], generator),
            "sp": self._segment_loss(tokens, generator),
        }
        total = (
            cfg.aap_weight * parts["aap"]
            + cfg.mip_weight * parts["mip"]
            + cfg.map_weight * parts["map"]
            + cfg.sp_weight * parts["sp"]
        )
        return total, {name: value.detach() for name, value in parts.items()}

    def _attribute_loss(self, projected: torch.Tensor, item_tokens: torch.Tensor) -> torch.Tensor:
        if self.num_attributes == 0 or len(item_tokens) == 0:
            return projected.sum() * 0.0
        logits = projected @ self.attribute_embedding.weight.T  # (M, A)
        return F.binary_cross_entropy_with_logits(logits, self.attributes[item_tokens].float())

    def _mip_loss(
        self, states: torch.Tensor, item_tokens: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        table = self.encoder.item_embedding.weight
        negatives = _random_items(len(item_tokens), self.encoder.config.num_items, generator, table)
        projected = self.mip(states)
        margin = (projected * (table[item_tokens] - table[negatives])).sum(-1)
        return F.softplus(-margin).mean()  # = BCE(sigmoid(pos - neg), 1)

    def _segment_loss(self, tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mask_token = self.encoder.config.tokens.mask
        lengths = real_lengths(tokens)
        span = (lengths // 2).clamp(min=1)  # segment length uniform in 1..n/2
        draw = torch.rand(lengths.shape, generator=generator, device=tokens.device)
        counts = (1 + (draw * span).long()).clamp(max=span)
        block, _ = _random_block(tokens, lengths, counts, generator)  # (B, W - 1)
        block = F.pad(block, (0, 1))  # never the [UR] column
        real = item_positions(tokens, self.encoder.config.num_items)
        other = tokens.roll(1, dims=0)
        other_real = item_positions(other, self.encoder.config.num_items)
        filler = _random_items(tokens.numel(), self.encoder.config.num_items, generator, tokens)
        other = torch.where(other_real, other, filler.view_as(tokens))
        context = tokens.masked_fill(block, mask_token)
        segment = torch.where(real & ~block, torch.full_like(tokens, mask_token), tokens)
        foreign = torch.where(block, other, segment)
        users = self.encoder(torch.cat([context, segment, foreign]), last=1).user
        c, pos, neg = users.chunk(3)
        projected = self.sp(c)
        margin = (projected * (pos - neg)).sum(-1)
        return F.softplus(-margin).mean()


def attribute_matrix(pairs: torch.Tensor, vocab_size: int, num_attributes: int) -> torch.Tensor:
    """Bool (vocab, A) multi-hot from ``(token, attribute)`` rows (K, 2)."""
    matrix = torch.zeros((vocab_size, num_attributes), dtype=torch.bool)
    if len(pairs):
        matrix[pairs[:, 0], pairs[:, 1]] = True
    return matrix


def _random_items(
    n: int, num_items: int, generator: torch.Generator, like: torch.Tensor
) -> torch.Tensor:
    end = special_tokens(num_items).items_end
    return torch.randint(FIRST_ITEM, end, (n,), generator=generator, device=like.device)
