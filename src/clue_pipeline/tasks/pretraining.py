"""Pre-training jobs: CLUE (SimSiam over two views), masked item prediction and S3-Rec.

A job = a model, a dataset of model inputs and a step function, handed to the one training loop.
The builders are module-level functions of plain arguments so that distributed workers can
rebuild the same job in each process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import partial

import numpy as np
import torch

from clue_pipeline.augment import ViewPolicy, make_views
from clue_pipeline.models.clue import SimSiam, alignment, simsiam_loss, uniformity, z_std
from clue_pipeline.models.encoders import EncoderConfig, build_encoder, encoder_to_checkpoint
from clue_pipeline.models.item_pretraining import MaskedItemPretrainer
from clue_pipeline.models.s3rec import S3RecConfig, S3RecPretrainer, attribute_matrix
from clue_pipeline.tasks.batching import trim_padding
from clue_pipeline.training.distributed import (
    DistributedConfig,
    TrainingTask,
    WorkerSpec,
    run_training,
)
from clue_pipeline.training.loop import TrainConfig, TrainResult


@dataclass
class SimSiamConfig:
    proj_dim: int = 256
    pred_dim: int = 64
    stop_gradient: bool = True
    predictor: bool = True


@dataclass
class PretrainJob:
    """Everything a worker needs to rebuild a pre-training run (plain, picklable data)."""

    method: str  # "clue" | "mip" | "s3rec"
    tokens: np.ndarray  # (U, max_len + 1) model inputs
    encoder: EncoderConfig
    train: TrainConfig
    view_policy: ViewPolicy | None = None
    simsiam: SimSiamConfig = field(default_factory=SimSiamConfig)
    mask_ratio: float = 0.2
    diagnostics_users: int = 512
    s3rec: S3RecConfig = field(default_factory=S3RecConfig)
    attribute_pairs: np.ndarray | None = None  # (K, 2) (token, attribute code), S3-Rec only
    num_attributes: int = 0


def build_pretraining(job: PretrainJob) -> TrainingTask:
    """Model, dataset and step function of a job; called in every worker process."""
    torch.manual_seed(job.train.seed)
    encoder = build_encoder(job.encoder)
    tokens = torch.as_tensor(job.tokens, dtype=torch.long)
    mask_token = job.encoder.num_items + 1
    if job.method == "clue":
        return TrainingTask(
            model=SimSiam(encoder, **asdict(job.simsiam)),
            dataset=(tokens,),
            step_fn=partial(clue_step, policy=job.view_policy, mask_token=mask_token),
            epoch_metrics_fn=partial(
                clue_diagnostics,
                tokens=tokens[: job.diagnostics_users],
                policy=job.view_policy,
                mask_token=mask_token,
                seed=job.train.seed,
            ),
        )
    if job.method == "mip":
        return TrainingTask(
            model=MaskedItemPretrainer(encoder, mask_ratio=job.mask_ratio),
            dataset=(tokens,),
            step_fn=masked_item_step,
        )
    if job.method == "s3rec":
        # S3-Rec pre-trains bidirectionally; the checkpoint keeps the configured attention
        # (see run_job), so fine-tuning is causal as for every other encoder
        encoder = build_encoder(replace(job.encoder, causal=False))
        pairs = torch.tensor(
            job.attribute_pairs if job.attribute_pairs is not None else np.empty((0, 2)),
            dtype=torch.long,
        )
        attributes = attribute_matrix(pairs, job.encoder.vocab_size, job.num_attributes)
        return TrainingTask(
            model=S3RecPretrainer(encoder, attributes, job.s3rec),
            dataset=(tokens,),
            step_fn=s3rec_step,
        )
    raise ValueError(f"pretrain method: unknown '{job.method}'; expected 'clue', 'mip' or 's3rec'")


def run_job(job: PretrainJob, nproc_per_node: int = 1) -> tuple[dict, TrainResult]:
    """Train in this process or in ``nproc_per_node`` workers; returns (encoder checkpoint, result)."""
    spec = WorkerSpec(
        builder="clue_pipeline.tasks.pretraining:build_pretraining",
        train=job.train,
        kwargs={"job": job},
    )
    result = run_training(spec, DistributedConfig(nproc_per_node=nproc_per_node))
    model = build_pretraining(job).model
    model.load_state_dict(result.best_state)
    checkpoint = encoder_to_checkpoint(model.encoder)
    checkpoint["config"] = asdict(job.encoder)  # the configured encoder (S3-Rec: causal again)
    return checkpoint, result


def clue_step(model: SimSiam, batch, generator: torch.Generator, policy, mask_token: int):
    (tokens,) = trim_padding(*batch)
    view_a, view_b = make_views(tokens, policy, generator, mask_token)
    p1, p2, z1, z2 = model(view_a, view_b)
    loss = simsiam_loss(p1, p2, z1, z2)
    return loss, {"z_std": z_std(z1.detach())}


def masked_item_step(model: MaskedItemPretrainer, batch, generator: torch.Generator):
    (tokens,) = trim_padding(*batch)
    return model(tokens, generator), {}


def s3rec_step(model: S3RecPretrainer, batch, generator: torch.Generator):
    (tokens,) = trim_padding(*batch)
    return model(tokens, generator)


def clue_diagnostics(
    model: SimSiam, tokens: torch.Tensor, policy, mask_token: int, seed: int
) -> dict[str, float]:
    """The loop's per-epoch diagnostics of a CLUE model: those of its encoder."""
    return representation_quality(model.encoder, tokens, policy, mask_token, seed)


@torch.no_grad()
def representation_quality(
    encoder: torch.nn.Module, tokens: torch.Tensor, policy, mask_token: int, seed: int
) -> dict[str, float]:
    """Alignment of two views' user vectors, uniformity (Wang & Isola 2020) and spread of users.

    Views keep the model's dropout on (train mode), as in training; uniformity is measured on
    the deterministic vectors (eval mode) that downstream tasks see. ``user_std`` is the std
    of the l2-normalised user vectors across users: near 0 when the encoder has collapsed to
    one vector whatever the input.
    """
    device = next(encoder.parameters()).device
    tokens = tokens.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = encoder.training
    encoder.train()
    view_a, view_b = make_views(tokens, policy, generator, mask_token)
    aligned = alignment(encoder(view_a).user, encoder(view_b).user)
    encoder.eval()
    users = encoder(tokens).user
    encoder.train(was_training)
    return {
        "alignment": float(aligned),
        "uniformity": float(uniformity(users)),
        "user_std": float(z_std(users)),
    }
