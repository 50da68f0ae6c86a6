"""Data-parallel pre-training on one machine (elastic_launch) or a cluster (torchrun).

Workers are separate processes, so they cannot receive a model object: each builds its model,
dataset and step function from a :class:`WorkerSpec` (a ``"module:function"`` builder and plain
keyword arguments). Every worker runs the same :func:`fit` on its shard of each global batch, with
gradients averaged by DistributedDataParallel and batch statistics of the BatchNorm heads taken over
the global batch, so the result matches single-process training with the same global batch.

Several machines (``nnodes``) meet at a c10d rendezvous (``rdzv_endpoint``), each starting its
own elastic agent; every rank gets the global result at the end, so each machine's run writes the
same model. A worker whose peers vanish says which node was lost (:class:`PeerLostError`).

``torch.nn.SyncBatchNorm`` refuses CPU tensors (torch 2.13 raises "SyncBatchNorm expected input
tensor to be on GPU"), so on CPU/gloo the BatchNorm layers become :class:`AllReduceBatchNorm`, a
small synchronised BatchNorm built on two all-reduces; on CUDA the stock SyncBatchNorm is used.
"""

from __future__ import annotations

import importlib
import io
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from clue_pipeline.training.checkpoint import checkpoint_path, load_latest_checkpoint
from clue_pipeline.training.loop import (
    Batch,
    DistributedContext,
    EvalFn,
    StepFn,
    TrainConfig,
    TrainResult,
    fit,
    resolve_device,
)
from clue_pipeline.training.peers import (
    LOST_MARK,
    PeerWatch,
    check_same_checkpoint,
    die_with_parent,
)

if TYPE_CHECKING:
    from clue_pipeline.config.pretraining import DistributedSettings

BACKENDS = ("auto", "gloo", "nccl")


@dataclass
class TrainingTask:
    """What a builder returns: everything :func:`fit` needs besides the config."""

    model: nn.Module
    dataset: Batch
    step_fn: StepFn
    validate_fn: EvalFn | None = None
    epoch_metrics_fn: EvalFn | None = None


@dataclass
class WorkerSpec:
    """A picklable recipe: ``builder`` is ``"package.module:function"``, called with ``kwargs``."""

    builder: str
    train: TrainConfig
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"builder": self.builder, "kwargs": self.kwargs, "train": asdict(self.train)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "spec") -> WorkerSpec:
        missing = {"builder", "train"} - set(data)
        if missing:
            raise ValueError(
                f"{where}: missing keys {sorted(missing)}; expected "
                '{"builder": "module:function", "kwargs": {...}, "train": {TrainConfig fields}}'
            )
        return cls(
            builder=str(data["builder"]),
            train=TrainConfig(**data["train"]),
            kwargs=dict(data.get("kwargs") or {}),
        )


