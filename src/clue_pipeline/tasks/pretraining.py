"""Pre-training jobs: CLUE (an objective of ``models.objectives`` over two views), masked
item prediction and S3-Rec.

A job = a model, a dataset of model inputs and a step function, handed to the one training loop.
One registry, ``PRETRAIN_METHODS``, maps a method name to its settings type and the builder of
its model and step (as ``models.objectives.OBJECTIVES`` does for CLUE's losses), so a new
method is one entry, not a branch in every function that asks what a job is. The builders are
module-level functions of plain arguments so that distributed workers can rebuild the same job
in each process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import numpy as np
import torch

from clue_pipeline.augment import ViewPolicy, make_views, validate_view_policy
from clue_pipeline.config.pretraining import (
    DistributedSettings,
    HealthConfig,
    ObjectiveConfig,
    S3RecConfig,
    SimSiamConfig,
)
from clue_pipeline.models.encoders import (
    EncoderConfig,
    SequenceEncoder,
    build_encoder,
    encoder_to_checkpoint,
)
from clue_pipeline.models.item_pretraining import MaskedItemPretrainer
from clue_pipeline.models.objectives import SequencePretrainer
from clue_pipeline.models.representation import representation_health
from clue_pipeline.models.s3rec import S3RecPretrainer, attribute_matrix
from clue_pipeline.tasks.fingerprint import fingerprint
from clue_pipeline.training.distributed import (
    DistributedConfig,
    TrainingTask,
    WorkerSpec,
    run_training,
)
from clue_pipeline.training.length_batching import trim_padding
from clue_pipeline.training.loop import TrainConfig, TrainResult

logger = logging.getLogger(__name__)


@dataclass
class ClueSettings:
    """CLUE's own part of a job: its views, the heads every objective shares, the objective."""

    view_policy: ViewPolicy | None = None
    simsiam: SimSiamConfig = field(default_factory=SimSiamConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)


@dataclass
class MaskedItemSettings:
    """Masked-item pre-training's own part of a job."""

    mask_ratio: float = 0.2


@dataclass
class S3RecSettings:
    """S3-Rec's own part of a job: its settings and the items' attributes."""

    s3rec: S3RecConfig = field(default_factory=S3RecConfig)
    attribute_pairs: np.ndarray | None = None  # (K, 2) (token, attribute code)
    num_attributes: int = 0


MethodSettings = ClueSettings | MaskedItemSettings | S3RecSettings


@dataclass
class PretrainJob:
    """Everything a worker needs to rebuild a pre-training run (plain, picklable data).

    The fields every method has, plus ``settings``: the method's own part (its type in
    ``PRETRAIN_METHODS``; None = that type's defaults).
    """

    method: str  # a key of PRETRAIN_METHODS: "clue" | "mip" | "s3rec"
    tokens: np.ndarray  # (U, max_len + 1) model inputs
    encoder: EncoderConfig
    train: TrainConfig
    settings: MethodSettings | None = None
    health: HealthConfig = field(default_factory=HealthConfig)

    def __post_init__(self) -> None:
        expected = pretrain_method(self.method).settings
        if self.settings is None:
            self.settings = expected()
        elif not isinstance(self.settings, expected):
            raise TypeError(
                f"pretrain method '{self.method}': settings of type "
                f"{type(self.settings).__name__}, expected {expected.__name__}"
            )


Builder = Callable[[PretrainJob, SequenceEncoder, torch.Tensor], TrainingTask]


@dataclass(frozen=True)
class PretrainMethod:
    """A registered pre-training method: its settings type and its builder.

    ``mixed_batches``: the model wants batches of mixed length whatever
    ``pretrain.train.bucket_by_length`` (BatchNorm heads; see :func:`mixed_batches`).
    """

    settings: type
    build: Builder
    mixed_batches: bool = False


def pretrain_method(name: str) -> PretrainMethod:
    """The registered method ``name``, with an error naming the known ones."""
    if name not in PRETRAIN_METHODS:
        raise ValueError(
            f"pretrain method: unknown '{name}'; expected one of {sorted(PRETRAIN_METHODS)}"
        )
    return PRETRAIN_METHODS[name]


