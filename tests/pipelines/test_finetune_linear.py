"""The linear floor through the fine-tuning and evaluation nodes, as `kedro run` calls them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from clue_pipeline.pipelines.evaluate import nodes as evaluate
from clue_pipeline.pipelines.finetune import nodes as finetune
from tests.pipelines.test_finetune_nodes import NUM_ITEMS, params, tables  # noqa: F401


def _learnable_profile(rng, n=300):
    """Users whose label is whether they read more items of 1..20 than of 21..40, with
    histories longer than ``encoder.max_len`` (10): the floor reads them whole."""
    labels = rng.integers(0, 2, n)
    items = [
        np.concatenate(
            [
                rng.integers(1 + 20 * label, 21 + 20 * label, 20),
                rng.integers(1, NUM_ITEMS + 1, 10),
            ]
        ).astype(np.int32)
        for label in labels
    ]
    splits = np.array(["train"] * 200 + ["valid"] * 40 + ["test"] * 60, dtype=object)
    profile = pd.DataFrame(
        {"user_id": np.arange(1, n + 1), "items": items, "task": "gender", "label": labels}
    )
    profile["split"] = splits
    return profile


def test_linear_floor_classifies_users_from_their_whole_history(params, tables):  # noqa: F811
    item_index = tables[0]
    profile = _learnable_profile(np.random.default_rng(3))
    spec = params["finetune"]["methods"]["linear"]
    models, histories = finetune.finetune_profiling(
        profile, {"gender": ["F", "M"]}, item_index, params["encoder"], params["finetune"], spec
    )
    checkpoint = models["gender"]
    assert checkpoint["max_len"] == 30 > params["encoder"]["max_len"]
    assert [row["C"] for row in histories["gender"]] == [0.3, 1.0, 3.0, 10.0]
    stored = torch.load(_saved(checkpoint), weights_only=True)  # as the catalog stores it
    record = evaluate.evaluate_profiling(
        {"gender": stored}, profile, {"gender": ["F", "M"]}, item_index, params["evaluate"], "toy"
    )
    assert record["method"] == "linear"
    assert record["metrics"]["gender"]["accuracy"] > 0.9


def test_linear_floor_ranks_cold_start_targets(params, tables):  # noqa: F811
    item_index, _, targets, source, _ = tables
    target_index = pd.DataFrame({"item_id": np.arange(8), "target": np.arange(8)})
    spec = params["finetune"]["methods"]["linear"]
    model, history = finetune.finetune_coldstart(
        source, targets, target_index, item_index, params["encoder"], params["finetune"], spec
    )
    assert len(history) == 4 and "mrr@10" in history[0]
    record = evaluate.evaluate_coldstart(
        model, source, targets, item_index, params["evaluate"], "toy"
    )
    assert record["method"] == "linear"
    assert record["metrics"]["n_users"] == 18
    assert record["metrics"]["recall@10"] == 1.0  # 8 classes


def _saved(checkpoint: dict):
    import io

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return buffer