@dataclass
class DistributedConfig:
    """How to start workers: ``nproc_per_node`` on this machine, on each of ``nnodes`` machines
    that meet at ``rdzv_endpoint``; one process on one machine trains in-process."""

    nproc_per_node: int = 1
    backend: str = "auto"
    rdzv_endpoint: str | None = None
    run_id: str | None = None
    monitor_interval_s: float = 0.1
    join_timeout_s: int = 120
    start_method: str = "spawn"
    cores: int | None = None
    nnodes: int = 1
    node_rank: int = 0  # names this machine in errors; c10d orders the ranks itself
    max_restarts: int = 0

    def __post_init__(self) -> None:
        for name in ("nproc_per_node", "nnodes"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"DistributedConfig.{name}={getattr(self, name)!r} is invalid; "
                    "expected an integer >= 1"
                )
        if self.backend not in BACKENDS:
            raise ValueError(
                f"DistributedConfig.backend={self.backend!r} is invalid; expected one of {BACKENDS}"
            )
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(
                f"DistributedConfig.node_rank={self.node_rank!r} is invalid; expected "
                f"0 <= node_rank < nnodes={self.nnodes}"
            )
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(
                f"DistributedConfig.nnodes={self.nnodes} needs rdzv_endpoint 'host:port', an "
                "address every machine reaches (usually node_rank 0's)"
            )
        if self.max_restarts < 0:
            raise ValueError(f"DistributedConfig.max_restarts={self.max_restarts!r}: expected >= 0")

    @property
    def in_process(self) -> bool:
        return self.nproc_per_node <= 1 and self.nnodes <= 1

    @classmethod
    def from_settings(cls, settings: DistributedSettings, job_key: str = "") -> DistributedConfig:
        """``pretrain.distributed`` for one job; ``job_key`` (the same on every machine, e.g. a
        fingerprint of the job) keeps the rendezvous of successive jobs apart, and machines
        given different data or parameters never meet."""
        return cls(
            nproc_per_node=settings.nproc_per_node,
            nnodes=settings.nnodes,
            node_rank=settings.node_rank,
            rdzv_endpoint=settings.rdzv_endpoint,
            run_id=f"{settings.rdzv_id}-{job_key}" if settings.nnodes > 1 else None,
            join_timeout_s=settings.join_timeout_s,
            max_restarts=settings.max_restarts,
        )


def run_training(spec: WorkerSpec, config: DistributedConfig | None = None) -> TrainResult:
    """Train in this process, or in workers on one or more machines; return rank 0's result."""
    config = config or DistributedConfig()
    if config.in_process:
        task = build_task(spec)
        return fit(
            task.model,
            task.dataset,
            task.step_fn,
            spec.train,
            validate_fn=task.validate_fn,
            epoch_metrics_fn=task.epoch_metrics_fn,
        )
    return launch(spec, config)


