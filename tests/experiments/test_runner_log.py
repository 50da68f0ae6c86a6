"""A cell's `kedro run` writes its output to a log file as it runs; a failure quotes the log."""

from __future__ import annotations

import stat

import pytest

from clue_pipeline.experiments.runner import RunnerConfig, kedro, log_path


def fake_python(tmp_path, exit_code: int):
    """Stands in for the interpreter: prints its arguments and a progress line, then exits."""
    script = tmp_path / "python"
    script.write_text(f'#!/bin/sh\necho "args: $*"\necho "epoch 3/10" >&2\nexit {exit_code}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return RunnerConfig(project_dir=tmp_path, envs={"ml-100k": "ml-100k"}, python=str(script))


def test_output_goes_to_the_cells_log_and_appends(tmp_path):
    config = fake_python(tmp_path, 0)
    kedro(config, "ml-100k", ["--nodes", "a,b"], {}, log_name="ml-100k_cell")
    kedro(config, "ml-100k", ["--nodes", "c"], {"seed": 1}, log_name="ml-100k_cell")
    log = log_path(config, "ml-100k_cell")
    assert log == tmp_path / "logs" / "cells" / "ml-100k_cell.log"
    text = log.read_text()
    assert text.count("epoch 3/10") == 2  # stderr too, both runs kept
    assert "args: -m kedro run --env ml-100k --nodes a,b" in text
    assert "--nodes c --config" in text  # parameters travel in a --config file


def test_a_failing_run_names_its_log_and_quotes_its_tail(tmp_path):
    config = fake_python(tmp_path, 3)
    with pytest.raises(RuntimeError, match=r"failed \(log .*bad\.log\):\n(.|\n)*epoch 3/10"):
        kedro(config, "ml-100k", ["--nodes", "a"], {}, log_name="bad")


def test_an_unknown_dataset_is_refused_before_anything_runs(tmp_path):
    config = fake_python(tmp_path, 0)
    with pytest.raises(ValueError, match="'beauty' has no run-environment"):
        kedro(config, "beauty", [], {})
    assert not (tmp_path / "logs").exists()
