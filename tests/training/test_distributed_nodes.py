"""Several machines, without starting any: `pretrain.distributed` reaches the launcher, bad
settings are refused by name, and a lost node leads the one-line error."""

from __future__ import annotations

import numpy as np
import pytest

from clue_pipeline.config import parse_pretrain
from clue_pipeline.models.encoders import EncoderConfig
from clue_pipeline.tasks import pretraining
from clue_pipeline.tasks.pretraining import PretrainJob, run_job
from clue_pipeline.training import DistributedConfig, TrainConfig
from clue_pipeline.training.distributed import describe_worker_failure
from clue_pipeline.training.peers import LOST_MARK, Member, describe_stopped

TWO_NODES = {"nnodes": 2, "node_rank": 1, "rdzv_endpoint": "10.0.0.5:29400"}


def _distributed(block: dict):
    """``pretrain.distributed`` parsed as `kedro run` parses it."""
    return parse_pretrain({"train": {"epochs": 1, "batch_size": 4}, "distributed": block})


class _Stop(Exception):
    pass


def _job(seed: int) -> PretrainJob:
    tokens = np.random.default_rng(seed).integers(3, 20, size=(8, 6))
    encoder = EncoderConfig(num_items=20, max_len=5, hidden=8, blocks=1, heads=1)
    return PretrainJob("mip", tokens, encoder, TrainConfig(epochs=1, batch_size=4))


def test_kedro_parameters_reach_the_launcher_with_one_rendezvous_per_job(monkeypatch):
    seen: list[DistributedConfig] = []

    def launcher(spec, config):
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(pretraining, "run_training", launcher)
    settings = _distributed(TWO_NODES).distributed
    for job in (_job(0), _job(0), _job(1)):
        with pytest.raises(_Stop):
            run_job(job, distributed=settings)
    first, same, other = seen
    assert (first.nnodes, first.node_rank, first.rdzv_endpoint) == (2, 1, "10.0.0.5:29400")
    assert first.join_timeout_s == settings.join_timeout_s and first.max_restarts == 0
    assert first.run_id.startswith(f"{settings.rdzv_id}-")
    assert same.run_id == first.run_id, "every machine derives the same id from the same job"
    assert other.run_id != first.run_id, "successive jobs meet in their own rendezvous"
    assert not first.in_process

    with pytest.raises(_Stop):
        run_job(_job(0), distributed=_distributed({}).distributed)
    assert seen[-1].in_process and seen[-1].run_id is None


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"nnodes": 2}, r"nnodes = 2 needs rdzv_endpoint = 'host:port'"),
        ({"nnodes": 2, "node_rank": 2, "rdzv_endpoint": "h:1"}, r"node_rank = 2: expected 0 to"),
        ({"nnodes": 0}, r"nnodes = 0: expected a positive integer"),
        ({"max_restarts": -1}, r"max_restarts = -1"),
        ({"nodes": 2}, r"unknown parameter\(s\) \['nodes'\]"),
    ],
)
def test_bad_distributed_settings_are_refused_by_name(given, message):
    with pytest.raises(ValueError, match=rf"pretrain.distributed.*{message}"):
        _distributed(given)


def test_the_launcher_config_checks_itself():
    with pytest.raises(ValueError, match="node_rank=3 is invalid"):
        DistributedConfig(nnodes=2, node_rank=3, rdzv_endpoint="h:1")
    with pytest.raises(ValueError, match="nnodes=2 needs rdzv_endpoint"):
        DistributedConfig(nnodes=2)


class _Failure:
    """torch elastic's ProcessFailure, the parts the message reads."""

    def __init__(self, exitcode: int, message: str = "", pid: int = 7) -> None:
        self.exitcode, self.message, self.pid = exitcode, {"message": message}, pid

    def signal_name(self) -> str:
        return {-9: "SIGKILL", -15: "SIGTERM"}[self.exitcode]


def test_a_lost_node_leads_the_one_line_error():
    layout = [Member(0, 0, "a", 10), Member(0, 0, "a", 11), Member(1, 1, "b", 20)]
    lost = describe_stopped(layout, lost=[2], failed={})
    assert lost == "node_rank 1 (host b, rank 2) was lost: its workers stopped answering"
    survivor = f"Traceback ...\nPeerLostError: {LOST_MARK}{lost}"
    failures = {1: _Failure(-15), 0: _Failure(1, survivor)}  # the agent ended rank 1 after
    text = describe_worker_failure(failures, TrainConfig(epochs=1, batch_size=4))
    assert text == (
        f"distributed training stopped: {lost}. "
        "No checkpoint_dir was set, so a new run starts from the beginning."
    )
    killed = {0: _Failure(1, survivor), 1: _Failure(-9)}  # a local cause stays named, first
    text = describe_worker_failure(killed, TrainConfig(epochs=1, batch_size=4))
    assert text.startswith("distributed training stopped: worker rank 1 (pid 7) was killed by ")
    assert f"SIGKILL; {lost}. " in text


def test_failed_ranks_are_named_only_when_no_node_was_lost():
    layout = [Member(0, 0, "a", 10), Member(1, 1, "b", 20), Member(1, 1, "b", 21)]
    assert describe_stopped(layout, lost=[2], failed={1: "ValueError: x"}) == (
        "rank 2 on node_rank 1 (host b) stopped answering"
    )
    assert describe_stopped(layout, lost=[], failed={1: "ValueError: x"}) == (
        "rank 1 on node_rank 1 (host b) failed: ValueError: x"
    )
    assert describe_stopped(layout, lost=[], failed={}) == ""
