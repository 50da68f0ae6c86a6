"""Who the ranks of a distributed run are, and which of them stopped when a collective fails.

A worker that dies with its machine (or its agent) takes no part in the others' error handling:
they only see gloo's "Connection reset by peer", which names a port, not a node. So every rank
beats a counter in the run's store; when a rank's training raises, it posts its error and watches
the counters for a moment. Ranks whose counter stood still are gone; those that posted no error
were lost with their node, and the error names that node (``node_rank``, host).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist

from clue_pipeline.training.checkpoint import checkpoint_path, load_latest_checkpoint
from clue_pipeline.training.loop import DistributedContext, TrainConfig

HEARTBEAT_S = 0.5
ROLL_CALL_S = 2.0  # four beats: a live rank, even a busy one, moves its counter in that time
STORE_TIMEOUT_S = 5
# Leads a survivor's error, so the launcher can put the lost node first in its one-line message.
LOST_MARK = "distributed peers stopped: "


class PeerLostError(RuntimeError):
    """A collective failed because other ranks stopped: the message names their nodes."""


@dataclass(frozen=True)
class Member:
    """One rank as the others see it: the machine it runs on and its process."""

    node_rank: int  # as the user numbered the machine (pretrain.distributed.node_rank)
    group_rank: int  # as the rendezvous numbered it
    host: str
    pid: int


class PeerWatch:
    """Heartbeats of every rank in the store; on a failure, names the ranks that stopped."""

    def __init__(self, ctx: DistributedContext, node_rank: int | None = None) -> None:
        self.ctx = ctx
        self.node_rank = node_rank
        self.layout: list[Member] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Learn the layout (a collective) and start beating; nothing to watch in a world of one."""
        if self.ctx.world_size == 1:
            return
        self.layout = gather_layout(self.node_rank)
        self._thread = threading.Thread(target=self._beat, name="peer-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=STORE_TIMEOUT_S)

    def explain(self, error: BaseException) -> None:
        """Raise :class:`PeerLostError` if other ranks stopped; return if none did (the error
        is this rank's own)."""
        if not self.layout:
            return
        try:
            lost, failed = self._roll_call(error)
        except Exception:  # the store went with the node hosting it: rank 0's
            host = self.layout[0]
            if host.group_rank == self.layout[self.ctx.rank].group_rank:
                return
            raise PeerLostError(
                f"{LOST_MARK}{_node(host, self.layout)} was lost (it hosted the run's store at "
                f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')})"
            ) from error
        text = describe_stopped(self.layout, lost, failed)
        if text:
            raise PeerLostError(LOST_MARK + text) from error

    def _store(self) -> dist.Store:
        store = dist.TCPStore(
            os.environ["MASTER_ADDR"],
            int(os.environ["MASTER_PORT"]),
            is_master=False,
            timeout=timedelta(seconds=STORE_TIMEOUT_S),
        )
        run = os.environ.get("TORCHELASTIC_RUN_ID", "")
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        return dist.PrefixStore(f"clue-peers/{run}/{attempt}/", store)

    def _beat(self) -> None:
        try:
            store = self._store()
            while not self._stopping.is_set():
                store.add(f"beat/{self.ctx.rank}", 1)
                self._stopping.wait(HEARTBEAT_S)
        except Exception:  # the store is gone; explain() finds that out itself
            return

    def _roll_call(self, error: BaseException) -> tuple[list[int], dict[int, str]]:
        """(ranks that stopped without a word, {rank: error} of ranks that stopped failing)."""
        store = self._store()
        store.set(f"error/{self.ctx.rank}", f"{type(error).__name__}: {error}".splitlines()[0])
        keys = [f"beat/{rank}" for rank in range(self.ctx.world_size)]
        before = [store.add(key, 0) for key in keys]
        time.sleep(ROLL_CALL_S)
        after = [store.add(key, 0) for key in keys]
        stopped = [
            r
            for r, (a, b) in enumerate(zip(before, after, strict=True))
            if a == b and r != self.ctx.rank
        ]
        failed = {
            r: store.get(f"error/{r}").decode() for r in stopped if store.check([f"error/{r}"])
        }
        return [r for r in stopped if r not in failed], failed


def describe_stopped(layout: list[Member], lost: list[int], failed: dict[int, str]) -> str:
    """``node_rank 1 (host h, rank 1) was lost: ...``; ranks that failed with an error are named
    only when none was lost (a lost node is the cause, the others' errors its echo)."""
    parts = []
    for node in sorted({m.node_rank for m in layout}):
        ranks = [r for r, m in enumerate(layout) if m.node_rank == node]
        gone = [r for r in ranks if r in lost]
        if gone == ranks:
            parts.append(
                f"{_node(layout[gone[0]], layout)} was lost: its workers stopped answering"
            )
        elif gone:
            parts.append(
                f"{_ranks(gone)} on node_rank {node} (host {layout[gone[0]].host}) stopped "
                "answering"
            )
    if not parts:
        parts = [
            f"rank {r} on node_rank {layout[r].node_rank} (host {layout[r].host}) failed: {text}"
            for r, text in sorted(failed.items())
        ]
    return "; ".join(parts)


def gather_layout(node_rank: int | None) -> list[Member]:
    """Every rank's :class:`Member` (a collective); two machines given one node_rank stop here."""
    group_rank = int(os.environ.get("GROUP_RANK", "0"))
    me = Member(
        group_rank if node_rank is None else node_rank,
        group_rank,
        socket.gethostname(),
        os.getpid(),
    )
    layout: list = [None] * dist.get_world_size()
    dist.all_gather_object(layout, me)
    claims: dict[int, set[tuple[int, str]]] = {}
    for member in layout:
        claims.setdefault(member.node_rank, set()).add((member.group_rank, member.host))
    for node, machines in claims.items():
        if len(machines) > 1:
            hosts = ", ".join(sorted(host for _, host in machines))
            raise ValueError(
                f"node_rank {node} was given to {len(machines)} machines ({hosts}): give each "
                "machine its own pretrain.distributed.node_rank, 0 to nnodes - 1"
            )
    return layout


def check_same_checkpoint(train: TrainConfig, layout: list[Member]) -> None:
    """On several machines every rank resumes from ``checkpoint_dir``, which rank 0 alone
    writes: refuse to start when the machines see different checkpoints (a collective)."""
    if not train.resume or not train.checkpoint_dir or len({m.group_rank for m in layout}) < 2:
        return
    seen = None
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        try:
            state = load_latest_checkpoint(checkpoint_path(train.checkpoint_dir))
            seen = f"step {state['global_step']}" if state else "no checkpoint"
        except ValueError:
            seen = "an unreadable checkpoint"
    views: list = [None] * dist.get_world_size()
    dist.all_gather_object(views, seen)
    by_node = {layout[r].node_rank: view for r, view in enumerate(views) if view is not None}
    if len(set(by_node.values())) > 1:
        sights = ", ".join(f"node_rank {n} sees {view}" for n, view in sorted(by_node.items()))
        raise ValueError(
            f"checkpoint_dir {train.checkpoint_dir}: {sights}; with several machines it must "
            "be a folder they share (rank 0 writes it, every rank resumes from it)"
        )


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its agent dies: an agent killed outright cleans
    nothing up, and an orphaned worker would keep training while its peers wait."""
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" not in os.environ:
        return  # not started by an agent (a test calling the worker in-process)
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the agent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def _node(member: Member, layout: list[Member]) -> str:
    ranks = [r for r, m in enumerate(layout) if m.node_rank == member.node_rank]
    return f"node_rank {member.node_rank} (host {member.host}, {_ranks(ranks)})"


def _ranks(ranks: list[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))
