"""Progress that fits where it goes: bars on a terminal, one log line per epoch in a file."""

import logging

import pytest

from clue_pipeline.training import TrainConfig, fit
from clue_pipeline.training import loop as loop_module
from clue_pipeline.training.loop import epoch_line
from tests.training._resume_script import build_task

CONFIG = {"epochs": 3, "batch_size": 32, "seed": 11, "device": "cpu", "progress": True}


def _fit(**overrides):
    task = build_task(rows=128)
    return fit(
        task.model,
        task.dataset,
        task.step_fn,
        TrainConfig(**{**CONFIG, **overrides}),
        validate_fn=lambda model: {"score@10": 0.25},
    )


def test_outside_a_terminal_one_line_per_epoch_and_no_bar_frames(capsys, caplog):
    # pytest's captured stderr is not a terminal, as a log file or CI is not
    with caplog.at_level(logging.INFO, logger=loop_module.__name__):
        _fit(monitor="score@10", progress_every_steps=1)
    lines = [r.getMessage() for r in caplog.records if r.name == loop_module.__name__]
    assert len(lines) == 3
    assert lines[0].startswith("epoch 1/3: loss ")
    assert "seq/s, score@10 0.2500" in lines[2]
    stderr = capsys.readouterr().err
    assert "\r" not in stderr and "it/s" not in stderr and "epoch 0" not in stderr


def test_on_a_terminal_a_bar_and_no_log_lines(capsys, caplog, monkeypatch):
    monkeypatch.setattr(loop_module, "_stderr_is_terminal", lambda: True)
    with caplog.at_level(logging.INFO, logger=loop_module.__name__):
        _fit(progress_every_steps=1)
    assert not [r for r in caplog.records if r.name == loop_module.__name__]
    assert "epoch 0" in capsys.readouterr().err  # tqdm's bar, labelled by epoch


def test_progress_off_says_nothing(capsys, caplog):
    with caplog.at_level(logging.INFO, logger=loop_module.__name__):
        _fit(progress=False)
    assert not [r for r in caplog.records if r.name == loop_module.__name__]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        (None, "epoch 2/5: loss 1.2346, 1500 seq/s"),
        ("ndcg@10", "epoch 2/5: loss 1.2346, 1500 seq/s, ndcg@10 0.0420"),
        ("absent", "epoch 2/5: loss 1.2346, 1500 seq/s"),
    ],
)
def test_epoch_line(monitor, expected):
    entry = {"epoch": 1, "loss": 1.23456, "sequences_per_s": 1499.6, "ndcg@10": 0.042}
    assert epoch_line(entry, 5, monitor) == expected


def test_outside_a_terminal_a_long_epoch_logs_where_it_is(caplog, monkeypatch):
    monkeypatch.setattr(loop_module, "STEP_LOG_SECONDS", 0.0)  # every step is "a minute later"
    with caplog.at_level(logging.INFO, logger=loop_module.__name__):
        _fit(epochs=1)
    lines = [r.getMessage() for r in caplog.records if r.name == loop_module.__name__]
    steps = [line for line in lines if ": step " in line]
    assert steps[0].startswith("epoch 1: step 1/4, loss ") and "min left in the epoch" in steps[0]
    assert steps[-1].startswith("epoch 1: step 4/4") and "about 0.0 min left" in steps[-1]
    assert lines[-1].startswith("epoch 1/1: loss ")
