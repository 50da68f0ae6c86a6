"""The user vectors of an encoder, and how their space looks.

One home for what the fine-tuning evaluation, the ``embed`` pipeline, the pre-training health
log, the ``evaluate`` PCA figure and the experiments' cells all ask of an encoder: every
user's ``[UR]`` vector (:func:`user_vectors`), the alignment / uniformity of the space
(:func:`representation_quality`, :func:`representation_health`), and the two together
(:func:`summarise_representation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clue_pipeline.augment import ViewPolicy, make_views
from clue_pipeline.models.clue import alignment, spectrum, uniformity, z_std
from clue_pipeline.training.length_batching import by_length


@torch.no_grad()
def user_vectors(
    model: torch.nn.Module, tokens: np.ndarray, batch_size: int = 1024
) -> torch.Tensor:
    """[UR] vectors (U, d) float32 of every row of ``tokens`` in eval mode, on the model's device.

    ``model`` is a fine-tuning head (its ``user_vectors``) or a bare encoder. Rows run in
    length-sorted batches (:func:`~clue_pipeline.training.length_batching.by_length`).
    """
    model.eval()
    encode = model.user_vectors if hasattr(model, "user_vectors") else lambda x: model(x).user
    return by_length(encode, tokens, batch_size, next(model.parameters()).device)


@dataclass
class RepresentationSummary:
    """Every user's eval-mode vector and the quality numbers of the space they span."""

    vectors: np.ndarray  # (U, d) float64
    quality: dict[str, float]  # alignment, uniformity, user_std


def summarise_representation(
    encoder: torch.nn.Module, tokens: np.ndarray, policy: ViewPolicy, quality_users: int, seed: int
) -> RepresentationSummary:
    """The vectors of all rows of ``tokens`` and :func:`representation_quality` of the first
    ``quality_users`` (two views of ``policy``, seeded), as the PCA figure and the cells show
    them: the same sample and views for every method, so their numbers compare."""
    vectors = user_vectors(encoder, tokens).double().numpy()
    quality = representation_quality(
        encoder,
        torch.as_tensor(tokens[:quality_users]),
        policy,
        encoder.config.tokens.mask,
        seed=seed,
    )
    return RepresentationSummary(vectors=vectors, quality=quality)


@torch.no_grad()
def representation_health(
    encoder: torch.nn.Module,
    tokens: torch.Tensor,
    policy: ViewPolicy,
    mask_token: int,
    seed: int,
    projector: torch.nn.Module | None = None,
) -> dict[str, float]:
    """:func:`representation_quality` plus the spectrum of the eval-mode user vectors
    (effective rank, top-2 PC share) and the std of their normalised projections."""
    quality, users = _quality_and_users(encoder, tokens, policy, mask_token, seed)
    effective_rank, top2_share = spectrum(users)
    health = {
        **quality,
        "effective_rank": float(effective_rank),
        "top2_share": float(top2_share),
    }
    if projector is not None:
        projector_training = projector.training
        projector.eval()
        health["projection_std"] = float(z_std(projector(users)))
        projector.train(projector_training)
    return health


@torch.no_grad()
def representation_quality(
    encoder: torch.nn.Module, tokens: torch.Tensor, policy: ViewPolicy, mask_token: int, seed: int
) -> dict[str, float]:
    """Alignment of two views' user vectors, uniformity (Wang & Isola 2020) and spread of users.

    Views keep the model's dropout on (train mode), as in training; uniformity is measured on
    the deterministic vectors (eval mode) that downstream tasks see. ``user_std`` is the std
    of the l2-normalised user vectors across users: near 0 when the encoder has collapsed to
    one vector whatever the input.
    """
    return _quality_and_users(encoder, tokens, policy, mask_token, seed)[0]


def _quality_and_users(
    encoder: torch.nn.Module, tokens: torch.Tensor, policy: ViewPolicy, mask_token: int, seed: int
) -> tuple[dict[str, float], torch.Tensor]:
    device = next(encoder.parameters()).device
    tokens = tokens.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = encoder.training
    encoder.train()
    view_a, view_b = make_views(tokens, policy, generator, mask_token)
    aligned = alignment(encoder(view_a, last=1).user, encoder(view_b, last=1).user)
    encoder.eval()
    users = encoder(tokens, last=1).user
    encoder.train(was_training)
    quality = {
        "alignment": float(aligned),
        "uniformity": float(uniformity(users)),
        "user_std": float(z_std(users)),
    }
    return quality, users
