"""``pretrain.train`` and ``finetune.train``: what the one training loop needs.

Torch-free, so that settings are checked (and their defaults compared with ``conf/base``)
without building a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda")
# finetune.train keys whose conf value is fine-tuning's own (early stopping, rarer checkpoints)
FINETUNE_TRAIN_DIFFERS = ("epochs", "patience", "checkpoint_every_steps", "bucket_by_length")


@dataclass(frozen=True)
class TrainConfig:
    """Everything the loop needs; ``batch_size`` is the global batch across all processes.

    Defaults are ``conf/base``'s ``pretrain.train`` (``finetune.train`` differs only where
    :data:`FINETUNE_TRAIN_DIFFERS` says); ``tests/test_config_defaults.py`` holds them equal.
    """

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
    grad_clip: float | None = 5.0
    seed: int = 42
    device: str = "auto"
    # bf16 autocast on CUDA; on CPU only with bf16_cpu too (CPUs without bf16 units emulate it)
    bf16: bool = False
    bf16_cpu: bool = False
    checkpoint_dir: str | None = None
    checkpoint_every_steps: int | None = 200
    resume: bool = True
    patience: int | None = None
    # Early stopping waits for this many epochs: a run on a small share of the users takes
    # few steps per epoch and can sit on a popularity plateau for longer than its patience.
    min_epochs: int = 0
    monitor: str | None = None
    progress: bool = True
    # Steps between updates of the progress bar's loss and speed (each one a device sync).
    progress_every_steps: int = 20
    # False keeps the last, smaller batch of each epoch (the transfer protocol's small shares)
    drop_last: bool = True
    # Batches of similar length (the first tensor of the dataset holds left-padded tokens):
    # with short sequences most of a random batch is padding that a step cut to its longest
    # row skips. Rows are shuffled, cut into spans of `bucket_span` batches, sorted by length
    # within a span, and the batches shuffled again, so every epoch still sees a new mix.
    bucket_by_length: bool = False
    bucket_span: int = 50

    def __post_init__(self) -> None:
        for name, ok, expected in self._checks():
            if not ok:
                raise ValueError(
                    f"TrainConfig.{name}={getattr(self, name)!r} is invalid; expected {expected}"
                )

    def _checks(self) -> list[tuple[str, bool, str]]:
        optional_positive = "null or an integer >= 1"
        return [
            ("epochs", self.epochs >= 0, "an integer >= 0"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("lr", self.lr > 0, "a float > 0"),
            ("weight_decay", self.weight_decay >= 0, "a float >= 0"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
            ("momentum", 0 <= self.momentum < 1, "a float in [0, 1)"),
            ("lr_schedule", self.lr_schedule in LR_SCHEDULES, f"one of {LR_SCHEDULES}"),
            ("warmup_epochs", self.warmup_epochs >= 0, "an integer >= 0"),
            ("device", self.device in DEVICES, f"one of {DEVICES}"),
            ("grad_clip", self.grad_clip is None or self.grad_clip > 0, "null or a max-norm > 0"),
            (
                "checkpoint_every_steps",
                self.checkpoint_every_steps is None or self.checkpoint_every_steps >= 1,
                optional_positive,
            ),
            ("patience", self.patience is None or self.patience >= 1, optional_positive),
            (
                "min_epochs",
                0 <= self.min_epochs <= self.epochs,
                f"an integer in [0, epochs = {self.epochs}]",
            ),
            (
                "monitor",
                self.patience is None or self.monitor is not None,
                "a metric name returned by validate_fn when patience is set",
            ),
            ("progress_every_steps", self.progress_every_steps >= 1, "an integer >= 1"),
            ("bucket_span", self.bucket_span >= 1, "an integer >= 1"),
        ]
