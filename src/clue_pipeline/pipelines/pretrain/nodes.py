"""Nodes of the `pretrain` pipeline: CLUE, masked-item and S3-Rec pre-training of the encoder."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

import numpy as np
import pandas as pd

from clue_pipeline.augment import validate_view_policy
from clue_pipeline.config import PretrainSettings, encoder_config, parse_pretrain
from clue_pipeline.data.attributes import attribute_codes, load_attributes
from clue_pipeline.data.transfer import pretraining_rows
from clue_pipeline.tasks.batching import model_inputs
from clue_pipeline.tasks.fingerprint import continue_other_length, job_checkpoint_dir, job_lineage
from clue_pipeline.tasks.pretraining import (
    ClueSettings,
    MaskedItemSettings,
    PretrainJob,
    S3RecSettings,
    run_job,
)

logger = logging.getLogger(__name__)


def corpus_sequences(corpus: pd.DataFrame) -> pd.Series:
    """The part of each user's sequence pre-training may see.

    For next-item data that is the training part (validation and test items are never seen);
    for cold-start data the source-domain sequence.
    """
    corpus = pretraining_rows(corpus)  # under the inductive protocol, its own users only
    for column in ("train", "items"):
        if column in corpus.columns:
            return corpus[column]
    raise ValueError(
        f"pre-training corpus has no 'train' or 'items' column: {list(corpus.columns)}"
    )


def pretrain_clue(
    corpus: pd.DataFrame,
    item_index: pd.DataFrame,
    view_policy: dict,
    encoder_params: dict,
    pretrain_params: dict | PretrainSettings,
) -> tuple[dict, list[dict]]:
    """CLUE: ``pretrain.objective`` over two views of every user's sequence (SimSiam by default).

    Returns (encoder, history); the history holds the per-epoch health of the user vectors.
    """
    settings = parse_pretrain(pretrain_params)
    job = _job("clue", corpus, item_index, encoder_params, settings, view_policy)
    job.settings = ClueSettings(
        validate_view_policy(view_policy), settings.simsiam, settings.objective
    )
    return _run(job, settings)


def pretrain_masked_items(
    corpus: pd.DataFrame,
    item_index: pd.DataFrame,
    encoder_params: dict,
    pretrain_params: dict | PretrainSettings,
) -> tuple[dict, list[dict]]:
    """Item-level rival (PeterRec-style masked item prediction) on the same corpus and budget."""
    settings = parse_pretrain(pretrain_params)
    job = _job("mip", corpus, item_index, encoder_params, settings)
    job.settings = MaskedItemSettings(settings.masked_item.mask_ratio)
    return _run(job, settings)


def item_attributes(
    items: pd.DataFrame, item_index: pd.DataFrame, pretrain_params: dict | PretrainSettings
) -> pd.DataFrame:
    """``(token, attribute)`` codes of the indexed items, from ``pretrain.s3rec.attributes``."""
    params = asdict(parse_pretrain(pretrain_params).attributes)
    codes = attribute_codes(load_attributes(params, items), item_index)
    logger.info(
        "item attributes (%s): %d attributes on %d of %d items",
        params.get("source"),
        codes["attribute"].nunique(),
        codes["token"].nunique(),
        len(item_index),
    )
    return codes


def pretrain_s3rec(
    corpus: pd.DataFrame,
    item_index: pd.DataFrame,
    attributes: pd.DataFrame,
    encoder_params: dict,
    pretrain_params: dict | PretrainSettings,
) -> tuple[dict, list[dict]]:
    """S3-Rec's four objectives (AAP, MIP, MAP, SP) on the same corpus, encoder and budget."""
    settings = parse_pretrain(pretrain_params)
    pairs = attributes[["token", "attribute"]].to_numpy(np.int64)
    job = _job("s3rec", corpus, item_index, encoder_params, settings, pairs)
    num_attributes = int(attributes["attribute"].max()) + 1 if len(attributes) else 0
    job.settings = S3RecSettings(settings.s3rec, pairs, num_attributes)
    return _run(job, settings)


def _job(
    method: str,
    corpus: pd.DataFrame,
    item_index: pd.DataFrame,
    encoder_params: dict,
    settings: PretrainSettings,
    inputs=None,
) -> PretrainJob:
    """``inputs``: what the method reads besides the corpus (view policy, attributes), which
    goes into the checkpoint folder's fingerprint."""
    encoder = encoder_config(encoder_params, num_items=len(item_index))
    sequences = corpus_sequences(corpus)
    if len(sequences) == 0:
        raise ValueError("pre-training corpus is empty: check the sequences pipeline's filters")
    train = settings.train
    tokens = model_inputs(sequences, encoder.max_len, encoder.tokens.user)
    parts = (tokens, encoder, train, settings, inputs)
    train = replace(train, checkpoint_dir=job_checkpoint_dir(train.checkpoint_dir, method, *parts))
    if train.checkpoint_dir and train.resume and train.lr_schedule == "constant":
        # more (or fewer) epochs of a finished job continue it rather than start over
        lineage = job_lineage(*parts)
        continue_other_length(train.checkpoint_dir, lineage, train.epochs, train.warmup_epochs)
    logger.info(
        "pre-training %s on %d sequences, %d items, %d epochs",
        method,
        len(tokens),
        encoder.num_items,
        train.epochs,
    )
    return PretrainJob(
        method=method, tokens=tokens, encoder=encoder, train=train, health=settings.health
    )


def _run(job: PretrainJob, settings: PretrainSettings) -> tuple[dict, list[dict]]:
    checkpoint, result = run_job(job, distributed=settings.distributed)
    return checkpoint, result.history


HEALTH_METRICS = ("effective_rank", "top2_share", "alignment", "uniformity", "projection_std")


def plot_pretraining_health(**histories: list[dict]):
    """Per-epoch health of every pre-training run's user vectors, one panel per measure.

    Keyword names are ``<corpus>__<method>``. Dimensional collapse shows as the effective rank
    falling and the top-2 share rising while the loss still improves.
    """
    from clue_pipeline.figures import loss_curves

    labelled = {name.replace("__", " / "): h for name, h in histories.items() if h}
    present = {key for history in labelled.values() for entry in history for key in entry}
    return loss_curves(labelled, metrics=[m for m in HEALTH_METRICS if m in present])
