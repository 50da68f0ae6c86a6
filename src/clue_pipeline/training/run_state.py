"""What a run carries from step to step, and its save to / restore from a checkpoint: a run
killed mid-epoch resumes on exactly the batches it had not yet seen."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from clue_pipeline.training.checkpoint import (
    capture_rng_state,
    restore_rng_state,
    save_checkpoint,
)

CHECKPOINT_FORMAT = 1


@dataclass
class TrainResult:
    """``best_state`` is a CPU copy of the weights at ``best_epoch`` (the last epoch without a monitor).

    ``also_*``: a second selection, by ``fit(also_monitor=...)``'s key, kept beside the first
    but never deciding when to stop. ``also_since_epoch`` is the first epoch it saw: above 0
    when the run resumed from a checkpoint written without it (or for another key).
    """

    best_state: dict[str, torch.Tensor] | None
    history: list[dict[str, Any]]
    best_epoch: int
    steps: int
    step_losses: list[float] = field(default_factory=list)
    also_monitor: str | None = None
    also_best_state: dict[str, torch.Tensor] | None = None
    also_best_metric: float | None = None
    also_best_epoch: int = -1
    also_since_epoch: int = 0


@dataclass
class DistributedContext:
    """Who this process is in a process group that is already initialised."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass
class EpochAccumulator:
    """Per-step values kept as tensors on the device: one sync per epoch instead of per step."""

    losses: list[torch.Tensor] = field(default_factory=list)
    metrics: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    sequences: int = 0
    elapsed: float = 0.0

    def add(self, loss: torch.Tensor, metrics: Mapping[str, Any], sequences: int) -> None:
        self.losses.append(loss.detach().float())
        for name, value in metrics.items():
            tensor = torch.as_tensor(value.detach() if torch.is_tensor(value) else value)
            self.metrics.setdefault(name, []).append(tensor.to(loss.device, torch.float32))
        self.sequences += sequences

    def to_state(self) -> dict[str, Any]:
        return {
            "losses": _stack_cpu(self.losses),
            "metrics": {name: _stack_cpu(values) for name, values in self.metrics.items()},
            "sequences": self.sequences,
            "elapsed": self.elapsed,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], device: torch.device) -> EpochAccumulator:
        return cls(
            losses=list(state["losses"].to(device)),
            metrics={name: list(values.to(device)) for name, values in state["metrics"].items()},
            sequences=int(state["sequences"]),
            elapsed=float(state["elapsed"]),
        )


@dataclass
class RunState:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_metric: float | None = None
    best_epoch: int = -1
    stale_epochs: int = 0
    finished: bool = False
    partial: EpochAccumulator = field(default_factory=EpochAccumulator)
    also_monitor: str | None = None
    also_best_state: dict[str, torch.Tensor] | None = None
    also_best_metric: float | None = None
    also_best_epoch: int = -1
    also_since_epoch: int = 0

    def result(self) -> TrainResult:
        return TrainResult(
            best_state=self.best_state,
            history=self.history,
            best_epoch=self.best_epoch,
            steps=self.global_step,
            step_losses=self.step_losses,
            **{name: getattr(self, name) for name in ALSO_FIELDS},
        )

    def track_also(
        self, key: str | None, value: float | None, epoch: int, module: nn.Module
    ) -> None:
        """The second selection: a CPU copy of the weights at ``key``'s best epoch so far.

        A run resumed under another key (or from a checkpoint without one) starts it afresh,
        from ``epoch``: the kept weights and metric belong to the old key.
        """
        if key != self.also_monitor:
            self.also_monitor, self.also_since_epoch = key, epoch
            self.also_best_state, self.also_best_metric, self.also_best_epoch = None, None, -1
        if key is None or value is None:
            return
        if self.also_best_metric is None or value > self.also_best_metric:
            self.also_best_metric, self.also_best_epoch = value, epoch
            self.also_best_state = cpu_state_dict(module)


# What RunState and TrainResult share of the second selection, and a checkpoint stores.
ALSO_FIELDS = (
    "also_monitor",
    "also_best_state",
    "also_best_metric",
    "also_best_epoch",
    "also_since_epoch",
)


def save_run(
    path: Any,
    state: RunState,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    ctx: DistributedContext,
    epoch: int,
) -> None:
    """Every rank gives its random states (a collective), rank 0 writes the file."""
    rng = capture_rng_state(generator)
    rng_per_rank = [rng]
    if ctx.world_size > 1:
        rng_per_rank = [None] * ctx.world_size
        torch.distributed.all_gather_object(rng_per_rank, rng)
    if not ctx.is_main:
        return
    save_checkpoint(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "step_in_epoch": state.step_in_epoch,
            "global_step": state.global_step,
            "world_size": ctx.world_size,
            "rng": rng_per_rank,
            "history": state.history,
            "step_losses": state.step_losses,
            "best_state": state.best_state,
            "best_metric": state.best_metric,
            "best_epoch": state.best_epoch,
            "stale_epochs": state.stale_epochs,
            "finished": state.finished,
            "partial": state.partial.to_state(),
            **{name: getattr(state, name) for name in ALSO_FIELDS},
        },
        keep_previous=True,
    )


def restore_run(
    ckpt: dict[str, Any],
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    ctx: DistributedContext,
    device: torch.device,
) -> RunState:
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint format {ckpt.get('format')!r} is not {CHECKPOINT_FORMAT}; "
            "expected a checkpoint written by clue_pipeline.training.fit"
        )
    module.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if "scheduler" in ckpt:  # checkpoints older than schedules ran at a constant lr
        scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt["world_size"] == ctx.world_size:
        restore_rng_state(ckpt["rng"][ctx.rank], generator)
    else:
        # A different world size cannot replay the old per-rank streams; reseed reproducibly.
        reseed = ckpt["global_step"] * ctx.world_size + ctx.rank
        seed_everything(reseed)
        generator.manual_seed(reseed)
    return RunState(
        epoch=int(ckpt["epoch"]),
        step_in_epoch=int(ckpt["step_in_epoch"]),
        global_step=int(ckpt["global_step"]),
        history=list(ckpt["history"]),
        step_losses=list(ckpt["step_losses"]),
        best_state=ckpt["best_state"],
        best_metric=ckpt["best_metric"],
        best_epoch=int(ckpt["best_epoch"]),
        stale_epochs=int(ckpt["stale_epochs"]),
        finished=bool(ckpt["finished"]),
        partial=EpochAccumulator.from_state(ckpt["partial"], device),
        **_also_fields(ckpt),
    )


def _also_fields(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The second selection a checkpoint holds; one written before it had one starts it at the
    checkpoint's epoch (``also_since_epoch``): the earlier epochs' weights are gone."""
    if "also_monitor" not in ckpt:
        return {"also_since_epoch": int(ckpt["epoch"])}
    fields = {name: ckpt[name] for name in ALSO_FIELDS}
    fields["also_best_epoch"] = int(fields["also_best_epoch"])
    fields["also_since_epoch"] = int(fields["also_since_epoch"])
    return fields


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A deep copy on CPU, so later optimiser steps cannot change the kept weights."""
    return {key: value.detach().to("cpu", copy=True) for key, value in module.state_dict().items()}


def _stack_cpu(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(values).cpu() if values else torch.empty(0)
