"""Data-parallel training: 2 gloo processes must follow the 1-process loss curve."""

import copy
import json

import pytest
import torch
import torch.distributed as dist
from torch import nn

from clue_pipeline.training import (
    AllReduceBatchNorm,
    DistributedConfig,
    TrainConfig,
    WorkerSpec,
    checkpoint_path,
    convert_allreduce_batchnorm,
    load_checkpoint,
    prepare_model,
    run_training,
    torchrun_worker,
)
from clue_pipeline.training.distributed import free_port, import_builder, result_from_bytes

BUILDER = "tests.training._resume_script:build_task"
# Rank-invariant task: no dropout and deterministic views, so one process and two see equal data.
TASK = {"rows": 64, "dropout": 0.0, "mask_ratio": 0.0, "validation_rows": 32}
STEPS = 20  # 64 rows / global batch 16 = 4 steps per epoch, 5 epochs
LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-5


def _train_config(**overrides) -> TrainConfig:
    defaults = {"epochs": 5, "batch_size": 16, "seed": 4, "device": "cpu", "monitor": "neg_loss"}
    return TrainConfig(**{**defaults, **overrides})


@pytest.fixture
def single_process_group(tmp_path):
    """A world of one gloo process in this test process, torn down afterwards."""
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    yield
    dist.destroy_process_group()


# Starts fresh interpreters (torch import dominates), so it is slow on a busy 2-core machine.
@pytest.mark.slow
def test_two_gloo_processes_follow_the_one_process_loss_curve(tmp_path):
    single = run_training(WorkerSpec(BUILDER, _train_config(), TASK))
    config = _train_config(checkpoint_dir=str(tmp_path), checkpoint_every_steps=7)
    double = run_training(
        WorkerSpec(BUILDER, config, TASK), DistributedConfig(nproc_per_node=2, cores=2)
    )
    assert single.steps == double.steps == STEPS
    expected = torch.tensor(single.step_losses)
    assert torch.allclose(torch.tensor(double.step_losses), expected, rtol=LOSS_RTOL, atol=0)
    # validation runs on rank 0 in eval mode: equal only if the BN running statistics were synced
    assert single.best_epoch == double.best_epoch
    for one, two in zip(single.history, double.history, strict=True):
        assert two["neg_loss"] == pytest.approx(one["neg_loss"], rel=LOSS_RTOL)
    assert single.best_state.keys() == double.best_state.keys()
    for name, tensor in single.best_state.items():
        assert torch.allclose(double.best_state[name].to(tensor.dtype), tensor, atol=WEIGHT_ATOL), (
            name
        )
    checkpoint = load_checkpoint(checkpoint_path(tmp_path))
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    assert checkpoint["finished"] and checkpoint["global_step"] == STEPS
    assert checkpoint["model"].keys() == single.best_state.keys(), "no DDP 'module.' prefix"


def test_stock_syncbatchnorm_refuses_cpu_tensors_hence_our_own(single_process_group):
    layer = nn.SyncBatchNorm(4).train()
    with pytest.raises(ValueError, match="expected input tensor to be on GPU"):
        layer(torch.randn(8, 4))
    ours = AllReduceBatchNorm(4).train()
    assert ours(torch.randn(8, 4)).shape == (8, 4)


def test_methods_other_than_forward_are_refused_on_the_wrapper(single_process_group):
    class WithLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def loss(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x).sum()

    wrapped = prepare_model(WithLoss(), torch.device("cpu"))
    with pytest.raises(AttributeError, match=r"model.loss .*route the loss through forward"):
        wrapped.loss(torch.zeros(1, 2))
    with pytest.raises(AttributeError, match="no_such_thing"):
        wrapped.no_such_thing  # noqa: B018
    assert isinstance(wrapped.module.linear, nn.Linear)


def test_conversion_keeps_weights_buffers_and_outputs():
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.BatchNorm1d(4))
    reference(torch.randn(16, 3))  # move the running statistics off their initial values
    converted = convert_allreduce_batchnorm(copy.deepcopy(reference))
    assert isinstance(converted[1], AllReduceBatchNorm) and isinstance(
        converted[3], AllReduceBatchNorm
    )
    for key, value in reference.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    inputs = torch.randn(8, 3)
    assert torch.allclose(converted(inputs), reference(inputs), atol=1e-6)
    for key, value in reference.state_dict().items():
        assert torch.allclose(converted.state_dict()[key], value, atol=1e-6), f"{key} after a step"
    assert torch.allclose(converted.eval()(inputs), reference.eval()(inputs), atol=1e-6)


def test_torchrun_entry_point_runs_the_worker_and_writes_rank0_result(tmp_path, monkeypatch):
    spec = WorkerSpec(BUILDER, _train_config(epochs=2), TASK)
    spec_file, output = tmp_path / "spec.json", tmp_path / "result.pt"
    spec_file.write_text(json.dumps(spec.to_dict()))
    for name, value in {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }.items():
        monkeypatch.setenv(name, value)
    threads = torch.get_num_threads()
    try:
        assert torchrun_worker.main(["--spec", str(spec_file), "--output", str(output)]) == 0
    finally:
        torch.set_num_threads(threads)
    assert not dist.is_initialized(), "the worker must tear its process group down"
    result = result_from_bytes(output.read_bytes())
    reference = run_training(spec)
    assert result.steps == reference.steps == 8
    # the same training to float rounding (fused Adam rounds differently under the DDP wrapper)
    assert torch.allclose(
        torch.tensor(result.step_losses), torch.tensor(reference.step_losses), rtol=1e-5
    )


def test_bad_specs_say_what_is_expected(tmp_path):
    bad_json = tmp_path / "spec.json"
    bad_json.write_text('{"builder": "x:y",\n "train": }')
    with pytest.raises(SystemExit, match=r"spec.json line 2, column 11"):
        torchrun_worker.main(["--spec", str(bad_json)])
    with pytest.raises(ValueError, match=r"missing keys \['train'\]"):
        WorkerSpec.from_dict({"builder": BUILDER})
    with pytest.raises(ValueError, match="expected 'package.module:function'"):
        import_builder("tests.training._resume_script.build_task")
    with pytest.raises(ValueError, match="cannot be imported"):
        import_builder("tests.training._resume_script:no_such_builder")
    with pytest.raises(ValueError, match="nproc_per_node=0"):
        DistributedConfig(nproc_per_node=0)
