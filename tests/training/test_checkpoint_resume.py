"""Atomic checkpoints, and a run killed with SIGKILL that resumes to bit-identical weights."""

import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from clue_pipeline.training import (
    capture_rng_state,
    checkpoint_path,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from tests.conftest import REPO_ROOT
from tests.training._resume_script import train

SCRIPT = Path(__file__).with_name("_resume_script.py")
KILL_AFTER_STEPS = 90
POLL_S = 0.01
START_TIMEOUT_S = 120


def test_save_checkpoint_is_atomic_and_loads_weights_only(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    state = {"w": torch.arange(6.0).view(2, 3), "epoch": 3, "history": [{"loss": 0.5}]}
    save_checkpoint(path, state)
    save_checkpoint(path, {**state, "epoch": 4})
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 4
    assert torch.equal(loaded["w"], state["w"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"], "temp file left behind"


def test_load_checkpoint_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"callable": os.getcwd}, protocol=2))
    with pytest.raises(ValueError, match="weights_only=True"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_round_trip_replays_every_stream(tmp_path):
    generator = torch.Generator().manual_seed(5)
    state = capture_rng_state(generator)
    save_checkpoint(tmp_path / "rng.pt", state)
    first = _draw_all(generator)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt"), generator)
    second = _draw_all(generator)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[2] == second[2] and first[3] == second[3]


# Starts fresh interpreters (torch import dominates), so it is slow on a busy 2-core machine.
@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_identical_weights(tmp_path):
    reference_model, reference = train(checkpoint_dir=None, resume=False)
    ckpt_dir, progress = tmp_path / "ck", tmp_path / "progress.txt"
    output = tmp_path / "final.pt"
    command = [
        sys.executable,
        str(SCRIPT),
        "--checkpoint-dir",
        str(ckpt_dir),
        "--progress-file",
        str(progress),
        "--output",
        str(output),
        "--step-delay-s",
        "0.005",
    ]
    env = {**os.environ, "CLUE_NUM_THREADS": "1"}
    victim = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    try:
        killed_at = _wait_for_progress(victim, progress, checkpoint_path(ckpt_dir))
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
    assert not output.exists(), "the run finished before it was killed"
    interrupted = load_checkpoint(checkpoint_path(ckpt_dir))
    assert 0 < interrupted["global_step"] < reference.steps
    assert killed_at >= KILL_AFTER_STEPS

    subprocess.run([*command[:-2], "--resume"], cwd=REPO_ROOT, env=env, check=True, timeout=300)
    final = torch.load(output, weights_only=True)
    assert final["steps"] == reference.steps
    expected = reference_model.state_dict()
    assert final["model"].keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(final["model"][name], tensor), f"{name} differs after resume"
    assert final["step_losses"] == reference.step_losses


def test_resume_of_a_finished_run_returns_it_without_training(tmp_path):
    model, first = train(checkpoint_dir=str(tmp_path), resume=False, epochs=1)
    progress = tmp_path / "progress.txt"
    again_model, again = train(
        checkpoint_dir=str(tmp_path), resume=True, epochs=1, progress_file=str(progress)
    )
    assert not progress.exists(), "a step ran although the checkpoint says the run finished"
    assert again.steps == first.steps and again.history == first.history
    assert all(torch.equal(again.best_state[k], v) for k, v in first.best_state.items())
    assert all(torch.equal(again_model.state_dict()[k], v) for k, v in model.state_dict().items())


def _draw_all(generator):
    return (
        torch.rand(4, generator=generator),
        torch.rand(4),
        np.random.rand(3).tolist(),
        [random.random() for _ in range(3)],
    )


def _wait_for_progress(process, progress: Path, checkpoint: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training script exited early with code {process.returncode}")
        steps = int(progress.read_text() or 0) if progress.exists() else 0
        if steps >= KILL_AFTER_STEPS and checkpoint.exists():
            return steps
        time.sleep(POLL_S)
    pytest.fail(f"no checkpoint after {KILL_AFTER_STEPS} steps within {START_TIMEOUT_S} s")
