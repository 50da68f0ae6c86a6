"""The one training loop shared by pre-training and every fine-tuning task.

A task is a model, a dataset of tensors and a ``step_fn`` that turns one batch into a loss; the loop
owns everything else (batch order, optimiser, mixed precision, checkpoints, resume, early stopping,
distributed sharding), so each of those is written and tested once. Batch order is a seeded
permutation per epoch, so a run killed mid-epoch resumes on exactly the batches it had not yet seen
and reaches bit-identical weights on CPU.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from clue_pipeline.training.checkpoint import (
    capture_rng_state,
    checkpoint_path,
    load_latest_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

Batch = torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor]
StepFn = Callable[[nn.Module, Any, torch.Generator], tuple[torch.Tensor, Mapping[str, Any]]]
EvalFn = Callable[[nn.Module], Mapping[str, float]]

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
LR_SCALE_BATCH = 256  # the linear scaling rule's reference batch: lr x batch_size / 256
DEVICES = ("auto", "cpu", "cuda")
CHECKPOINT_FORMAT = 1

logger = logging.getLogger(__name__)
# One record per finished epoch, carrying its history entry (``EPOCH_ENTRY``), for listeners
# such as the MLflow hook's live child-run metrics (``listen_to_epochs``). Never printed: the
# epoch line is ``logger``'s.
epoch_records = logging.getLogger(f"{__name__}.epochs")
EPOCH_ENTRY = "epoch_entry"
EPOCH_PART = "epoch_part"


def listen_to_epochs(handler: logging.Handler) -> None:
    """Sends every epoch's record to ``handler`` and to no console.

    Set at each call, not once at import: a logging configuration applied later (Kedro's
    ``conf/logging.yml`` configures ``clue_pipeline``) resets its child loggers to propagate.
    """
    epoch_records.propagate = False
    epoch_records.setLevel(logging.INFO)
    epoch_records.addHandler(handler)


def stop_listening_to_epochs(handler: logging.Handler) -> None:
    epoch_records.removeHandler(handler)


def announce_part(name: str) -> None:
    """Tells epoch listeners that the epochs that follow train ``name`` (one of several fits)."""
    if epoch_records.handlers:
        epoch_records.info("part %s", name, extra={EPOCH_PART: name})


@dataclass
class TrainConfig:
    """Everything the loop needs; ``batch_size`` is the global batch across all processes."""

    epochs: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD only
    # Per-step learning-rate schedule after a linear warm-up: `constant` or `cosine` decay
    # to 0 at the last step (SimSiam's recipe).
    lr_schedule: str = "constant"
    warmup_epochs: int = 0
    # True: the lr used is lr x batch_size / 256 (the linear scaling rule, as SimSiam).
    lr_scale_batch: bool = False
    # Parameter-name prefixes (e.g. ["predictor"]) trained at the (scaled) base lr, outside
    # the schedule: SimSiam keeps its predictor's lr fixed.
    fixed_lr_params: list[str] = field(default_factory=list)
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    bf16_cpu: bool = False
    checkpoint_dir: str | None = None
    checkpoint_every_steps: int | None = None
    resume: bool = False
    patience: int | None = None
    # Early stopping waits for this many epochs: a run on a small share of the users takes
    # few steps per epoch and can sit on a popularity plateau for longer than its patience.
    min_epochs: int = 0
    monitor: str | None = None
    progress: bool = False
    progress_every_steps: int = 20
    drop_last: bool = True
    # Batches of similar length (the first tensor of the dataset holds left-padded tokens):
    # with short sequences most of a random batch is padding that a step cut to its longest
    # row skips. Rows are shuffled, cut into spans of `bucket_span` batches, sorted by length
    # within a span, and the batches shuffled again, so every epoch still sees a new mix.
    bucket_by_length: bool = False
    bucket_span: int = 50

    def __post_init__(self) -> None:
        _require(self.epochs >= 0, "epochs", self.epochs, "an integer >= 0")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        _require(self.lr > 0, "lr", self.lr, "a float > 0")
        _require(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a float >= 0")
        _require(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, f"one of {OPTIMIZERS}")
        _require(0 <= self.momentum < 1, "momentum", self.momentum, "a float in [0, 1)")
        _require(
            self.lr_schedule in LR_SCHEDULES,
            "lr_schedule",
            self.lr_schedule,
            f"one of {LR_SCHEDULES}",
        )
        _require(self.warmup_epochs >= 0, "warmup_epochs", self.warmup_epochs, "an integer >= 0")
        _require(self.device in DEVICES, "device", self.device, f"one of {DEVICES}")
        _require(
            self.grad_clip is None or self.grad_clip > 0,
            "grad_clip",
            self.grad_clip,
            "null or a max-norm > 0",
        )
        _require(
            self.checkpoint_every_steps is None or self.checkpoint_every_steps >= 1,
            "checkpoint_every_steps",
            self.checkpoint_every_steps,
            "null or an integer >= 1",
        )
        _require(
            self.patience is None or self.patience >= 1,
            "patience",
            self.patience,
            "null or an integer >= 1",
        )
        _require(
            0 <= self.min_epochs <= self.epochs,
            "min_epochs",
            self.min_epochs,
            f"an integer in [0, epochs = {self.epochs}]",
        )
        _require(
            self.patience is None or self.monitor is not None,
            "monitor",
            self.monitor,
            "a metric name returned by validate_fn when patience is set",
        )
        _require(
            self.progress_every_steps >= 1,
            "progress_every_steps",
            self.progress_every_steps,
            "an integer >= 1",
        )


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
class TrainResult:
    """``best_state`` is a CPU copy of the weights at ``best_epoch`` (the last epoch without a monitor)."""

    best_state: dict[str, torch.Tensor] | None
    history: list[dict[str, Any]]
    best_epoch: int
    steps: int
    step_losses: list[float] = field(default_factory=list)


def fit(
    model: nn.Module,
    dataset: Batch,
    step_fn: StepFn,
    config: TrainConfig,
    validate_fn: EvalFn | None = None,
    epoch_metrics_fn: EvalFn | None = None,
    distributed: DistributedContext | None = None,
    lengths: torch.Tensor | None = None,
) -> TrainResult:
    """Train ``model`` in place and return the history and the best weights.

    ``step_fn(model, batch, generator)`` returns ``(loss, metrics)``; metric values may be floats or
    0-d tensors (tensors avoid a device sync per step). It must call ``model(...)`` itself so that a
    DistributedDataParallel wrapper sees the forward pass. ``validate_fn`` and ``epoch_metrics_fn``
    get the bare module in eval mode under ``torch.no_grad`` after each epoch; with ``distributed``
    they run on rank 0 only and their results are broadcast, so every rank stops at the same epoch.
    ``lengths`` (one per row) are what ``bucket_by_length`` groups by when the dataset's first
    tensor is not a left-padded token matrix (e.g. rows cut from a flat array per batch).
    """
    ctx = distributed or DistributedContext()
    module = model.module if isinstance(model, DistributedDataParallel) else model
    if config.batch_size % ctx.world_size:
        raise ValueError(
            f"TrainConfig.batch_size={config.batch_size} must be divisible by the world size "
            f"{ctx.world_size}: it is the global batch, split evenly across processes"
        )
    device = resolve_device(config.device, ctx.local_rank)
    module.to(device)
    num_rows = dataset_length(dataset)
    steps_per_epoch = _steps_per_epoch(num_rows, config.batch_size, config.drop_last)
    if not config.bucket_by_length:
        lengths = None
    elif lengths is None:
        lengths = (_tensors_of(dataset)[0] != 0).sum(dim=1)
    elif len(lengths) != num_rows:
        raise ValueError(f"fit(lengths=...): {len(lengths)} lengths for {num_rows} rows")

    _seed_everything(config.seed + ctx.rank)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed + ctx.rank)
    optimizer = build_optimizer(param_groups(module, config.fixed_lr_params), config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    state = _RunState()
    ckpt_file = checkpoint_path(config.checkpoint_dir) if config.checkpoint_dir else None
    ckpt = load_latest_checkpoint(ckpt_file) if config.resume and ckpt_file else None
    if ckpt is not None:
        state = _restore(ckpt, module, optimizer, scheduler, generator, ctx, device)
    if state.finished:
        return state.result()

    autocast_on = bf16_autocast(config, device)
    for epoch in range(state.epoch, config.epochs):
        order = epoch_permutation(num_rows, config.seed + epoch)
        if lengths is not None:
            order = bucketed_order(
                order, lengths, config.batch_size, config.bucket_span, config.seed + epoch
            )
        model.train()
        report = config.progress and ctx.is_main
        log_epoch = report and not _stderr_is_terminal()  # a file: every bar frame a line
        bar = tqdm(
            total=steps_per_epoch,
            initial=state.step_in_epoch,
            desc=f"epoch {epoch}",
            disable=not report or log_epoch,
            leave=False,
        )
        started = time.perf_counter()
        for step in range(state.step_in_epoch, steps_per_epoch):
            index = shard_indices(batch_indices(order, step, config.batch_size), ctx)
            batch = to_device(take(dataset, index), device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_on):
                loss, metrics = step_fn(model, batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()

            state.partial.add(loss, metrics, len(index) * ctx.world_size)
            state.global_step += 1
            state.step_in_epoch = step + 1
            if not bar.disable and state.global_step % config.progress_every_steps == 0:
                elapsed = state.partial.elapsed + time.perf_counter() - started
                bar.set_postfix(
                    loss=f"{loss.item():.4f}", seq_s=f"{state.partial.sequences / elapsed:.0f}"
                )
            bar.update(1)
            if (
                ckpt_file is not None
                and config.checkpoint_every_steps
                and state.global_step % config.checkpoint_every_steps == 0
                and state.step_in_epoch < steps_per_epoch
            ):
                state.partial.elapsed += time.perf_counter() - started
                started = time.perf_counter()
                _save(ckpt_file, state, module, optimizer, scheduler, generator, ctx, epoch)
        bar.close()
        state.partial.elapsed += time.perf_counter() - started

        entry = _epoch_entry(epoch, state.partial, ctx)
        state.step_losses.extend(entry.pop("step_losses"))
        entry.update(_evaluate(module, validate_fn, epoch_metrics_fn, ctx))
        state.history.append(entry)
        _track_best(state, entry, module, epoch, config.monitor)
        if log_epoch:
            logger.info(epoch_line(entry, config.epochs, config.monitor))
        if ctx.is_main and epoch_records.handlers:
            epoch_records.info("epoch %d", epoch, extra={EPOCH_ENTRY: dict(entry)})
        stop = (
            config.patience is not None
            and state.stale_epochs >= config.patience
            and epoch + 1 >= config.min_epochs
        )
        state.epoch, state.step_in_epoch = epoch + 1, 0
        state.partial = _EpochAccumulator()
        state.finished = stop or state.epoch >= config.epochs
        if ckpt_file is not None:
            _save(ckpt_file, state, module, optimizer, scheduler, generator, ctx, state.epoch)
        if stop:
            break
    state.finished = True
    return state.result()


def epoch_line(entry: Mapping[str, Any], epochs: int, monitor: str | None) -> str:
    """``epoch 3/15: loss 4.1234, 1520 seq/s, ndcg@10 0.0423``: the log's line per epoch."""
    line = (
        f"epoch {entry['epoch'] + 1}/{epochs}: loss {entry['loss']:.4f}, "
        f"{entry['sequences_per_s']:.0f} seq/s"
    )
    if monitor is not None and monitor in entry:
        line += f", {monitor} {float(entry[monitor]):.4f}"
    return line


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present; under distributed each process takes its local GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("TrainConfig.device='cuda' but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(device)


def bf16_autocast(config: TrainConfig, device: torch.device) -> bool:
    """Whether steps run under bf16 autocast: on CUDA when ``bf16``, on CPU only when also
    ``bf16_cpu`` (CPUs without bf16 units emulate it, slower than fp32)."""
    return config.bf16 and (device.type == "cuda" or config.bf16_cpu)


def build_optimizer(params: Any, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser at the base lr (scaled by batch / 256 when ``lr_scale_batch``).

    ``params`` are parameters or param groups; a group may carry ``scheduled: False``
    (see :func:`param_groups`), which :func:`build_scheduler` leaves at the base lr.
    Adam runs as one fused kernel where every parameter allows it: the same update as the
    per-tensor loop, without its per-parameter kernel launches.
    """
    lr = base_lr(config)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    params = list(params)
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer_class(
        params, lr=lr, weight_decay=config.weight_decay, fused=_fusable(params) or None
    )


def _fusable(params: list) -> bool:
    """Whether fused Adam takes these parameters: floating point, on CPU or CUDA."""
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    return bool(tensors) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors
    )


def base_lr(config: TrainConfig) -> float:
    """``lr``, or ``lr x batch_size / 256`` under the linear scaling rule."""
    return config.lr * config.batch_size / LR_SCALE_BATCH if config.lr_scale_batch else config.lr


def param_groups(module: nn.Module, fixed_lr: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One scheduled group, plus one ``scheduled: False`` group of the parameters under ``fixed_lr``.

    A prefix matches a parameter name or a dotted parent of it (``predictor`` matches
    ``predictor.0.weight``); a prefix that matches nothing is an error, so a typo in
    ``conf/`` cannot silently schedule the predictor.
    """
    named = list(module.named_parameters())
    prefixes = list(fixed_lr)
    matched = {prefix: False for prefix in prefixes}
    scheduled, fixed = [], []
    for name, parameter in named:
        hits = [p for p in prefixes if name == p or name.startswith(p + ".")]
        for prefix in hits:
            matched[prefix] = True
        (fixed if hits else scheduled).append(parameter)
    missing = [prefix for prefix, hit in matched.items() if not hit]
    if missing:
        raise ValueError(
            f"TrainConfig.fixed_lr_params={prefixes!r}: {missing} match no parameter of "
            f"{type(module).__name__}; expected prefixes of its parameter names"
        )
    groups = [{"params": scheduled, "scheduled": True}]
    if fixed:
        groups.append({"params": fixed, "scheduled": False})
    return groups


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step factor of the base lr: linear warm-up, then constant or cosine decay to 0.

    Stepped once per optimiser step; its state is checkpointed with the optimiser's, so a
    resumed run continues on the same curve. Groups marked ``scheduled: False`` stay at 1.
    """
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(config.warmup_epochs * steps_per_epoch, total)
    cosine = config.lr_schedule == "cosine"

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if not cosine:
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    def constant(step: int) -> float:
        return 1.0

    lambdas = [
        factor if group.get("scheduled", True) else constant for group in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def epoch_permutation(num_rows: int, seed: int) -> torch.Tensor:
    """Seeded per epoch (``seed + epoch``) so that any step's batch can be recomputed on resume."""
    return torch.randperm(num_rows, generator=torch.Generator().manual_seed(seed))


def bucketed_order(
    order: torch.Tensor, lengths: torch.Tensor, batch_size: int, span: int, seed: int
) -> torch.Tensor:
    """``order`` regrouped into batches of similar length, batches in a seeded random order.

    Within each span of ``span`` batches the rows are sorted by length; the full batches of
    all spans are then shuffled and the ragged tail (if any) stays last, where ``drop_last``
    drops it. Seeded, so a resumed run recomputes the same batches.
    """
    chunk = batch_size * max(1, span)
    regrouped = torch.cat(
        [part[torch.argsort(lengths[part], stable=True)] for part in torch.split(order, chunk)]
    )
    full = len(regrouped) // batch_size
    generator = torch.Generator().manual_seed(seed)
    batches = torch.randperm(full, generator=generator)
    head = regrouped[: full * batch_size].view(full, batch_size)[batches].reshape(-1)
    return torch.cat([head, regrouped[full * batch_size :]])


def batch_indices(order: torch.Tensor, step: int, batch_size: int) -> torch.Tensor:
    return order[step * batch_size : (step + 1) * batch_size]


def shard_indices(index: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """This rank's contiguous share of the global batch; a ragged tail is cut to a multiple of ranks."""
    if ctx.world_size == 1:
        return index
    per_rank = len(index) // ctx.world_size
    return index[ctx.rank * per_rank : (ctx.rank + 1) * per_rank]


def dataset_length(dataset: Batch) -> int:
    """Number of rows of a tensor, a sequence of tensors or a mapping of tensors (all equal)."""
    tensors = _tensors_of(dataset)
    lengths = {len(tensor) for tensor in tensors}
    if len(lengths) != 1:
        raise ValueError(
            f"fit(dataset=...): tensors have different numbers of rows {sorted(lengths)}; "
            "expected every tensor to have the same first dimension"
        )
    return lengths.pop()


def take(dataset: Batch, index: torch.Tensor) -> Batch:
    """Rows ``index`` of every tensor, keeping the dataset's structure."""
    if isinstance(dataset, torch.Tensor):
        return dataset[index.to(dataset.device)]
    if isinstance(dataset, Mapping):
        return {key: value[index.to(value.device)] for key, value in dataset.items()}
    return type(dataset)(value[index.to(value.device)] for value in dataset)


def to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
    return type(batch)(value.to(device, non_blocking=True) for value in batch)


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """A deep copy on CPU, so later optimiser steps cannot change the kept weights."""
    return {key: value.detach().to("cpu", copy=True) for key, value in module.state_dict().items()}


@dataclass
class _EpochAccumulator:
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
    def from_state(cls, state: Mapping[str, Any], device: torch.device) -> _EpochAccumulator:
        return cls(
            losses=list(state["losses"].to(device)),
            metrics={name: list(values.to(device)) for name, values in state["metrics"].items()},
            sequences=int(state["sequences"]),
            elapsed=float(state["elapsed"]),
        )


@dataclass
class _RunState:
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
    partial: _EpochAccumulator = field(default_factory=_EpochAccumulator)

    def result(self) -> TrainResult:
        return TrainResult(
            best_state=self.best_state,
            history=self.history,
            best_epoch=self.best_epoch,
            steps=self.global_step,
            step_losses=self.step_losses,
        )


def _epoch_entry(epoch: int, acc: _EpochAccumulator, ctx: DistributedContext) -> dict[str, Any]:
    """Means over the epoch's steps, averaged across ranks (equal shards, so the global mean)."""
    names = sorted(acc.metrics)
    if not acc.losses:
        raise ValueError(f"epoch {epoch} ran no step: the dataset is smaller than one batch")
    rows = torch.stack([torch.stack(acc.losses)] + [torch.stack(acc.metrics[n]) for n in names])
    if ctx.world_size > 1:
        torch.distributed.all_reduce(rows)
        rows = rows / ctx.world_size
    rows = rows.double().cpu()
    entry: dict[str, Any] = {"epoch": epoch, "loss": float(rows[0].mean())}
    entry.update({name: float(rows[i + 1].mean()) for i, name in enumerate(names)})
    entry["sequences_per_s"] = acc.sequences / max(acc.elapsed, 1e-9)
    entry["wall_s"] = acc.elapsed
    entry["step_losses"] = rows[0].tolist()
    return entry


def _evaluate(
    module: nn.Module,
    validate_fn: EvalFn | None,
    epoch_metrics_fn: EvalFn | None,
    ctx: DistributedContext,
) -> dict[str, float]:
    if validate_fn is None and epoch_metrics_fn is None:
        return {}
    results: dict[str, float] = {}
    if ctx.is_main:
        was_training = module.training
        module.eval()
        with torch.no_grad():
            for fn in (epoch_metrics_fn, validate_fn):
                if fn is not None:
                    results.update({k: float(v) for k, v in fn(module).items()})
        module.train(was_training)
    if ctx.world_size > 1:
        box = [results]
        torch.distributed.broadcast_object_list(box, src=0)
        results = box[0]
    return results


def _track_best(
    state: _RunState, entry: dict[str, Any], module: nn.Module, epoch: int, monitor: str | None
) -> None:
    if monitor is None:
        state.best_state, state.best_epoch, state.stale_epochs = cpu_state_dict(module), epoch, 0
        return
    if monitor not in entry:
        raise ValueError(
            f"TrainConfig.monitor={monitor!r} is not among the epoch's metrics "
            f"{sorted(k for k in entry if k != 'epoch')}; expected a key returned by validate_fn"
        )
    value = float(entry[monitor])
    if state.best_metric is None or value > state.best_metric:
        state.best_metric, state.best_epoch, state.stale_epochs = value, epoch, 0
        state.best_state = cpu_state_dict(module)
    else:
        state.stale_epochs += 1


def _save(
    path: Any,
    state: _RunState,
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
        },
        keep_previous=True,
    )


def _restore(
    ckpt: dict[str, Any],
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    ctx: DistributedContext,
    device: torch.device,
) -> _RunState:
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
        _seed_everything(reseed)
        generator.manual_seed(reseed)
    return _RunState(
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
        partial=_EpochAccumulator.from_state(ckpt["partial"], device),
    )


def _steps_per_epoch(num_rows: int, batch_size: int, drop_last: bool) -> int:
    steps = num_rows // batch_size if drop_last else math.ceil(num_rows / batch_size)
    if steps == 0:
        raise ValueError(
            f"fit: the dataset has {num_rows} rows, fewer than TrainConfig.batch_size={batch_size} "
            "with drop_last=True; expected at least one full batch"
        )
    return steps


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _stack_cpu(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(values).cpu() if values else torch.empty(0)


def _tensors_of(dataset: Batch) -> list[torch.Tensor]:
    if isinstance(dataset, torch.Tensor):
        tensors = [dataset]
    elif isinstance(dataset, Mapping):
        tensors = list(dataset.values())
    elif isinstance(dataset, Sequence):
        tensors = list(dataset)
    else:
        tensors = []
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError(
            f"fit(dataset=...): got {type(dataset).__name__}; expected a tensor, or a tuple/list "
            "or dict of tensors sharing their first dimension"
        )
    return tensors


def _require(ok: bool, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ValueError(f"TrainConfig.{name}={value!r} is invalid; expected {expected}")


__all__ = [
    "Batch",
    "DistributedContext",
    "StepFn",
    "TrainConfig",
    "TrainResult",
    "base_lr",
    "batch_indices",
    "build_optimizer",
    "build_scheduler",
    "cpu_state_dict",
    "dataset_length",
    "epoch_permutation",
    "fit",
    "param_groups",
    "resolve_device",
    "shard_indices",
    "take",
    "to_device",
]
