"""A worker of a 2-process gloo pre-training killed with SIGKILL: the run stops with an error
naming the rank, the signal and the checkpoint; the next run resumes from that checkpoint and
ends on exactly the weights and losses of an unbroken run."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from clue_pipeline.training import (
    DistributedConfig,
    TrainConfig,
    WorkerSpec,
    checkpoint_path,
    load_checkpoint,
    run_training,
)
from clue_pipeline.training.distributed import WorkerFailedError

pytestmark = pytest.mark.slow

BUILDER = "tests.reliability._killable_task:build_task"
ROWS, BATCH, EPOCHS = 256, 16, 3  # 16 global steps per epoch, 48 in all
KILL_AT_STEP = 20
TWO_WORKERS = DistributedConfig(nproc_per_node=2, cores=2)


def _spec(folder: Path, checkpoints: Path | None, delay: float = 0.0) -> WorkerSpec:
    train = TrainConfig(
        epochs=EPOCHS,
        batch_size=BATCH,
        seed=5,
        device="cpu",
        checkpoint_dir=str(checkpoints) if checkpoints else None,
        checkpoint_every_steps=5,
        resume=True,
        grad_clip=5.0,
    )
    kwargs = {"progress_dir": str(folder), "step_delay_s": delay, "rows": ROWS}
    return WorkerSpec(BUILDER, train, kwargs)


def test_sigkilled_worker_stops_the_run_clearly_and_resume_matches_an_unbroken_run(tmp_path):
    reference = run_training(_spec(tmp_path / "unbroken", None), TWO_WORKERS)
    checkpoints, progress = tmp_path / "ck", tmp_path / "killed"
    killed: dict[str, int] = {}
    killer = threading.Thread(target=_kill_rank1, args=(progress, checkpoints, killed))
    killer.start()
    try:
        with pytest.raises(WorkerFailedError) as caught:
            run_training(_spec(progress, checkpoints, delay=0.03), TWO_WORKERS)
    finally:
        killer.join(timeout=120)
    assert killed, "the worker was not killed"
    message = str(caught.value)
    assert f"worker rank 1 (pid {killed['pid']}) was killed by SIGKILL" in message
    step = load_checkpoint(checkpoint_path(checkpoints))["global_step"]
    assert 0 < step < reference.steps
    assert f"The checkpoint in {checkpoints} holds step {step}: run again with resume: true" in (
        message
    )

    resumed = run_training(_spec(tmp_path / "resumed", checkpoints), TWO_WORKERS)
    assert resumed.steps == reference.steps == EPOCHS * ROWS // BATCH
    assert resumed.step_losses == reference.step_losses
    assert resumed.best_state.keys() == reference.best_state.keys()
    for name, tensor in reference.best_state.items():
        assert torch.equal(resumed.best_state[name], tensor), f"{name} differs after resume"


def _kill_rank1(progress: Path, checkpoints: Path, killed: dict[str, int]) -> None:
    deadline = time.monotonic() + 120
    path = progress / "rank1"
    while time.monotonic() < deadline:
        if path.exists() and checkpoint_path(checkpoints).exists():
            pid, steps = (int(x) for x in path.read_text().split())
            if steps >= KILL_AT_STEP:
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
        time.sleep(0.01)
