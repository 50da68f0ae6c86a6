"""The `core` chain: the stages a large corpus can afford, runnable on their own."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from clue_pipeline.pipeline_registry import pipeline_names, refuse_unknown_pipelines
from clue_pipeline.pipelines.core import create_pipeline as core_chain
from tests.project import copy_project, kedro_run

ONE_EPOCH = "--params=pretrain.train.epochs=1,finetune.train.epochs=1"
STAGES = {"ingest", "sequences", "augment", "pretrain", "finetune", "evaluate", "embed"}


def test_core_chain_trains_only_clue_and_clue_zero_for_next_items():
    names = {node.name.rsplit(".", 1)[-1] for node in core_chain().nodes}
    assert {"pretrain_clue", "finetune_next_item_clue", "finetune_next_item_clue_zero"} <= names
    assert {"embed_users", "build_user_index", "summarise_metrics"} <= names
    assert not {n for n in names if "masked_item" in n or "s3rec" in n or "e_profiling" in n}
    # nothing outside the chain is read: a fresh project runs it
    assert all(name.startswith("params:") for name in core_chain().inputs())
    assert "core" in pipeline_names()
    refuse_unknown_pipelines(["core"])  # accepted


@pytest.mark.slow
def test_core_run_writes_next_item_metrics_user_vectors_and_stage_resources(tmp_path: Path):
    project = copy_project(tmp_path)
    resources = tmp_path / "resources.json"
    result = kedro_run(
        project, "--pipelines=core", ONE_EPOCH, env={"CLUE_RESOURCES_FILE": str(resources)}
    )
    assert result.returncode == 0, result.stderr[-4000:]
    record = json.loads(resources.read_text())
    assert {row["stage"] for row in record["stages"]} == STAGES
    assert record["peak_rss_gib"] > 0.1 and record["wall_seconds"] > 0
    reporting = project / "data/08_reporting/ml-latest-small"
    table = (reporting / "metrics.md").read_text()
    assert "clue_zero" in table and "mip" not in table and "profiling" not in table
    folder = project / "data/07_model_output/ml-latest-small/user_vectors.parquet"
    vectors = pd.read_parquet(max(folder.iterdir()) / "user_vectors.parquet")
    assert len(vectors) == 610  # every user of ml-latest-small
    assert not list((project / "data/06_models/ml-latest-small/pretrained").rglob("mip_encoder*"))
