"""The optimiser and the per-step learning-rate schedule that :func:`training.loop.fit` uses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from clue_pipeline.config.training import TrainConfig

LR_SCALE_BATCH = 256  # the linear scaling rule's reference batch: lr x batch_size / 256


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
