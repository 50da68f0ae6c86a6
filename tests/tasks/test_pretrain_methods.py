"""The registry of pre-training methods: a job names a registered method and carries its settings."""

from __future__ import annotations

import numpy as np
import pytest

from clue_pipeline.config.pretraining import ObjectiveConfig
from clue_pipeline.models.encoders import EncoderConfig
from clue_pipeline.tasks.pretraining import (
    PRETRAIN_METHODS,
    ClueSettings,
    MaskedItemSettings,
    PretrainJob,
    S3RecSettings,
    build_pretraining,
)
from clue_pipeline.training.loop import TrainConfig

ENCODER = EncoderConfig(num_items=10, max_len=5, hidden=8, heads=2, blocks=1)
TOKENS = np.array([[0, 1, 2, 3, 4, 12], [0, 0, 5, 6, 7, 12]], dtype=np.int64)


def job(method: str, settings=None) -> PretrainJob:
    return PretrainJob(method, TOKENS, ENCODER, TrainConfig(epochs=1, batch_size=2), settings)


def test_every_method_gets_its_default_settings_and_builds():
    expected = {"clue": ClueSettings, "mip": MaskedItemSettings, "s3rec": S3RecSettings}
    assert {name: m.settings for name, m in PRETRAIN_METHODS.items()} == expected
    for name, kind in expected.items():
        settings = kind(view_policy=None) if kind is ClueSettings else None
        built = job(name, settings)
        assert isinstance(built.settings, kind)
        if name != "clue":  # CLUE's step needs a view policy; its model builds regardless
            assert build_pretraining(built).dataset[0].shape == TOKENS.shape


def test_unknown_method_and_foreign_settings_are_named():
    with pytest.raises(ValueError, match="unknown 'simclr'.*clue"):
        job("simclr")
    with pytest.raises(TypeError, match="MaskedItemSettings.*expected S3RecSettings"):
        job("s3rec", MaskedItemSettings(0.3))


def test_a_clue_job_with_tfidf_bag_targets_weighs_items_over_its_own_rows():
    objective = ObjectiveConfig(next_item_weight=0.0, bag_weight=1.0, bag_targets="tfidf")
    model = build_pretraining(job("clue", ClueSettings(objective=objective))).model
    weights = model.bag_item_weights  # items 1..10; 1..7 read by one row of two, 8..10 by none
    assert weights.shape == (10,)
    assert weights[:7].unique().numel() == 1 and weights[7:].unique().numel() == 1
    assert float(weights[7]) > float(weights[0]) > 1.0
