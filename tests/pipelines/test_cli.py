"""`kedro run` from the command line, both spellings of the pipeline option; a second
pre-training run with the same settings resumes from the finished checkpoints."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.project import kedro_run

pytestmark = pytest.mark.slow

SAME_BUDGET = "pretrain.train.epochs=2,pretrain.train.checkpoint_every_steps=3"


@pytest.mark.parametrize("option", ["--pipelines=pretrain", "--pipeline=pretrain"])
def test_pretrain_from_the_command_line_resumes_finished_checkpoints(
    finished_project: Path, option: str
):
    encoders = finished_project / "data" / "06_models" / "ml-latest-small" / "pretrained"
    before = len(list((encoders / "next_item" / "clue_encoder.pt").iterdir()))
    started = time.perf_counter()
    result = kedro_run(finished_project, option, f"--params={SAME_BUDGET}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Completed node: next_item.pretrain_clue" in result.stderr
    # a new version of every encoder, from the checkpoints of the first run: no training
    assert len(list((encoders / "next_item" / "clue_encoder.pt").iterdir())) == before + 1
    assert "epoch 0:" not in result.stderr
    assert time.perf_counter() - started < 120


def test_unknown_parameter_names_the_parameter(finished_project: Path):
    result = kedro_run(finished_project, "--pipelines=pretrain", "--params=pretrain.train.epoch=3")
    assert result.returncode != 0
    assert "pretrain.train: unknown parameter(s) ['epoch']" in result.stderr
