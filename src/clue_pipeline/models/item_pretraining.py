"""Item-level pre-training baseline: masked item prediction (PeterRec / BERT4Rec style).

The contrast CLUE draws is between this item-level objective and its sequence-level one, so
both share the encoder, the [MASK] token and the mask view of ``augment``. With a causal
encoder a masked position is predicted from its left context; ``causal=False`` gives the
bidirectional (BERT4Rec) variant.
"""

from __future__ import annotations

import torch
from torch import nn

from clue_pipeline.augment import mask_positions, real_lengths, sample_per_row
from clue_pipeline.models.heads import item_cross_entropy, item_table
from clue_pipeline.models.sequence_encoder import SequenceEncoder, item_positions
from clue_pipeline.training.length_batching import length_groups


class MaskedItemPretrainer(nn.Module):
    """Mask ``round(mask_ratio * n)`` items (at least one) per sequence and predict them.

    Softmax cross-entropy over all N items with the tied item embedding, at masked positions
    only. At least one item per sequence is masked so short sequences still give a signal and
    a batch never has an empty loss.
    """

    def __init__(self, encoder: SequenceEncoder, mask_ratio: float = 0.2) -> None:
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(
                f"masked item pre-training: mask_ratio = {mask_ratio}: expected (0, 1)"
            )
        self.encoder = encoder
        self.mask_ratio = mask_ratio

    def forward(self, tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.loss(tokens, generator)

    def loss(self, tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        masked, chosen = self.mask(tokens, generator)
        states = self.encoder(masked).states[chosen]  # (M, d)
        return item_cross_entropy(states, item_table(self.encoder), tokens[chosen] - 1)

    def mask(
        self, tokens: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked tokens, boolean positions that were masked), both (B, W)."""
        counts = torch.round(self.mask_ratio * real_lengths(tokens)).long().clamp(min=1)
        chosen = mask_positions(tokens, counts, generator)
        return tokens.masked_fill(chosen, self.encoder.config.tokens.mask), chosen


class NextItemPretrainer(nn.Module):
    """Causal next-item cross-entropy at the positions of the sequence (SASRec's objective).

    The state of item t predicts item t + 1, softmax over all N items with the tied item
    embedding, as next-item fine-tuning does with one row per user; the last item (its
    successor is held out) and ``[UR]`` predict nothing. In the joint objective it trains the
    item states that next-item scoring reads, which the view objectives leave untouched.
    ``share`` < 1 supervises that share of each row's pairs (at least one), drawn afresh each
    step: the full softmax over N items at every position is most of the term's cost, and a
    random subset of the pairs estimates the same loss (short rows, kept at one pair, weigh
    slightly more).
    """

    def __init__(self, encoder: SequenceEncoder, share: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < share <= 1.0:
            raise ValueError(f"next-item pre-training: share = {share}: expected (0, 1]")
        if encoder.config.sees_future:
            raise ValueError(
                "pretrain.objective.next_item_weight > 0 needs an encoder whose item states do "
                f"not see later items; encoder.kind {encoder.config.kind!r} with causal "
                f"{encoder.config.causal} and frequency_mix {encoder.config.frequency_mix} sees "
                "the whole row, so each successor would be in its own input (a frequency mix is "
                "causal with encoder.frequency_causal: true)"
            )
        self.encoder = encoder
        self.share = share

    def forward(
        self, tokens: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.loss(tokens, generator)

    def loss(self, tokens: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean over the supervised (item, successor) pairs of the batch; rows are encoded in
        groups of similar length (:func:`length_groups`), so padding costs little in a mixed
        batch."""
        if self.share < 1.0 and generator is None:
            raise ValueError("next-item pre-training with share < 1 needs a generator")
        total, pairs_seen = None, 0
        for rows, width in length_groups(tokens):
            part = tokens[rows, -width:]
            items = item_positions(part, self.encoder.config.num_items)
            pairs = items[:, :-1] & items[:, 1:]  # item t followed by item t + 1
            if self.share < 1.0:
                pairs = sample_per_row(pairs, self.share, generator)
            count = int(pairs.sum())
            if count == 0:  # one-item rows: no pair, no signal
                continue
            states = self.encoder(part).states[:, :-1][pairs]
            term = count * item_cross_entropy(
                states, item_table(self.encoder), part[:, 1:][pairs] - 1
            )
            total = term if total is None else total + term
            pairs_seen += count
        if total is None:  # a zero that still reaches the parameters, as every loss does
            return item_table(self.encoder).sum() * 0.0
        return total / pairs_seen
