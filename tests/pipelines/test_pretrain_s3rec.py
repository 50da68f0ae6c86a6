"""S3-Rec through the project's nodes: attributes from genres, pre-training, fine-tuning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader

from clue_pipeline.pipelines.evaluate import nodes as evaluate
from clue_pipeline.pipelines.finetune import nodes as finetune
from clue_pipeline.pipelines.pretrain import nodes as pretrain
from tests.conftest import REPO_ROOT

NUM_ITEMS = 30


@pytest.fixture(scope="module")
def params() -> dict:
    loader = OmegaConfigLoader(
        str(REPO_ROOT / "conf"), base_env="base", default_run_env="base", merge_strategy={}
    )
    values = loader["parameters"]
    for stage in ("pretrain", "finetune"):
        values[stage]["train"].update(
            {"epochs": 1, "batch_size": 16, "checkpoint_dir": None, "progress": False}
        )
    values["encoder"].update({"max_len": 10, "hidden": 16, "heads": 2})
    return values


def test_s3rec_pretrains_on_genres_and_fine_tunes_next_item(params):
    rng = np.random.default_rng(0)
    genres = ["Action", "Comedy", "Drama", "Horror"]
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, NUM_ITEMS + 1) * 10,
            "genres": ["|".join(rng.choice(genres, 2, replace=False)) for _ in range(NUM_ITEMS)],
        }
    )
    item_index = pd.DataFrame({"item_id": items["item_id"], "token": np.arange(1, NUM_ITEMS + 1)})
    sequences = [rng.integers(1, NUM_ITEMS + 1, size=rng.integers(5, 12)) for _ in range(64)]
    split = pd.DataFrame(
        {
            "user_id": np.arange(64),
            "train": [s[:-2].astype(np.int32) for s in sequences],
            "valid_target": [s[-2] for s in sequences],
            "test_target": [s[-1] for s in sequences],
        }
    )
    attributes = pretrain.item_attributes(items, item_index, params["pretrain"])
    assert (
        attributes["attribute"].nunique() == 4 and (attributes.groupby("token").size() == 2).all()
    )

    encoder, history = pretrain.pretrain_s3rec(
        split, item_index, attributes, params["encoder"], params["pretrain"]
    )
    assert len(history) == 1 and {"aap", "mip", "map", "sp"} <= set(history[0])
    assert np.isfinite(history[0]["loss"]) and encoder["config"]["causal"] is True

    spec = params["finetune"]["methods"]["s3rec"]
    model, _ = finetune.finetune_next_item(
        split, item_index, params["encoder"], params["finetune"], spec, encoder
    )
    record = evaluate.evaluate_next_item(model, split, item_index, params["evaluate"], "toy")
    assert record["method"] == "s3rec" and record["metrics"]["n_users"] == 64
