"""CLUE's BatchNorm heads see batches of mixed length; the other pre-training methods may take
batches of one length (`pretrain.train.bucket_by_length` is shared by all of them)."""

from __future__ import annotations

import logging

import numpy as np

from clue_pipeline.models.encoders import EncoderConfig
from clue_pipeline.tasks.pretraining import PretrainJob, mixed_batches
from clue_pipeline.training.loop import TrainConfig


def job(method: str, bucket: bool) -> PretrainJob:
    return PretrainJob(
        method=method,
        tokens=np.zeros((4, 6), dtype=np.int64),
        encoder=EncoderConfig(num_items=10, max_len=5),
        train=TrainConfig(epochs=1, batch_size=2, bucket_by_length=bucket),
    )


def test_clue_draws_mixed_batches_and_says_so(caplog):
    with caplog.at_level(logging.INFO, logger="clue_pipeline.tasks.pretraining"):
        assert mixed_batches(job("clue", True)).train.bucket_by_length is False
    assert "mixed length" in caplog.text and "length groups" in caplog.text


def test_other_methods_keep_their_buckets():
    for method in ("mip", "s3rec"):
        assert mixed_batches(job(method, True)).train.bucket_by_length is True
    assert mixed_batches(job("clue", False)).train.bucket_by_length is False
