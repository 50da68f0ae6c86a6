"""The inductive protocol through the nodes: pre-training reads one side of the users, every
downstream task trains and tests on the other."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from clue_pipeline.data.transfer import pretraining_rows
from clue_pipeline.pipelines.evaluate import nodes as evaluate
from clue_pipeline.pipelines.finetune import nodes as finetune
from clue_pipeline.pipelines.pretrain.nodes import corpus_sequences
from clue_pipeline.pipelines.sequences import nodes as sequences
from tests.pipelines.test_finetune_nodes import params, tables  # noqa: F401


def _inductive(params: dict) -> dict:  # noqa: F811
    sequence_params = copy.deepcopy(params["sequences"])
    sequence_params["transfer"] = {"protocol": "inductive", "pretrain_share": 0.5}
    sequence_params["dataset"] = "toy"
    return sequence_params


def test_next_item_pretraining_and_test_users_never_overlap(params, tables):  # noqa: F811
    item_index, _, _, _, split = tables
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {"user_id": np.arange(1, 201), "items": [rng.integers(1, 41, 8) for _ in range(200)]}
    )
    marked = sequences.split_next_item(table, _inductive(params))
    corpus = corpus_sequences(marked)
    pretrained_users = set(pretraining_rows(marked)["user_id"])
    assert marked["pretrain_user"].sum() == len(corpus) and 0 < len(corpus) < 200
    spec = params["finetune"]["methods"]["pop"]
    model, _ = finetune.finetune_next_item(
        marked, item_index, params["encoder"], params["finetune"], spec
    )
    record = evaluate.evaluate_next_item(model, marked, item_index, params["evaluate"], "toy")
    tested = record["metrics"]["n_users"]
    assert tested == 200 - len(corpus)
    assert pretrained_users.isdisjoint(set(marked.loc[~marked["pretrain_user"], "user_id"]))


def test_transductive_keeps_every_user_on_both_sides(params):  # noqa: F811
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {"user_id": np.arange(1, 51), "items": [rng.integers(1, 41, 8) for _ in range(50)]}
    )
    sequence_params = {**params["sequences"], "dataset": "toy"}
    split = sequences.split_next_item(table, sequence_params)
    assert "pretrain_user" not in split.columns
    assert len(corpus_sequences(split)) == 50
