"""Optimiser and learning-rate schedule options of the loop: SGD, cosine, warm-up, fixed-lr groups."""

import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from clue_pipeline.training import TrainConfig, fit
from clue_pipeline.training.loop import base_lr, build_optimizer, build_scheduler, param_groups
from tests.training._resume_script import build_task


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 32, "seed": 5, "device": "cpu", **overrides})


class _Interrupted(RuntimeError):
    pass


def _lr_trace(config: TrainConfig, rows: int = 128, stop_after: int | None = None):
    """Fit the tiny siamese task, recording every group's lr as each step runs."""
    task = build_task(rows=rows)
    seen: list[list[float]] = []
    optimizers: list[torch.optim.Optimizer] = []

    def step_fn(model, batch, generator):
        if stop_after is not None and len(seen) == stop_after:
            raise _Interrupted
        return task.step_fn(model, batch, generator)

    def record(optimizer, args, kwargs):
        optimizers.append(optimizer)
        seen.append([group["lr"] for group in optimizer.param_groups])

    handle = register_optimizer_step_pre_hook(record)
    try:
        result = fit(task.model, task.dataset, step_fn, config)
    finally:
        handle.remove()
    return task.model, result, seen, optimizers


def test_cosine_after_warmup_with_the_predictor_at_a_fixed_scaled_lr():
    config = _config(
        optimizer="sgd",
        lr=0.05,
        weight_decay=1e-4,
        lr_schedule="cosine",
        warmup_epochs=1,
        lr_scale_batch=True,
        fixed_lr_params=["predictor"],
    )
    _, result, seen, optimizers = _lr_trace(config)
    optimizer = optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["weight_decay"] == 1e-4
    scaled = 0.05 * 32 / 256
    assert base_lr(config) == pytest.approx(scaled)
    steps_per_epoch, total = 128 // 32, result.steps
    assert total == 3 * steps_per_epoch == len(seen)
    scheduled = [lrs[0] for lrs in seen]
    assert scheduled[:steps_per_epoch] == pytest.approx(
        [scaled * (s + 1) / steps_per_epoch for s in range(steps_per_epoch)]
    )
    decay = total - steps_per_epoch
    expected = [
        scaled * 0.5 * (1 + math.cos(math.pi * (s - steps_per_epoch) / decay))
        for s in range(steps_per_epoch, total)
    ]
    assert scheduled[steps_per_epoch:] == pytest.approx(expected)
    assert scheduled[-1] < scaled / 10, "cosine must decay towards 0 by the last step"
    assert [lrs[1] for lrs in seen] == pytest.approx([scaled] * total), "predictor lr must not move"


def test_constant_schedule_without_groups_keeps_todays_adam():
    _, _, seen, optimizers = _lr_trace(_config(lr=1e-3))
    assert isinstance(optimizers[0], torch.optim.Adam)
    assert len(optimizers[0].param_groups) == 1
    assert all(lrs == [1e-3] for lrs in seen)


def test_fixed_lr_prefix_that_matches_nothing_is_refused():
    model = build_task(rows=32).model
    groups = param_groups(model, ["predictor"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].startswith("predictor.") for p in groups[1]["params"])
    assert not any(names[id(p)].startswith("predictor.") for p in groups[0]["params"])
    with pytest.raises(ValueError, match=r"\['predictr'\] match no parameter"):
        param_groups(model, ["predictr"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"momentum": 1.0}, "momentum"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
    ],
)
def test_invalid_schedule_options_name_the_parameter(overrides, message):
    with pytest.raises(ValueError, match=f"TrainConfig.{message}="):
        _config(**overrides)


def test_scheduler_state_round_trips_through_a_state_dict():
    config = _config(optimizer="sgd", lr=0.1, lr_schedule="cosine", warmup_epochs=1)
    model = build_task(rows=32).model
    optimizer = build_optimizer(param_groups(model), config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=4)
    for _ in range(6):
        optimizer.step()
        scheduler.step()
    fresh_optimizer = build_optimizer(param_groups(model), config)
    fresh = build_scheduler(fresh_optimizer, config, steps_per_epoch=4)
    fresh_optimizer.load_state_dict(optimizer.state_dict())
    fresh.load_state_dict(scheduler.state_dict())
    assert fresh.last_epoch == 6
    assert fresh_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_a_run_stopped_mid_schedule_resumes_to_identical_weights(tmp_path):
    options = {
        "optimizer": "sgd",
        "lr": 0.2,
        "lr_schedule": "cosine",
        "warmup_epochs": 1,
        "lr_scale_batch": True,
        "fixed_lr_params": ["predictor"],
        "grad_clip": 5.0,
    }
    reference_model, reference, reference_lrs, _ = _lr_trace(_config(**options))
    resumable = _config(**options, checkpoint_dir=str(tmp_path), checkpoint_every_steps=3)
    with pytest.raises(_Interrupted):
        _lr_trace(resumable, stop_after=7)  # checkpoint at step 6, in the cosine part
    model, result, lrs, _ = _lr_trace(_config(**options, checkpoint_dir=str(tmp_path), resume=True))
    assert lrs == reference_lrs[6:], "the resumed run must continue on the same lr curve"
    assert result.step_losses == reference.step_losses
    for name, tensor in reference_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), f"{name} differs after resume"


def test_adam_runs_fused_where_the_parameters_allow_it():
    from clue_pipeline.training.loop import TrainConfig, build_optimizer

    model = torch.nn.Linear(4, 2)
    for name in ("adam", "adamw"):
        optimizer = build_optimizer(model.parameters(), TrainConfig(1, 2, optimizer=name))
        assert optimizer.defaults["fused"] is True
    sgd = build_optimizer(model.parameters(), TrainConfig(1, 2, optimizer="sgd"))
    assert not sgd.defaults.get("fused")
