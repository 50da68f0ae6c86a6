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
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from clue_pipeline.config.training import DEVICES, LR_SCHEDULES, OPTIMIZERS, TrainConfig
from clue_pipeline.training.checkpoint import checkpoint_path, load_latest_checkpoint
from clue_pipeline.training.length_batching import bucketed_order
from clue_pipeline.training.optim import (
    LR_SCALE_BATCH,
    base_lr,
    build_optimizer,
    build_scheduler,
    param_groups,
)
from clue_pipeline.training.run_state import (
    CHECKPOINT_FORMAT,
    DistributedContext,
    EpochAccumulator,
    RunState,
    TrainResult,
    cpu_state_dict,
    restore_run,
    save_run,
    seed_everything,
)

Batch = torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor]
StepFn = Callable[[nn.Module, Any, torch.Generator], tuple[torch.Tensor, Mapping[str, Any]]]
EvalFn = Callable[[nn.Module], Mapping[str, float]]


logger = logging.getLogger(__name__)
# One record per finished epoch, carrying its history entry (``EPOCH_ENTRY``), for listeners
# such as the MLflow hook's live child-run metrics (``listen_to_epochs``). Never printed: the
# epoch line is ``logger``'s.
epoch_records = logging.getLogger(f"{__name__}.epochs")
EPOCH_ENTRY = "epoch_entry"
EPOCH_PART = "epoch_part"
STEP_LOG_SECONDS = 60.0  # without a terminal: at most one step line a minute


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


def fit(
    model: nn.Module,
    dataset: Batch,
    step_fn: StepFn,
    config: TrainConfig,
    validate_fn: EvalFn | None = None,
    epoch_metrics_fn: EvalFn | None = None,
    distributed: DistributedContext | None = None,
    lengths: torch.Tensor | None = None,
    also_monitor: str | None = None,
) -> TrainResult:
    """Train ``model`` in place and return the history and the best weights.

    ``step_fn(model, batch, generator)`` returns ``(loss, metrics)``; metric values may be floats or
    0-d tensors (tensors avoid a device sync per step). It must call ``model(...)`` itself so that a
    DistributedDataParallel wrapper sees the forward pass. ``validate_fn`` and ``epoch_metrics_fn``
    get the bare module in eval mode under ``torch.no_grad`` after each epoch; with ``distributed``
    they run on rank 0 only and their results are broadcast, so every rank stops at the same epoch.
    ``lengths`` (one per row) are what ``bucket_by_length`` groups by when the dataset's first
    tensor is not a left-padded token matrix (e.g. rows cut from a flat array per batch).
    ``also_monitor``: a second validation key whose best epoch and weights are kept too
    (``TrainResult.also_*``), e.g. the same metric under another evaluation protocol; only
    ``config.monitor`` drives early stopping, so that selection may be cut short.
    """
    ctx = distributed or DistributedContext()
    run = _start(model, dataset, step_fn, config, ctx, lengths)
    if run.state.finished:
        return run.state.result()
    for epoch in range(run.state.epoch, config.epochs):
        order = epoch_permutation(run.num_rows, config.seed + epoch)
        if run.lengths is not None:
            order = bucketed_order(
                order, run.lengths, config.batch_size, config.bucket_span, config.seed + epoch
            )
        model.train()
        report = config.progress and ctx.is_main
        log_epoch = report and not _stderr_is_terminal()  # a file: every bar frame a line
        _train_epoch(run, epoch, order, show_bar=report and not log_epoch, log_steps=log_epoch)
        if _end_epoch(run, epoch, validate_fn, epoch_metrics_fn, log_epoch, also_monitor):
            break
    run.state.finished = True
    return run.state.result()


@dataclass
class _Run:
    """One fit's fixed parts and its state (``RunState``, what a checkpoint holds)."""

    model: nn.Module
    module: nn.Module  # the bare module under a DistributedDataParallel wrapper
    dataset: Batch
    step_fn: StepFn
    config: TrainConfig
    ctx: DistributedContext
    device: torch.device
    generator: torch.Generator
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ckpt_file: Any
    num_rows: int
    steps_per_epoch: int
    lengths: torch.Tensor | None
    state: RunState

    def save(self, epoch: int) -> None:
        save_run(
            self.ckpt_file,
            self.state,
            self.module,
            self.optimizer,
            self.scheduler,
            self.generator,
            self.ctx,
            epoch,
        )


