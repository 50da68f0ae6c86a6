"""Cold-start evaluation in length-sorted batches gives each user the rank a plain pass gives."""

from __future__ import annotations

import numpy as np
import torch

from clue_pipeline.metrics import metrics_from_ranks
from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.models.heads import ClassifierModel
from clue_pipeline.tasks.batching import model_inputs
from clue_pipeline.tasks.finetuning import evaluate_coldstart
from clue_pipeline.training.length_batching import by_length

NUM_ITEMS, MAX_LEN, NUM_TARGETS = 20, 8, 15


def _instances(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Users of every length from 1 to MAX_LEN + 3 (truncated), in random order."""
    rng = np.random.default_rng(seed)
    lists = [
        rng.integers(1, NUM_ITEMS + 1, size=rng.integers(1, MAX_LEN + 4)) for _ in range(count)
    ]
    return model_inputs(lists, MAX_LEN, NUM_ITEMS + 2), rng.integers(0, NUM_TARGETS, size=count)


def test_coldstart_metrics_equal_a_per_user_computation():
    torch.manual_seed(0)
    model = ClassifierModel(
        build_encoder(EncoderConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=16, heads=2)),
        NUM_TARGETS,
    )
    tokens, targets = _instances(37, seed=1)

    got = evaluate_coldstart(model, tokens, targets, batch_size=5)

    model.eval()
    with torch.no_grad():
        logits = torch.cat([model.logits(torch.as_tensor(row[None])) for row in tokens])
    own = logits[torch.arange(len(targets)), torch.as_tensor(targets)]
    ranks = (logits >= own[:, None]).sum(dim=1) - 1  # ties count against the target
    assert got == {**metrics_from_ranks(ranks), "history_excluded": False}
    assert 0 < got["recall@5"] < 1  # ranks vary, so a wrong order would change the metrics


def test_by_length_hands_each_batch_its_own_rows_of_aligned_arrays():
    tokens, _ = _instances(23, seed=2)
    row_ids = np.arange(len(tokens)) * 10
    echoed = by_length(lambda batch, ids: ids, tokens, 4, "cpu", row_ids)
    assert echoed.dtype == torch.int64
    assert torch.equal(echoed, torch.as_tensor(row_ids))
    widths = by_length(
        lambda batch, ids: torch.full_like(ids, batch.shape[1]), tokens, 4, "cpu", row_ids
    )
    lengths = (tokens != 0).sum(axis=1)
    assert (widths.numpy() >= lengths).all() and (widths.numpy() < tokens.shape[1] + 1).all()
    assert widths.min() < tokens.shape[1]  # short rows were batched together and cut
