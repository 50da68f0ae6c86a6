"""The shared training loop: determinism, batch order, history, early stopping, options."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clue_pipeline.training import DistributedContext, TrainConfig, cpu_state_dict, fit
from clue_pipeline.training.loop import (
    batch_indices,
    bf16_autocast,
    epoch_permutation,
    shard_indices,
)
from tests.training._resume_script import build_task


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "seed": 11, "device": "cpu", **overrides})


def _fit_tiny(config: TrainConfig, **task_kwargs):
    task = build_task(rows=128, **task_kwargs)
    result = fit(task.model, task.dataset, task.step_fn, config)
    return task.model, result


def test_same_seed_gives_identical_weights_and_another_seed_does_not():
    model_a, result_a = _fit_tiny(_config())
    model_b, result_b = _fit_tiny(_config())
    model_c, _ = _fit_tiny(_config(seed=12))
    for name, tensor in model_a.state_dict().items():
        assert torch.equal(tensor, model_b.state_dict()[name]), name
    assert result_a.step_losses == result_b.step_losses
    assert not torch.equal(model_a.embedding.weight, model_c.embedding.weight)


def test_each_epoch_visits_every_row_once_in_a_seeded_new_order():
    rows, batch_size, seen = 50, 8, []
    dataset = (torch.arange(rows), torch.randn(rows, 3))
    model = nn.Linear(3, 1)

    def step_fn(model, batch, generator):
        ids, features = batch
        seen.append(ids.clone())
        return model(features).pow(2).mean(), {}

    result = fit(model, dataset, step_fn, _config(epochs=2, batch_size=batch_size))
    full_batches = rows // batch_size  # drop_last=True by default
    assert result.steps == 2 * full_batches == len(seen)
    first, second = torch.cat(seen[:full_batches]), torch.cat(seen[full_batches:])
    assert len(set(first.tolist())) == len(first) == full_batches * batch_size
    assert not torch.equal(first, second), "the order must change with the epoch"
    assert torch.equal(first, epoch_permutation(rows, 11)[: len(first)])

    seen.clear()
    fit(model, dataset, step_fn, _config(epochs=1, batch_size=batch_size, drop_last=False))
    assert sorted(torch.cat(seen).tolist()) == list(range(rows))


def test_shards_split_the_global_batch_into_disjoint_equal_parts():
    order = epoch_permutation(40, 0)
    global_batch = batch_indices(order, 1, 16)
    shards = [shard_indices(global_batch, DistributedContext(r, 4, r)) for r in range(4)]
    assert [len(s) for s in shards] == [4, 4, 4, 4]
    assert torch.equal(torch.cat(shards), global_batch)
    ragged = batch_indices(order, 2, 16)  # 8 rows left
    assert [len(shard_indices(ragged, DistributedContext(r, 3, r))) for r in range(3)] == [2] * 3


def test_history_has_losses_metrics_throughput_and_validation():
    task = build_task(rows=128)
    config = _config(epochs=3, progress=True, progress_every_steps=2)
    result = fit(
        task.model,
        task.dataset,
        task.step_fn,
        config,
        validate_fn=lambda model: {"val_score": 1.0 if not model.training else -1.0},
        epoch_metrics_fn=lambda model: {"weight_norm": model.embedding.weight.norm().item()},
    )
    assert [entry["epoch"] for entry in result.history] == [0, 1, 2]
    steps_per_epoch = 128 // 32
    assert result.steps == 3 * steps_per_epoch == len(result.step_losses)
    for i, entry in enumerate(result.history):
        losses = result.step_losses[i * steps_per_epoch : (i + 1) * steps_per_epoch]
        assert entry["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-6)
        assert -1.0 <= entry["loss"] <= 1.0
        assert 0.0 <= entry["z_std"] < 1.0
        assert entry["sequences_per_s"] > 0 and entry["wall_s"] > 0
        assert entry["val_score"] == 1.0, "validation must see the model in eval mode"
        assert entry["weight_norm"] > 0
    assert result.best_epoch == 2  # no monitor: the last epoch
    assert task.model.training, "training mode is restored after validation"


def test_early_stopping_keeps_the_best_epochs_weights():
    scores = iter([0.1, 0.5, 0.4, 0.3, 0.2, 0.9])
    snapshots = []

    def validate(model):
        snapshots.append(cpu_state_dict(model))
        return {"recall": next(scores)}

    task = build_task(rows=64)
    config = _config(epochs=6, patience=2, monitor="recall")
    result = fit(task.model, task.dataset, task.step_fn, config, validate_fn=validate)
    assert [entry["epoch"] for entry in result.history] == [0, 1, 2, 3]
    assert result.best_epoch == 1
    for name, tensor in snapshots[1].items():
        assert torch.equal(result.best_state[name], tensor), name
    assert not torch.equal(result.best_state["embedding.weight"], task.model.embedding.weight)


def test_min_epochs_holds_early_stopping_back_until_then():
    scores = iter([0.1, 0.5, 0.2, 0.2, 0.2, 0.6, 0.3, 0.3, 0.3, 0.3])
    task = build_task(rows=64)
    config = _config(epochs=10, patience=2, min_epochs=6, monitor="recall")
    result = fit(
        task.model,
        task.dataset,
        task.step_fn,
        config,
        validate_fn=lambda m: {"recall": next(scores)},
    )
    # stale for 2 epochs at epoch 3, but held for 6 epochs: the later best is found and kept
    assert result.best_epoch == 5
    assert [entry["epoch"] for entry in result.history] == list(range(8))


def test_monitor_missing_from_validation_says_which_parameter():
    task = build_task(rows=64)
    with pytest.raises(ValueError, match=r"TrainConfig.monitor='ndcg'.*recall"):
        fit(
            task.model,
            task.dataset,
            task.step_fn,
            _config(monitor="ndcg"),
            validate_fn=lambda model: {"recall": 0.0},
        )


def test_grad_clip_bounds_the_gradient_norm_before_the_step(monkeypatch):
    norms_after = []
    real_clip = nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        total = real_clip(params, max_norm, *args, **kwargs)
        norms_after.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
        return total

    monkeypatch.setattr(nn.utils, "clip_grad_norm_", spy)
    model = nn.Linear(4, 1)
    data = torch.randn(64, 4) * 100

    def step_fn(model, batch, generator):
        return model(batch).pow(2).mean(), {}

    fit(model, data, step_fn, _config(grad_clip=0.01, epochs=1))
    assert len(norms_after) == 2
    assert all(norm <= 0.01 * (1 + 1e-5) for norm in norms_after)


def test_bf16_autocast_on_cpu_only_when_asked():
    seen = []

    def step_fn(model, batch, generator):
        out = model(batch)
        seen.append(out.dtype)
        return out.float().pow(2).mean(), {}

    data = torch.randn(32, 4)
    fit(nn.Linear(4, 2), data, step_fn, _config(epochs=1, bf16=True))
    fit(nn.Linear(4, 2), data, step_fn, _config(epochs=1, bf16=True, bf16_cpu=True))
    assert seen == [torch.float32, torch.bfloat16]


def test_bf16_autocast_rule_by_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not bf16_autocast(_config(bf16=False, bf16_cpu=True), cuda)
    assert bf16_autocast(_config(bf16=True), cuda)
    assert not bf16_autocast(_config(bf16=True), cpu)
    assert bf16_autocast(_config(bf16=True, bf16_cpu=True), cpu)


def test_loss_decreases_on_a_learnable_task():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(256, 8, generator=generator)
    targets = features @ torch.randn(8, 1, generator=generator)
    model = nn.Linear(8, 1)

    def step_fn(model, batch, generator):
        x, y = batch
        return F.mse_loss(model(x), y), {}

    result = fit(model, (features, targets), step_fn, _config(epochs=5, lr=0.05))
    losses = [entry["loss"] for entry in result.history]
    assert losses[-1] < 0.1 * losses[0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"optimizer": "lbfgs"}, r"TrainConfig.optimizer='lbfgs'.*sgd"),
        ({"device": "tpu"}, r"TrainConfig.device='tpu'"),
        ({"grad_clip": 0.0}, r"TrainConfig.grad_clip=0.0.*max-norm"),
        ({"patience": 3}, r"TrainConfig.monitor=None"),
        ({"batch_size": 0}, r"TrainConfig.batch_size=0"),
        ({"min_epochs": 3, "epochs": 2}, r"TrainConfig.min_epochs=3.*epochs = 2"),
    ],
)
def test_invalid_config_names_the_parameter(overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_bad_datasets_are_refused_with_the_expected_form():
    model = nn.Linear(2, 1)

    def step_fn(model, batch, generator):
        return model(batch).sum(), {}

    with pytest.raises(TypeError, match="expected a tensor, or a tuple/list or dict"):
        fit(model, [[1.0, 2.0]], step_fn, _config())
    with pytest.raises(ValueError, match=r"different numbers of rows \[3, 4\]"):
        fit(model, (torch.zeros(3, 2), torch.zeros(4, 2)), step_fn, _config())
    with pytest.raises(ValueError, match="fewer than TrainConfig.batch_size=32"):
        fit(model, torch.zeros(5, 2), step_fn, _config())
    with pytest.raises(ValueError, match="divisible by the world size 3"):
        fit(model, torch.zeros(64, 2), step_fn, _config(), distributed=DistributedContext(0, 3, 0))


def test_given_lengths_must_match_the_rows():
    task = build_task(rows=64)
    config = TrainConfig(epochs=1, batch_size=16, device="cpu", bucket_by_length=True)
    with pytest.raises(ValueError, match=r"fit\(lengths=...\): 10 lengths for 64 rows"):
        fit(task.model, task.dataset, task.step_fn, config, lengths=torch.ones(10))


def test_epoch_records_reach_their_listener_and_no_console(monkeypatch):
    import logging

    from clue_pipeline.training.loop import (
        EPOCH_ENTRY,
        epoch_records,
        listen_to_epochs,
        stop_listening_to_epochs,
    )

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)

    # what a logging configuration applied after import (Kedro's) does to a child logger
    monkeypatch.setattr(epoch_records, "propagate", True)
    monkeypatch.setattr(epoch_records, "level", logging.NOTSET)
    console, listener = Collect(), Collect()
    logging.getLogger().addHandler(console)
    listen_to_epochs(listener)
    try:
        _fit_tiny(_config(epochs=2))
    finally:
        stop_listening_to_epochs(listener)
        logging.getLogger().removeHandler(console)
    assert [getattr(r, EPOCH_ENTRY)["epoch"] for r in listener.records] == [0, 1]
    assert not [r for r in console.records if r.name == epoch_records.name]
