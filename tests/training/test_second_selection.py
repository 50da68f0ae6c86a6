"""``fit(also_monitor=...)``: a second key's best epoch and weights, kept beside the first,
through a resume, and from a checkpoint written before there was one."""

from __future__ import annotations

import pytest
import torch

from clue_pipeline.training import TrainConfig, cpu_state_dict, fit
from clue_pipeline.training.checkpoint import (
    checkpoint_path,
    load_latest_checkpoint,
    previous_path,
    save_checkpoint,
)
from clue_pipeline.training.run_state import ALSO_FIELDS
from tests.training._resume_script import build_task

# "a" peaks at epoch 1, "b" at epoch 3: early stopping on "a" alone (patience 3) stops at 4
CURVES = {"a": [0.1, 0.5, 0.4, 0.45, 0.3, 0.2], "b": [0.1, 0.2, 0.3, 0.6, 0.5, 0.4]}


class Killed(Exception):
    """The run dies here."""


class Scripted:
    """Validation that reads each key's curve at the epoch it is told, and keeps the weights
    it saw; ``fail_at`` raises there, as a run killed before that epoch's checkpoint."""

    def __init__(self, first_epoch: int = 0, fail_at: int | None = None) -> None:
        self.epoch, self.fail_at, self.seen = first_epoch, fail_at, {}

    def __call__(self, model) -> dict[str, float]:
        if self.epoch == self.fail_at:
            raise Killed
        self.seen[self.epoch] = cpu_state_dict(model)
        scores = {key: curve[self.epoch] for key, curve in CURVES.items()}
        self.epoch += 1
        return scores


def _config(**overrides) -> TrainConfig:
    values = {"epochs": 6, "batch_size": 32, "seed": 3, "device": "cpu", "monitor": "a"}
    return TrainConfig(**{**values, "checkpoint_every_steps": None, **overrides})


def _fit(config: TrainConfig, validate: Scripted):
    task = build_task(rows=64)
    return fit(task.model, task.dataset, task.step_fn, config, validate, also_monitor="b")


def _same(state: dict, other: dict) -> bool:
    return state.keys() == other.keys() and all(torch.equal(state[k], other[k]) for k in state)


def test_the_second_key_keeps_its_own_best_epoch_and_weights_and_never_stops_the_run():
    validate = Scripted()
    result = _fit(_config(patience=3), validate)
    assert [entry["epoch"] for entry in result.history] == [0, 1, 2, 3, 4]  # stopped on "a"
    assert (result.best_epoch, result.also_best_epoch) == (1, 3)
    assert result.also_monitor == "b" and result.also_best_metric == 0.6
    assert result.also_since_epoch == 0
    assert _same(result.best_state, validate.seen[1])
    assert _same(result.also_best_state, validate.seen[3])
    assert not _same(result.best_state, result.also_best_state)


def test_a_missing_second_key_names_the_argument():
    task = build_task(rows=64)
    with pytest.raises(ValueError, match=r"also_monitor='c'.*\['a', 'b'"):
        fit(task.model, task.dataset, task.step_fn, _config(), Scripted(), also_monitor="c")


def test_a_resumed_run_keeps_the_second_selection_it_had(tmp_path):
    whole = _fit(_config(), Scripted())
    config = _config(checkpoint_dir=str(tmp_path), resume=True)
    with pytest.raises(Killed):
        _fit(config, Scripted(fail_at=4))  # epochs 0-3 checkpointed, "b"'s best among them
    resumed = _fit(config, Scripted(first_epoch=4))
    assert (resumed.best_epoch, resumed.also_best_epoch) == (1, 3)
    assert resumed.also_since_epoch == 0
    assert _same(resumed.also_best_state, whole.also_best_state)
    assert _same(resumed.best_state, whole.best_state)


def test_a_checkpoint_without_a_second_selection_resumes_and_says_where_it_began(tmp_path):
    config = _config(checkpoint_dir=str(tmp_path), resume=True)
    with pytest.raises(Killed):
        _fit(config, Scripted(fail_at=4))
    path = checkpoint_path(str(tmp_path))
    old = load_latest_checkpoint(path)
    for name in ALSO_FIELDS:  # as written before the second selection existed
        del old[name]
    save_checkpoint(path, old)
    previous_path(path).unlink(missing_ok=True)
    resumed = _fit(config, Scripted(first_epoch=4))
    assert resumed.best_epoch == 1
    assert resumed.also_since_epoch == 4 and resumed.also_best_epoch == 4  # epochs 4-5 only