def launch(spec: WorkerSpec, config: DistributedConfig) -> TrainResult:
    """Run this machine's elastic agent: rendezvous with the other ``nnodes - 1`` machines, start
    the local workers, and return the global result (rank 0's, shared with every node)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    endpoint = config.rdzv_endpoint or f"127.0.0.1:{free_port()}"
    run_id = config.run_id or uuid.uuid4().hex
    launch_config = LaunchConfig(
        min_nodes=config.nnodes,
        max_nodes=config.nnodes,
        nproc_per_node=config.nproc_per_node,
        rdzv_backend="c10d",
        rdzv_endpoint=endpoint,
        rdzv_configs={"join_timeout": config.join_timeout_s},
        run_id=run_id,
        max_restarts=config.max_restarts,
        monitor_interval=config.monitor_interval_s,
        start_method=config.start_method,
    )
    threads = max(1, (config.cores or os.cpu_count() or 1) // config.nproc_per_node)
    backend = resolve_backend(config.backend, spec.train.device)
    try:
        outputs = elastic_launch(launch_config, worker)(
            spec.to_dict(), backend, threads, config.node_rank
        )
    except ChildFailedError as error:
        raise WorkerFailedError(describe_worker_failure(error.failures, spec.train)) from error
    except RendezvousError as error:
        raise WorkerFailedError(
            f"node_rank {config.node_rank}: rendezvous {run_id!r} at {endpoint} failed "
            f"({type(error).__name__}: {error}); start the same run, with its own node_rank, on "
            f"each of the {config.nnodes} machines within {config.join_timeout_s} s"
        ) from error
    payload = next((outputs[rank] for rank in sorted(outputs) if outputs[rank] is not None), None)
    if payload is None:
        raise WorkerFailedError(f"node_rank {config.node_rank}: no worker returned a result")
    return result_from_bytes(payload)


class WorkerFailedError(RuntimeError):
    """A worker of a distributed run died or raised; the message says which and how to resume."""


def describe_worker_failure(failures: Mapping[int, Any], train: TrainConfig) -> str:
    """One line: what stopped the run (a lost node, a killed or failing worker) and where the run
    can resume from.

    ``failures`` maps global rank to torch elastic's ``ProcessFailure``. When a worker dies,
    its peers fail in the next collective: ranks ended by a signal come first, the others died
    of their absence. A survivor's :class:`PeerLostError` names the lost node; it replaces the
    local echoes (exits, and the SIGTERM the agent sends the other local workers after it).
    """
    lost = [_last_line(f) for f in failures.values() if LOST_MARK in _last_line(f)]
    parts = []
    for rank, failure in sorted(failures.items(), key=lambda i: (i[1].exitcode >= 0, i[0])):
        line = _last_line(failure)
        if failure.exitcode < 0 and not (lost and failure.signal_name() == "SIGTERM"):
            parts.append(
                f"worker rank {rank} (pid {failure.pid}) was killed by {failure.signal_name()}"
            )
        elif failure.exitcode >= 0 and not lost:
            parts.append(
                f"worker rank {rank} (pid {failure.pid}) exited with code {failure.exitcode}"
                + (f": {line}" if line else "")
            )
    parts += [line[line.index(LOST_MARK) + len(LOST_MARK) :] for line in lost]
    text = "distributed training stopped: " + "; ".join(dict.fromkeys(parts)) + ". "
    return text + _resume_hint(train)


def _last_line(failure: Any) -> str:
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    lines = str(message).strip().splitlines()
    return lines[-1].strip() if lines else ""


def _resume_hint(train: TrainConfig) -> str:
    if not train.checkpoint_dir:
        return "No checkpoint_dir was set, so a new run starts from the beginning."
    try:
        state = load_latest_checkpoint(checkpoint_path(train.checkpoint_dir))
    except ValueError as error:
        return str(error)
    if state is None:
        return f"No checkpoint was written yet in {train.checkpoint_dir}; a new run starts over."
    return (
        f"The checkpoint in {train.checkpoint_dir} holds step {state['global_step']}: "
        "run again with resume: true to continue from it, with the same number of workers "
        "for the same result as an unbroken run."
    )


def worker(
    spec_data: Mapping[str, Any], backend: str, threads: int, node_rank: int | None = None
) -> bytes | None:
    """One process of the group; started by elastic_launch or torchrun (env RANK, WORLD_SIZE, ...).

    Returns the serialised :class:`TrainResult` on each node's local rank 0 (plain bytes cross
    process boundaries safely, unlike tensors shared through file descriptors), else ``None``.
    ``node_rank`` names this machine in errors (default: the agent's ``GROUP_RANK``).
    """
    die_with_parent()
    torch.set_num_threads(threads)
    spec = WorkerSpec.from_dict(spec_data)
    ctx = context_from_env()
    device = resolve_device(spec.train.device, ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, init_method="env://")
    watch = PeerWatch(ctx, node_rank)
    try:
        watch.start()
        check_same_checkpoint(spec.train, watch.layout)
        task = build_task(spec)
        result = fit(
            prepare_model(task.model, device),
            task.dataset,
            task.step_fn,
            spec.train,
            validate_fn=task.validate_fn,
            epoch_metrics_fn=task.epoch_metrics_fn,
            distributed=ctx,
        )
        payload = share_result(result, ctx)
    except Exception as error:
        watch.explain(error)
        raise
    finally:
        watch.stop()
        dist.destroy_process_group()
    return payload if ctx.local_rank == 0 else None


def share_result(result: TrainResult, ctx: DistributedContext) -> bytes | None:
    """Rank 0's result as bytes; on several machines every node receives it (a collective)."""
    payload = result_to_bytes(result) if ctx.is_main else None
    if ctx.world_size > int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size)):
        box = [payload]
        dist.broadcast_object_list(box, src=0)
        return box[0]
    dist.barrier()
    return payload


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Synchronise BatchNorm across ranks, move to ``device`` and wrap in DDP (group must exist)."""
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        model = convert_allreduce_batchnorm(model)
    model.to(device)
    device_ids = [device.index] if device.type == "cuda" else None
    return ForwardOnlyDDP(model, device_ids=device_ids)


class ForwardOnlyDDP(DistributedDataParallel):
    """DDP that explains why ``model.some_method(...)`` fails inside a ``step_fn``.

    Gradients are averaged across ranks only for a pass that went through ``forward``; a method
    of the wrapped module called directly would train each rank on its own gradients, silently.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if hasattr(self.__dict__.get("_modules", {}).get("module"), name):
                raise AttributeError(
                    f"step_fn used model.{name} on the DistributedDataParallel wrapper; only "
                    f"model(...) (forward) synchronises gradients across ranks: route the loss "
                    f"through forward, or use model.module.{name} outside training steps"
                ) from None
            raise


class AllReduceBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics cover the global batch of every rank, on any backend.

    Mean first, then the variance around it (two all-reduces instead of one sum of squares, which
    loses precision when the mean is large). The all-reduce is differentiable, so gradients also
    flow through the statistics as in single-process BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"AllReduceBatchNorm expects (N, C, ...) input, got {input.dim()}D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        synced = self.training and dist.is_available() and dist.is_initialized()
        if not synced or dist.get_world_size() == 1:
            return super().forward(input)
        dims = [0] + list(range(2, input.dim()))
        out_dtype, input = input.dtype, input.float()
        local_count = input.numel() // input.size(1)
        stats = torch.cat([input.sum(dims), input.new_tensor([float(local_count)])])
        stats = _all_reduce_sum(stats)
        count = stats[-1]
        mean = stats[:-1] / count
        shape = [1, -1] + [1] * (input.dim() - 2)
        centred = input - mean.view(shape)
        var = _all_reduce_sum((centred * centred).sum(dims)) / count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count.detach())
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(out_dtype)

    def _update_running_stats(
        self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor
    ) -> None:
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
            else:
                factor = self.momentum
            unbiased = var * count / (count - 1).clamp_min(1)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def convert_allreduce_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer by :class:`AllReduceBatchNorm`, keeping weights and buffers."""
    if isinstance(module, _BatchNorm) and not isinstance(module, AllReduceBatchNorm):
        converted = AllReduceBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        tensors = list(module.parameters()) + list(module.buffers())
        return converted.to(tensors[0].device) if tensors else converted
    for name, child in module.named_children():
        replacement = convert_allreduce_batchnorm(child)
        if replacement is not child:
            setattr(module, name, replacement)
    return module


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


def build_task(spec: WorkerSpec) -> TrainingTask:
    """Import and call the spec's builder; its errors name the builder string."""
    builder = import_builder(spec.builder)
    task = builder(**spec.kwargs)
    if not isinstance(task, TrainingTask):
        raise TypeError(
            f"builder {spec.builder!r} returned {type(task).__name__}; expected a TrainingTask"
        )
    return task


def import_builder(path: str) -> Callable[..., TrainingTask]:
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"builder {path!r} is invalid; expected 'package.module:function'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"builder {path!r} cannot be imported: {error}") from error


def context_from_env() -> DistributedContext:
    """Rank layout from the variables torchrun and elastic_launch set for each worker."""
    try:
        return DistributedContext(
            rank=int(os.environ["RANK"]),
            world_size=int(os.environ["WORLD_SIZE"]),
            local_rank=int(os.environ["LOCAL_RANK"]),
        )
    except KeyError as error:
        raise RuntimeError(
            f"environment variable {error.args[0]} is not set; start workers with torchrun "
            "or clue_pipeline.training.distributed.launch"
        ) from error


def resolve_backend(backend: str, device: str) -> str:
    if backend != "auto":
        return backend
    uses_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    return "nccl" if uses_cuda else "gloo"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def result_to_bytes(result: TrainResult) -> bytes:
    buffer = io.BytesIO()
    torch.save(asdict(result), buffer)
    return buffer.getvalue()


def result_from_bytes(data: bytes) -> TrainResult:
    return TrainResult(**torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
