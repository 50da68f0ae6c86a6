"""The most-popular baseline: training counts as every user's scores, through the metrics."""

from __future__ import annotations

import numpy as np
import torch

from clue_pipeline.metrics import ranking_metrics
from clue_pipeline.models.popularity import PopularityModel, counts_of


def test_counts_ignore_padding_and_special_tokens():
    counts = counts_of(np.array([0, 1, 1, 3, 5, 6]), size=4, offset=1)  # items 1..4
    assert counts.tolist() == [2.0, 0.0, 1.0, 0.0]


def test_every_user_gets_the_counts_and_the_most_popular_item_ranks_first():
    model = PopularityModel(torch.tensor([1.0, 5.0, 3.0]))
    tokens = torch.tensor([[0, 1, 9], [2, 3, 9]])
    assert torch.equal(model.logits(tokens), torch.tensor([[1.0, 5.0, 3.0]] * 2))
    scores = model.user_vectors(tokens) @ model.item_matrix().T
    assert torch.equal(scores, model.logits(tokens))
    metrics = ranking_metrics(
        model.user_vectors(tokens), model.item_matrix(), torch.tensor([1, 0]), ks=(1, 3)
    )
    assert metrics["recall@1"] == 0.5 and metrics["recall@3"] == 1.0  # item 1 first, 0 last


def test_state_round_trip_and_nothing_to_train():
    model = PopularityModel(torch.tensor([2.0, 0.0]))
    assert not any(p.requires_grad for p in model.parameters())
    restored = PopularityModel(torch.zeros(2))
    restored.load_state_dict(model.state_dict())
    assert restored.counts.tolist() == [2.0, 0.0]
