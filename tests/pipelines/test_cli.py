"""`kedro run` from the command line, both spellings of the pipeline option; a second
pre-training run with the same settings resumes from the finished checkpoints; a stage run
before its inputs exist says which and how to make them."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

from tests.project import copy_project, kedro_run

pytestmark = pytest.mark.slow

SAME_BUDGET = "pretrain.train.epochs=2,pretrain.train.checkpoint_every_steps=3"


def test_pretrain_from_the_command_line_resumes_finished_checkpoints(finished_project: Path):
    encoders = finished_project / "data" / "06_models" / "ml-latest-small" / "pretrained"
    before = len(list((encoders / "next_item" / "clue_encoder.pt").iterdir()))
    started = time.perf_counter()
    result = kedro_run(finished_project, "--pipelines=pretrain", f"--params={SAME_BUDGET}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Completed node: learn.pretrain.next_item.pretrain_clue" in result.stderr
    # a new version of every encoder, from the checkpoints of the first run: no training
    assert len(list((encoders / "next_item" / "clue_encoder.pt").iterdir())) == before + 1
    assert "epoch 1/" not in result.stderr  # the log's line per trained epoch
    assert time.perf_counter() - started < 120


def test_the_older_pipeline_option_runs_the_named_pipeline_only(finished_project: Path):
    result = kedro_run(finished_project, "--pipeline=augment")
    assert result.returncode == 0, result.stderr[-3000:]
    completed = re.findall(r"Completed node: (\S+)", result.stderr)
    assert sorted(completed) == [
        "learn.augment.sample_views_for_inspection",
        "learn.augment.validate_view_policy",
    ]


def test_unknown_parameter_names_the_parameter(finished_project: Path):
    result = kedro_run(finished_project, "--pipelines=pretrain", "--params=pretrain.train.epoch=3")
    assert result.returncode != 0
    assert (
        "Error: unknown parameter 'pretrain.train.epoch' (did you mean 'pretrain.train.epochs'?)"
        in result.stderr
    )


def test_a_stage_before_its_inputs_names_them_and_opens_no_mlflow_run(tmp_path: Path):
    project = copy_project(tmp_path)
    result = kedro_run(project, "--pipelines=finetune")
    assert result.returncode != 0
    assert "input(s) of this run have not been written yet" in result.stderr
    split = project / "data" / "05_model_input" / "ml-latest-small" / "next_item_split.parquet"
    assert f"next_item_split ({split}): written by pipeline sequences" in result.stderr
    assert "--pipelines=augment,ingest,pretrain,sequences`" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data" / "06_models").exists()
    store = project / "mlflow.db"
    assert (project / "mlflow.db.lock").exists()  # the store was opened under its lock
    if store.exists():
        with sqlite3.connect(store) as db:
            assert db.execute("select count(*) from runs").fetchone() == (0,)
