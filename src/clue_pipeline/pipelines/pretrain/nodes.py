"""Nodes of the `pretrain` pipeline: CLUE, masked-item and S3-Rec pre-training of the encoder."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from clue_pipeline.augment import validate_view_policy
from clue_pipeline.config import encoder_config, to_dataclass, train_config
from clue_pipeline.data.attributes import attribute_codes, load_attributes
from clue_pipeline.models.objectives import ObjectiveConfig
from clue_pipeline.models.s3rec import S3RecConfig
from clue_pipeline.tasks.batching import model_inputs
from clue_pipeline.tasks.fingerprint import job_checkpoint_dir
from clue_pipeline.tasks.pretraining import HealthConfig, PretrainJob, SimSiamConfig, run_job

logger = logging.getLogger(__name__)


def corpus_sequences(corpus: pd.DataFrame) -> pd.Series:
    """The part of each user's sequence pre-training may see.

    For next-item data that is the training part (validation and test items are never seen);
    for cold-start data the source-domain sequence.
    """
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
    pretrain_params: dict,
) -> tuple[dict, list[dict]]:
    """CLUE: ``pretrain.objective`` over two views of every user's sequence (SimSiam by default).

    Returns (encoder, history); the history holds the per-epoch health of the user vectors.
    """
    job = _job("clue", corpus, item_index, encoder_params, pretrain_params, view_policy)
    job.view_policy = validate_view_policy(view_policy)
    job.simsiam = to_dataclass(SimSiamConfig, pretrain_params.get("simsiam"), "pretrain.simsiam")
    job.objective = to_dataclass(
        ObjectiveConfig, pretrain_params.get("objective"), "pretrain.objective"
    )
    return _run(job, pretrain_params)


def pretrain_masked_items(
    corpus: pd.DataFrame, item_index: pd.DataFrame, encoder_params: dict, pretrain_params: dict
) -> tuple[dict, list[dict]]:
    """Item-level rival (PeterRec-style masked item prediction) on the same corpus and budget."""
    job = _job("mip", corpus, item_index, encoder_params, pretrain_params)
    job.mask_ratio = float(pretrain_params["masked_item"]["mask_ratio"])
    return _run(job, pretrain_params)


def item_attributes(
    items: pd.DataFrame, item_index: pd.DataFrame, pretrain_params: dict
) -> pd.DataFrame:
    """``(token, attribute)`` codes of the indexed items, from ``pretrain.s3rec.attributes``."""
    params = pretrain_params.get("s3rec", {}).get("attributes") or {"source": "none"}
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
    pretrain_params: dict,
) -> tuple[dict, list[dict]]:
    """S3-Rec's four objectives (AAP, MIP, MAP, SP) on the same corpus, encoder and budget."""
    pairs = attributes[["token", "attribute"]].to_numpy(np.int64)
    job = _job("s3rec", corpus, item_index, encoder_params, pretrain_params, pairs)
    settings = {k: v for k, v in pretrain_params["s3rec"].items() if k != "attributes"}
    job.s3rec = to_dataclass(S3RecConfig, settings, "pretrain.s3rec")
    job.attribute_pairs = pairs
    job.num_attributes = int(attributes["attribute"].max()) + 1 if len(attributes) else 0
    return _run(job, pretrain_params)


def _job(method, corpus, item_index, encoder_params, pretrain_params, inputs=None) -> PretrainJob:
    """``inputs``: what the method reads besides the corpus (view policy, attributes), which
    goes into the checkpoint folder's fingerprint."""
    encoder = encoder_config(encoder_params, num_items=len(item_index))
    sequences = corpus_sequences(corpus)
    if len(sequences) == 0:
        raise ValueError("pre-training corpus is empty: check the sequences pipeline's filters")
    train_params = dict(pretrain_params["train"])
    base_dir = train_params.pop("checkpoint_dir", None)
    train = train_config(train_params, "pretrain.train")
    tokens = model_inputs(sequences, encoder.max_len, encoder.tokens.user)
    train.checkpoint_dir = job_checkpoint_dir(
        base_dir, method, tokens, encoder, train, pretrain_params, inputs
    )
    logger.info(
        "pre-training %s on %d sequences, %d items, %d epochs",
        method,
        len(tokens),
        encoder.num_items,
        train.epochs,
    )
    health = to_dataclass(HealthConfig, pretrain_params.get("health"), "pretrain.health")
    return PretrainJob(method=method, tokens=tokens, encoder=encoder, train=train, health=health)


def _run(job: PretrainJob, pretrain_params: dict) -> tuple[dict, list[dict]]:
    nproc = int(pretrain_params.get("distributed", {}).get("nproc_per_node", 1))
    checkpoint, result = run_job(job, nproc_per_node=nproc)
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


def register_user_vector_model(
    encoder: dict, item_index: pd.DataFrame, sequences: pd.DataFrame, tracking_params: dict
) -> dict:
    """Log the CLUE encoder as an MLflow pyfunc (sequences of item ids -> user vectors).

    Registered under ``tracking.registered_model_name``; the input example is a few real
    users' histories in original item ids. Without an active MLflow run nothing is logged.
    """
    import mlflow

    from clue_pipeline.tracking import log_user_vector_model

    if mlflow.active_run() is None:
        logger.info("no active MLflow run: the user-vector model is not registered")
        return {"registered": False}
    decode = item_index.set_index("token")["item_id"]
    example = sequences.head(int(tracking_params["input_example_users"]))
    input_example = pd.DataFrame(
        {"items": [decode.loc[list(items)].astype("int64").tolist() for items in example["items"]]}
    )
    info = log_user_vector_model(
        encoder, item_index, tracking_params["registered_model_name"], input_example
    )
    return {
        "registered": True,
        "model_uri": info.model_uri,
        "registered_model_name": tracking_params["registered_model_name"],
        "registered_model_version": getattr(info, "registered_model_version", None),
    }
