"""The one training loop, its checkpoints, and data-parallel launching (torch only, no Kedro)."""

from clue_pipeline.training.checkpoint import (
    capture_rng_state,
    checkpoint_path,
    load_checkpoint,
    load_latest_checkpoint,
    previous_path,
    restore_rng_state,
    save_checkpoint,
)
from clue_pipeline.training.distributed import (
    AllReduceBatchNorm,
    DistributedConfig,
    TrainingTask,
    WorkerSpec,
    convert_allreduce_batchnorm,
    launch,
    prepare_model,
    run_training,
)
from clue_pipeline.training.loop import (
    DistributedContext,
    TrainConfig,
    TrainResult,
    cpu_state_dict,
    fit,
)

__all__ = [
    "AllReduceBatchNorm",
    "DistributedConfig",
    "DistributedContext",
    "TrainConfig",
    "TrainResult",
    "TrainingTask",
    "WorkerSpec",
    "capture_rng_state",
    "checkpoint_path",
    "convert_allreduce_batchnorm",
    "cpu_state_dict",
    "fit",
    "launch",
    "load_checkpoint",
    "load_latest_checkpoint",
    "prepare_model",
    "previous_path",
    "restore_rng_state",
    "run_training",
    "save_checkpoint",
]
