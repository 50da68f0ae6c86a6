"""Checkpoints under faults: a damaged ``last.pt`` falls back to ``last.prev.pt`` and the run
still ends on the weights of an unbroken run; with nothing readable, the error names the files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from clue_pipeline.training import (
    TrainConfig,
    checkpoint_path,
    fit,
    load_checkpoint,
    previous_path,
)
from tests.training._resume_script import build_task, train

EPOCHS = 4
EVERY = 20
CRASH_AT_STEP = 70  # checkpoints at steps 20, 32 (end of epoch 0), 40, 60, 64 (end of epoch 1)


class Crash(RuntimeError):
    """Stands for the process dying mid-step: nothing after it runs."""


@pytest.fixture(scope="module")
def reference():
    model, result = train(checkpoint_dir=None, resume=False, epochs=EPOCHS)
    return model.state_dict(), result


def _config(folder: Path, resume: bool) -> TrainConfig:
    return TrainConfig(
        epochs=EPOCHS,
        batch_size=16,
        seed=3,
        device="cpu",
        checkpoint_dir=str(folder),
        checkpoint_every_steps=EVERY,
        resume=resume,
        grad_clip=5.0,
    )


def _crashed_run(folder: Path) -> None:
    task = build_task()
    steps = {"n": 0}

    def step_fn(model, batch, generator):
        steps["n"] += 1
        if steps["n"] == CRASH_AT_STEP:
            raise Crash
        return task.step_fn(model, batch, generator)

    with pytest.raises(Crash):
        fit(task.model, task.dataset, step_fn, _config(folder, resume=False))


def _resumed_run(folder: Path):
    task = build_task()
    result = fit(task.model, task.dataset, task.step_fn, _config(folder, resume=True))
    return task.model.state_dict(), result


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 64)
    elif how == "missing":
        path.unlink()


@pytest.mark.parametrize("how", ["truncated", "garbage", "missing"])
def test_a_damaged_last_checkpoint_falls_back_to_the_previous_one(tmp_path, reference, how, caplog):
    _crashed_run(tmp_path)
    last, previous = checkpoint_path(tmp_path), previous_path(checkpoint_path(tmp_path))
    assert load_checkpoint(last)["global_step"] == 64
    assert load_checkpoint(previous)["global_step"] == 60
    _damage(last, how)

    with caplog.at_level(logging.WARNING, logger="clue_pipeline.training.checkpoint"):
        weights, result = _resumed_run(tmp_path)

    assert f"resuming from {previous}" in caplog.text or f"previous one, {previous}" in caplog.text
    expected_weights, expected = reference
    assert result.steps == expected.steps
    assert result.step_losses == expected.step_losses
    for name, tensor in expected_weights.items():
        assert torch.equal(weights[name], tensor), f"{name} differs after the fallback"


def test_no_readable_checkpoint_names_the_files_to_delete(tmp_path):
    _crashed_run(tmp_path)
    last, previous = checkpoint_path(tmp_path), previous_path(checkpoint_path(tmp_path))
    _damage(last, "truncated")
    _damage(previous, "garbage")
    with pytest.raises(ValueError) as caught:
        _resumed_run(tmp_path)
    message = str(caught.value)
    assert f"Delete {last} and {previous} to start this training over" in message
    assert "resume: false" in message