def build_pretraining(job: PretrainJob) -> TrainingTask:
    """Model, dataset and step function of a job; called in every worker process.

    The configured encoder is built first for every method, right after seeding, so a seed
    gives every method the same initial item embedding.
    """
    torch.manual_seed(job.train.seed)
    encoder = build_encoder(job.encoder)
    tokens = torch.as_tensor(job.tokens, dtype=torch.long)
    return pretrain_method(job.method).build(job, encoder, tokens)


def build_clue(job: PretrainJob, encoder: SequenceEncoder, tokens: torch.Tensor) -> TrainingTask:
    settings = job.settings
    model = SequencePretrainer(encoder, settings.objective, **asdict(settings.simsiam))
    model.weigh_bag_items(tokens)
    return TrainingTask(
        model=model,
        dataset=(tokens,),
        step_fn=partial(clue_step, policy=settings.view_policy, mask_token=job.encoder.tokens.mask),
        epoch_metrics_fn=_health(job, tokens, settings.view_policy),
    )


def build_masked_item(
    job: PretrainJob, encoder: SequenceEncoder, tokens: torch.Tensor
) -> TrainingTask:
    return TrainingTask(
        model=MaskedItemPretrainer(encoder, mask_ratio=job.settings.mask_ratio),
        dataset=(tokens,),
        step_fn=masked_item_step,
        epoch_metrics_fn=_health(job, tokens, None),
    )


def build_s3rec(job: PretrainJob, encoder: SequenceEncoder, tokens: torch.Tensor) -> TrainingTask:
    """S3-Rec pre-trains bidirectionally: its encoder is built again, non-causal, after the
    configured one (whose draw it follows); the checkpoint keeps the configured attention
    (see :func:`run_job`), so fine-tuning is causal as for every other encoder. Only the
    transformer has a causal switch; a kind that is causal by construction (GRU, CNN, Caser,
    TV-Rec) or never causal pre-trains as configured."""
    settings = job.settings
    kind = job.encoder.kind
    encoder = build_encoder(
        replace(job.encoder, causal=False) if kind == "transformer" else job.encoder
    )
    pairs = torch.tensor(
        settings.attribute_pairs if settings.attribute_pairs is not None else np.empty((0, 2)),
        dtype=torch.long,
    )
    attributes = attribute_matrix(pairs, job.encoder.tokens.vocab_size, settings.num_attributes)
    return TrainingTask(
        model=S3RecPretrainer(encoder, attributes, settings.s3rec),
        dataset=(tokens,),
        step_fn=s3rec_step,
    )


PRETRAIN_METHODS: dict[str, PretrainMethod] = {
    "clue": PretrainMethod(ClueSettings, build_clue, mixed_batches=True),
    "mip": PretrainMethod(MaskedItemSettings, build_masked_item),
    "s3rec": PretrainMethod(S3RecSettings, build_s3rec),
}


def _health(job: PretrainJob, tokens: torch.Tensor, policy: ViewPolicy | None):
    """The per-epoch health callback on the first ``health.users`` users; the alignment pairs
    are the method's own views, or two dropout passes for a method without views."""
    return partial(
        health_metrics,
        tokens=tokens[: job.health.users],
        policy=policy or validate_view_policy({"strategies": ["dropout"]}),
        mask_token=job.encoder.tokens.mask,
        seed=job.train.seed,
        min_effective_rank=job.health.min_effective_rank,
        label=job.method,
    )


HEADS = ("projector", "predictor")  # parameter prefixes that only some pre-training models have


def heads_present(job: PretrainJob) -> PretrainJob:
    """The job without ``fixed_lr_params`` entries naming a head its model lacks.

    ``pretrain.train`` is shared by CLUE and masked-item pre-training, and only SimSiam has a
    predictor, so ``fixed_lr_params: [predictor]`` must not stop the others. Other prefixes
    are kept, so a typo still fails in the loop with the parameter named.
    """
    prefixes = list(job.train.fixed_lr_params)
    if not any(prefix in HEADS for prefix in prefixes):
        return job
    names = [name for name, _ in build_pretraining(job).model.named_parameters()]
    keep = [
        prefix
        for prefix in prefixes
        if prefix not in HEADS or any(name.startswith(prefix + ".") for name in names)
    ]
    return replace(job, train=replace(job.train, fixed_lr_params=keep))