def _start(model, dataset, step_fn, config: TrainConfig, ctx, lengths) -> _Run:
    """Device, seeds, optimiser and schedule, then the checkpoint's state where one is resumed."""
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

    seed_everything(config.seed + ctx.rank)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed + ctx.rank)
    optimizer = build_optimizer(param_groups(module, config.fixed_lr_params), config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    state = RunState()
    ckpt_file = checkpoint_path(config.checkpoint_dir) if config.checkpoint_dir else None
    ckpt = load_latest_checkpoint(ckpt_file) if config.resume and ckpt_file else None
    if ckpt is not None:
        state = restore_run(ckpt, module, optimizer, scheduler, generator, ctx, device)
    return _Run(
        model, module, dataset, step_fn, config, ctx, device, generator, optimizer, scheduler,
        ckpt_file, num_rows, steps_per_epoch, lengths, state,
    )  # fmt: skip


def _train_epoch(
    run: _Run, epoch: int, order: torch.Tensor, show_bar: bool, log_steps: bool = False
) -> None:
    """The epoch's remaining steps (all of them, unless resumed mid-epoch). ``log_steps``:
    without a terminal for the bar, a log line at most every ``STEP_LOG_SECONDS``, so a long
    epoch written to a file still shows where it is."""
    config, state, ctx = run.config, run.state, run.ctx
    autocast_on = bf16_autocast(config, run.device)
    bar = tqdm(
        total=run.steps_per_epoch,
        initial=state.step_in_epoch,
        desc=f"epoch {epoch}",
        disable=not show_bar,
        leave=False,
    )
    started = last_line = time.perf_counter()
    for step in range(state.step_in_epoch, run.steps_per_epoch):
        index = shard_indices(batch_indices(order, step, config.batch_size), ctx)
        batch = to_device(take(run.dataset, index), run.device)
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=autocast_on):
            loss, metrics = run.step_fn(run.model, batch, run.generator)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(run.module.parameters(), config.grad_clip)
        run.optimizer.step()
        run.scheduler.step()

        state.partial.add(loss, metrics, len(index) * ctx.world_size)
        state.global_step += 1
        state.step_in_epoch = step + 1
        if not bar.disable and state.global_step % config.progress_every_steps == 0:
            elapsed = state.partial.elapsed + time.perf_counter() - started
            bar.set_postfix(
                loss=f"{loss.item():.4f}", seq_s=f"{state.partial.sequences / elapsed:.0f}"
            )
        bar.update(1)
        if log_steps and time.perf_counter() - last_line >= STEP_LOG_SECONDS:
            last_line = time.perf_counter()
            elapsed = state.partial.elapsed + last_line - started
            logger.info(step_line(epoch, state.step_in_epoch, run.steps_per_epoch, loss, elapsed))
        if (
            run.ckpt_file is not None
            and config.checkpoint_every_steps
            and state.global_step % config.checkpoint_every_steps == 0
            and state.step_in_epoch < run.steps_per_epoch
        ):
            state.partial.elapsed += time.perf_counter() - started
            started = time.perf_counter()
            run.save(epoch)
    bar.close()
    state.partial.elapsed += time.perf_counter() - started


def _end_epoch(
    run: _Run,
    epoch: int,
    validate_fn: EvalFn | None,
    epoch_metrics_fn: EvalFn | None,
    log_epoch: bool,
    also_monitor: str | None = None,
) -> bool:
    """History entry, validation, best weights (per monitor), early stopping, checkpoint;
    True = stop."""
    config, state, ctx = run.config, run.state, run.ctx
    entry = _epoch_entry(epoch, state.partial, ctx)
    state.step_losses.extend(entry.pop("step_losses"))
    entry.update(_evaluate(run.module, validate_fn, epoch_metrics_fn, ctx))
    state.history.append(entry)
    _track_best(state, entry, run.module, epoch, config.monitor)
    also_value = _monitored(entry, also_monitor, "fit argument also_monitor")
    state.track_also(also_monitor, also_value, epoch, run.module)
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
    state.partial = EpochAccumulator()
    state.finished = stop or state.epoch >= config.epochs
    if run.ckpt_file is not None:
        run.save(state.epoch)
    return stop


def step_line(epoch: int, step: int, steps: int, loss: torch.Tensor, elapsed: float) -> str:
    """``epoch 1: step 120/625, loss 9.8123, about 4.2 min left in the epoch``."""
    left = elapsed / max(step, 1) * (steps - step) / 60
    return (
        f"epoch {epoch + 1}: step {step}/{steps}, loss {loss.item():.4f}, about {left:.1f} min "
        "left in the epoch"
    )


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


def epoch_permutation(num_rows: int, seed: int) -> torch.Tensor:
    """Seeded per epoch (``seed + epoch``) so that any step's batch can be recomputed on resume."""
    return torch.randperm(num_rows, generator=torch.Generator().manual_seed(seed))


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


def _epoch_entry(epoch: int, acc: EpochAccumulator, ctx: DistributedContext) -> dict[str, Any]:
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
    state: RunState, entry: dict[str, Any], module: nn.Module, epoch: int, monitor: str | None
) -> None:
    if monitor is None:
        state.best_state, state.best_epoch, state.stale_epochs = cpu_state_dict(module), epoch, 0
        return
    value = _monitored(entry, monitor, "TrainConfig.monitor")
    if state.best_metric is None or value > state.best_metric:
        state.best_metric, state.best_epoch, state.stale_epochs = value, epoch, 0
        state.best_state = cpu_state_dict(module)
    else:
        state.stale_epochs += 1


def _monitored(entry: Mapping[str, Any], key: str | None, parameter: str) -> float | None:
    """``entry[key]`` as a float (None without a key); a missing key names ``parameter``."""
    if key is None:
        return None
    if key not in entry:
        raise ValueError(
            f"{parameter}={key!r} is not among the epoch's metrics "
            f"{sorted(k for k in entry if k != 'epoch')}; expected a key returned by validate_fn"
        )
    return float(entry[key])


def _steps_per_epoch(num_rows: int, batch_size: int, drop_last: bool) -> int:
    steps = num_rows // batch_size if drop_last else math.ceil(num_rows / batch_size)
    if steps == 0:
        raise ValueError(
            f"fit: the dataset has {num_rows} rows, fewer than TrainConfig.batch_size={batch_size} "
            "with drop_last=True; expected at least one full batch"
        )
    return steps


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


__all__ = [
    "CHECKPOINT_FORMAT",
    "DEVICES",
    "LR_SCALE_BATCH",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "Batch",
    "DistributedContext",
    "StepFn",
    "TrainConfig",
    "TrainResult",
    "base_lr",
    "batch_indices",
    "build_optimizer",
    "build_scheduler",
    "bucketed_order",
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
