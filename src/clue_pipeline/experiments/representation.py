"""What the PCA figure needs from a pre-trained encoder, small enough to keep in a cell's JSON:
2-D PCA coordinates of a sample of users, explained variance, alignment and uniformity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from clue_pipeline.augment import validate_view_policy
from clue_pipeline.figures import pca_2d
from clue_pipeline.models.encoders import encoder_from_checkpoint
from clue_pipeline.models.representation import summarise_representation
from clue_pipeline.tasks.batching import model_inputs


@dataclass
class RepresentationConfig:
    sample_users: int = 1000  # users drawn in the PCA figure (coordinates kept in the JSON)
    quality_users: int = 512  # users for alignment and uniformity (as the pre-training log)
    seed: int = 7
    views: dict[str, Any] | None = None  # view policy of the alignment pairs; None = dropout
    colour_by: tuple[str, ...] = ("gender", "age", "occupation")  # first users column found


def summarise_encoder(
    checkpoint: dict,
    sequences: pd.Series,
    config: RepresentationConfig,
    users: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """PCA of every user's vector (a seeded sample kept), and the quality numbers of the space.

    PCA is fitted on all users, so the explained variance is that of the whole space; the
    alignment pairs are two dropout passes unless ``config.views`` says otherwise, the same
    views for every method so their numbers compare. ``users`` (aligned with ``sequences``)
    gives the attribute the points are labelled by, as the paper colours users by gender.
    """
    encoder = encoder_from_checkpoint(checkpoint).eval()
    enc = encoder.config
    tokens = model_inputs(sequences, enc.max_len, enc.tokens.user)
    policy = validate_view_policy(config.views or {"strategies": ["dropout"]})
    summary = summarise_representation(encoder, tokens, policy, config.quality_users, config.seed)
    points, explained = pca_2d(summary.vectors)
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.permutation(len(tokens))[: config.sample_users])
    lengths = (tokens != 0).sum(axis=1) - 1  # without [UR]
    label = _label(users, config.colour_by)
    return {
        "users": int(len(tokens)),
        "explained_variance": [float(v) for v in explained],
        "pca": {
            "x": np.round(points[chosen, 0], 5).tolist(),
            "y": np.round(points[chosen, 1], 5).tolist(),
            "history_length": lengths[chosen].astype(int).tolist(),
            **({} if label is None else {label.name: label.iloc[chosen].astype(str).tolist()}),
        },
        "label": None if label is None else label.name,
        **summary.quality,
    }


def _label(users: pd.DataFrame | None, candidates: tuple[str, ...]) -> pd.Series | None:
    if users is None:
        return None
    for column in candidates:
        if column in users.columns:
            return users[column].fillna("unknown").reset_index(drop=True)
    return None
