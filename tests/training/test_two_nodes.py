"""Two machines on loopback: two elastic agents (the `launch` that `kedro run` starts on each
machine) meet at a c10d rendezvous on 127.0.0.1, one gloo worker each.

Training equals one process with the same global batch (each rank takes half of every batch,
DDP averages the gradients, BatchNorm statistics span both); killing one agent stops the other
with one line naming the lost node, and the next run resumes from the last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clue_pipeline.training import (
    TrainConfig,
    WorkerSpec,
    checkpoint_path,
    load_checkpoint,
    run_training,
)
from clue_pipeline.training.distributed import free_port, result_from_bytes
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow  # four fresh interpreters per run (torch import dominates)

TINY = "tests.training._resume_script:build_task"
KILLABLE = "tests.reliability._killable_task:build_task"
# Rank-invariant task (no dropout, deterministic views): one process and two see equal data.
TASK = {"rows": 64, "dropout": 0.0, "mask_ratio": 0.0, "validation_rows": 32}
# Float tolerance: the same sums in another order (two half-batch gradients averaged by DDP, the
# BatchNorm statistics all-reduced) differ from one process by rounding, ~1e-7 per step.
WEIGHT_ATOL = 1e-5
LOSS_RTOL = 1e-4
RUN_TIMEOUT_S = 240
KILL_AT_STEP = 12  # of 24 (6 epochs x 4 steps); a checkpoint every 5 steps

# One machine's agent: the `launch` path that pretrain's `kedro run` takes on each machine.
AGENT = """
import json, sys
from clue_pipeline.training import DistributedConfig, WorkerSpec, run_training
from clue_pipeline.training.distributed import WorkerFailedError, result_to_bytes
spec = WorkerSpec.from_dict(json.loads(sys.argv[1]))
try:
    result = run_training(spec, DistributedConfig(**json.loads(sys.argv[2])))
except WorkerFailedError as error:
    print(error, file=sys.stderr)
    sys.exit(3)
with open(sys.argv[3], "wb") as out:
    out.write(result_to_bytes(result))