def mixed_batches(job: PretrainJob) -> PretrainJob:
    """CLUE's job with batches of mixed length, whatever ``pretrain.train.bucket_by_length``.

    The setting is shared by every pre-training method; masked-item and S3-Rec gain from
    batches of one length, but CLUE's BatchNorm heads would then normalise each length
    separately. CLUE gets the speed from ``simsiam.encode_by_length`` instead.
    """
    if not pretrain_method(job.method).mixed_batches or not job.train.bucket_by_length:
        return job
    grouped = job.settings.simsiam.encode_by_length
    logger.info(
        "clue pre-training draws batches of mixed length for its BatchNorm heads "
        "(pretrain.train.bucket_by_length applies to masked-item and S3-Rec)%s",
        "; each batch is encoded in length groups" if grouped else "",
    )
    return replace(job, train=replace(job.train, bucket_by_length=False))


def run_job(
    job: PretrainJob, nproc_per_node: int = 1, distributed: DistributedSettings | None = None
) -> tuple[dict, TrainResult]:
    """Train in this process or in ``nproc_per_node`` workers, or as ``distributed``
    (``pretrain.distributed``, machines included) says; returns (encoder checkpoint, result)."""
    job = mixed_batches(heads_present(job))
    spec = WorkerSpec(
        builder="clue_pipeline.tasks.pretraining:build_pretraining",
        train=job.train,
        kwargs={"job": job},
    )
    config = DistributedConfig(nproc_per_node=nproc_per_node)
    if distributed is not None:  # machines meet only on the same job: its fingerprint
        many = distributed.nnodes > 1
        key = fingerprint(job.method, job.tokens, job.encoder, job.train) if many else ""
        config = DistributedConfig.from_settings(distributed, job_key=key)
    result = run_training(spec, config)
    model = build_pretraining(job).model
    model.load_state_dict(result.best_state)
    checkpoint = encoder_to_checkpoint(model.encoder)
    checkpoint["config"] = asdict(job.encoder)  # the configured encoder (S3-Rec: causal again)
    return checkpoint, result


def clue_step(
    model: SequencePretrainer, batch, generator: torch.Generator, policy, mask_token: int
):
    (tokens,) = trim_padding(*batch)
    view_a, view_b = make_views(tokens, policy, generator, mask_token)
    out = model(view_a, view_b, tokens, generator)
    return out.loss, out.metrics


def masked_item_step(model: MaskedItemPretrainer, batch, generator: torch.Generator):
    (tokens,) = trim_padding(*batch)
    return model(tokens, generator), {}


def s3rec_step(model: S3RecPretrainer, batch, generator: torch.Generator):
    (tokens,) = trim_padding(*batch)
    return model(tokens, generator)


def health_metrics(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    policy,
    mask_token: int,
    seed: int,
    min_effective_rank: float | None = None,
    label: str = "clue",
) -> dict[str, float]:
    """The loop's per-epoch health of a pre-training model, from its encoder (and projector).

    Returned into the epoch's history, which reaches MLflow as per-epoch metrics. An
    effective rank under ``min_effective_rank`` is logged as a warning: the loss cannot show
    dimensional collapse, so a run that is collapsing should say so while it trains.
    """
    health = representation_health(
        model.encoder, tokens, policy, mask_token, seed, getattr(model, "projector", None)
    )
    if min_effective_rank is not None and health["effective_rank"] < min_effective_rank:
        logger.warning(
            "%s pre-training: effective rank of the user vectors %.1f of %d is below "
            "pretrain.health.min_effective_rank = %s (top-2 PC share %.1f%%): the space is "
            "collapsing onto few directions",
            label,
            health["effective_rank"],
            model.encoder.config.hidden,
            min_effective_rank,
            100 * health["top2_share"],
        )
    return health
