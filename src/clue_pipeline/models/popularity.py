"""Most-popular baseline (``pop``): every user gets the same scores, the training counts.

The floor of every table: a method that learned nothing about the user still ranks the items
everybody consumes. Next-item scores an item by how often it occurs in the training part of
the training users' sequences; profiling predicts the most frequent training label (accuracy
= the majority rate); cold-start ranks the target-domain items by how many training users
took them. Whether history items are excluded is the evaluation's setting, as for every other
method. Nothing is trained, so the model has no history of epochs.

It speaks the fine-tuning heads' interface (``user_vectors`` / ``item_matrix`` for ranking,
``logits`` for classification), so the evaluation code scores it like any other model: a user
vector of ones dotted with a one-column item matrix of counts gives every user the counts.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class PopularityModel(nn.Module):
    """Scores ``counts`` (C,) for every input row, whatever the tokens."""

    def __init__(self, counts: torch.Tensor) -> None:
        super().__init__()
        # a parameter (never trained) so that the model has a device and a state_dict
        self.counts = nn.Parameter(
            torch.as_tensor(counts, dtype=torch.float32), requires_grad=False
        )

    def logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, C): the training counts for every row."""
        return self.counts.expand(tokens.shape[0], -1)

    scores = logits

    def user_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1) ones: with ``item_matrix`` every user's scores are the counts."""
        return self.counts.new_ones((tokens.shape[0], 1))

    query_vectors = user_vectors  # what next-item ranking scores, as NextItemModel's

    def item_matrix(self) -> torch.Tensor:
        """(C, 1): row ``i`` = count of item index ``i``."""
        return self.counts[:, None]


def counts_of(values: np.ndarray, size: int, offset: int = 0) -> torch.Tensor:
    """Occurrences of each of ``offset .. offset + size - 1`` in ``values``, as float32 (size,).

    Values outside that range (padding, special tokens) are not counted.
    """
    values = np.asarray(values, dtype=np.int64) - offset
    values = values[(values >= 0) & (values < size)]
    return torch.as_tensor(np.bincount(values, minlength=size), dtype=torch.float32)