"""


def _train(**overrides) -> TrainConfig:
    defaults = {"epochs": 5, "batch_size": 16, "seed": 4, "device": "cpu", "monitor": "neg_loss"}
    return TrainConfig(**{**defaults, **overrides})


def test_two_agents_on_loopback_train_as_one_process(tmp_path):
    spec = WorkerSpec(TINY, _train(), TASK)
    single = run_training(spec)
    with TwoNodes(tmp_path, spec) as nodes:
        codes = nodes.wait()
    assert codes == [0, 0], nodes.logs()
    results = [result_from_bytes(path.read_bytes()) for path in nodes.outputs]
    for double in results:  # each machine's run returns (and would write) the same model
        assert double.steps == single.steps == 20
        assert torch.allclose(
            torch.tensor(double.step_losses), torch.tensor(single.step_losses), rtol=LOSS_RTOL
        )
        assert double.best_state.keys() == single.best_state.keys()
        assert any(name.startswith("embedding.") for name in single.best_state)  # the encoder
        for name, tensor in single.best_state.items():
            assert torch.allclose(double.best_state[name], tensor, atol=WEIGHT_ATOL), name


def test_killed_agent_is_named_and_the_next_run_resumes(tmp_path):
    checkpoints = tmp_path / "ck"
    train = _train(epochs=6, checkpoint_dir=str(checkpoints), checkpoint_every_steps=5)
    kwargs = {**TASK, "progress_dir": str(tmp_path / "killed"), "step_delay_s": 0.05}
    with TwoNodes(tmp_path / "first", WorkerSpec(KILLABLE, train, kwargs)) as nodes:
        nodes.kill_node1_agent_at(tmp_path / "killed", checkpoints, KILL_AT_STEP)
        code = nodes.wait()[0]
        assert nodes.node1_is_gone(), "node 1's worker outlived its agent"
    last_line = nodes.stderr(0).strip().splitlines()[-1]
    assert code == 3, nodes.logs()
    assert last_line.startswith(
        f"distributed training stopped: node_rank 1 (host {socket.gethostname()}, rank "
    ), last_line
    assert "was lost: its workers stopped answering" in last_line
    step = load_checkpoint(checkpoint_path(checkpoints))["global_step"]
    assert 0 < step < 24
    assert f"The checkpoint in {checkpoints} holds step {step}: run again" in last_line

    kwargs["progress_dir"], kwargs["step_delay_s"] = str(tmp_path / "resumed"), 0.0
    with TwoNodes(tmp_path / "second", WorkerSpec(KILLABLE, train, kwargs)) as nodes:
        codes = nodes.wait()
    assert codes == [0, 0], nodes.logs()
    resumed = result_from_bytes(nodes.outputs[0].read_bytes())
    assert resumed.steps == 24
    steps_taken = [int(p.read_text().split()[1]) for p in (tmp_path / "resumed").glob("rank*")]
    assert steps_taken == [24 - step] * 2, "the second run did not start at the checkpoint"
    unbroken = run_training(WorkerSpec(TINY, _train(epochs=6), TASK))
    for name, tensor in unbroken.best_state.items():
        assert torch.allclose(resumed.best_state[name], tensor, atol=WEIGHT_ATOL), name


class TwoNodes:
    """Two agent processes, node_rank 0 and 1, each in its own process group (killed on exit)."""

    def __init__(self, folder: Path, spec: WorkerSpec) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.outputs = [folder / f"node{rank}.pt" for rank in (0, 1)]
        port = free_port()
        self.config = {
            "nnodes": 2,
            "nproc_per_node": 1,
            "rdzv_endpoint": f"127.0.0.1:{port}",
            "run_id": f"two-nodes-{port}",
            "join_timeout_s": 60,
            "cores": 1,
        }
        self.spec = json.dumps(spec.to_dict())
        self.agents: list[subprocess.Popen] = []

    def __enter__(self) -> TwoNodes:
        self._start(0)
        _wait_for_port(int(self.config["rdzv_endpoint"].rsplit(":", 1)[1]))  # node 0 hosts
        self._start(1)
        return self

    def _start(self, node_rank: int) -> None:
        config = json.dumps({**self.config, "node_rank": node_rank})
        args = [sys.executable, "-c", AGENT, self.spec, config, str(self.outputs[node_rank])]
        log = self.folder / f"node{node_rank}.err"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
        with log.open("w") as stderr:
            self.agents.append(
                subprocess.Popen(
                    args,
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=stderr,
                    stderr=stderr,
                    start_new_session=True,
                )
            )

    def wait(self) -> list[int | None]:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        for agent in self.agents:
            try:
                agent.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"the agents did not finish within {RUN_TIMEOUT_S} s\n{self.logs()}")
        return [agent.returncode for agent in self.agents]

    def kill_node1_agent_at(self, progress: Path, checkpoints: Path, step: int) -> None:
        """SIGKILL node 1's agent (not its worker) once some rank has taken ``step`` steps."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            if checkpoint_path(checkpoints).exists() and any(
                int(p.read_text().split()[1]) >= step for p in progress.glob("rank?")
            ):
                os.kill(self.agents[1].pid, signal.SIGKILL)
                return
            if any(agent.poll() is not None for agent in self.agents):
                break
            time.sleep(0.02)
        pytest.fail(f"no rank reached step {step}\n{self.logs()}")

    def node1_is_gone(self, timeout_s: float = 15.0) -> bool:
        """Node 1's process group is empty: its worker died with its agent."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.killpg(self.agents[1].pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False

    def stderr(self, node_rank: int) -> str:
        return (self.folder / f"node{node_rank}.err").read_text()

    def logs(self) -> str:
        return "\n".join(f"--- node {r} ---\n{self.stderr(r)[-3000:]}" for r in (0, 1))

    def __exit__(self, *exc_info) -> None:
        for agent in self.agents:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(agent.pid, signal.SIGKILL)
            agent.wait(timeout=30)


def _wait_for_port(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"node 0's agent did not open the rendezvous port {port} in {timeout_s} s")
