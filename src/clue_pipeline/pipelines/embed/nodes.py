"""Nodes of the `embed` pipeline: the user-vector table and the neighbours of a few users."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from clue_pipeline.config import to_dataclass
from clue_pipeline.embedding import EmbedConfig, nearest_users, user_vector_table, vector_columns
from clue_pipeline.models.encoders import encoder_from_checkpoint
from clue_pipeline.neighbours import IndexConfig, UserIndex, build_index

logger = logging.getLogger(__name__)

# Earlier releases named encoders `next_item.clue_encoder`; that spelling still selects one.
OLD_SEP, SEP = ".", "__"
PARAMETERS_FILE = "conf/base/parameters_embed.yml"


def embed_users(sequences: pd.DataFrame, embed_params: dict, **encoders: dict) -> pd.DataFrame:
    """``user_vectors``: every user of ``sequences`` embedded by the encoder ``embed.encoder``.

    ``encoders`` holds every candidate checkpoint, keyed by catalog name; see ``clue_pipeline.embedding.user_vector_table`` for why the input is the user's
    whole sequence.
    """
    params = dict(embed_params)
    for key in ("encoder", "similar_users", "index"):
        params.pop(key, None)
    chosen, checkpoint = chosen_encoder(embed_params, encoders)
    config = to_dataclass(EmbedConfig, params, "embed")
    encoder = encoder_from_checkpoint(checkpoint)
    vectors = user_vector_table(encoder, sequences, config)
    logger.info(
        "embedded %d users with %s (d = %d, last %d items each)",
        len(vectors),
        chosen,
        vectors.shape[1] - 1,
        encoder.config.max_len,
    )
    return vectors


def chosen_encoder(embed_params: dict, encoders: dict[str, dict]) -> tuple[str, dict]:
    """``embed.encoder``'s name and checkpoint among the candidates (a bad name is named)."""
    chosen = embed_params.get("encoder")
    if isinstance(chosen, str) and chosen.replace(OLD_SEP, SEP) in encoders:
        chosen = chosen.replace(OLD_SEP, SEP)
    if chosen not in encoders:
        raise ValueError(
            f"parameter embed.encoder = {chosen!r} ({PARAMETERS_FILE}): expected one of "
            f"{sorted(encoders)}"
        )
    return chosen, encoders[chosen]


def register_user_vector_model(
    sequences: pd.DataFrame,
    item_index: pd.DataFrame,
    user_index: bytes,
    embed_params: dict,
    tracking_params: dict,
    **encoders: dict,
) -> dict:
    """Log the encoder ``embed`` used as an MLflow pyfunc (item ids -> user vector), with the
    nearest-user index built from its vectors, so the served model also answers neighbours.

    Registered under ``tracking.registered_model_name``; the input example is a few real
    users' histories in original item ids. Without an active MLflow run nothing is logged.
    """
    import mlflow

    from clue_pipeline.serving import log_user_vector_model

    if mlflow.active_run() is None:
        logger.info("no active MLflow run: the user-vector model is not registered")
        return {"registered": False}
    _, checkpoint = chosen_encoder(embed_params, encoders)
    decode = item_index.set_index("token")["item_id"]
    example = sequences.head(int(tracking_params["input_example_users"]))
    input_example = pd.DataFrame(
        {"items": [decode.loc[list(items)].astype("int64").tolist() for items in example["items"]]}
    )
    name = tracking_params["registered_model_name"]
    info = log_user_vector_model(
        checkpoint, item_index, name, input_example, user_index=UserIndex.from_bytes(user_index)
    )
    return {
        "registered": True,
        "model_uri": info.model_uri,
        "registered_model_name": name,
        "registered_model_version": getattr(info, "registered_model_version", None),
    }


def find_similar_users(user_vectors: pd.DataFrame, similar_params: dict) -> pd.DataFrame:
    """``similar_users``: the ``k`` nearest users (cosine) of each user in ``user_ids``.

    An empty ``user_ids`` means the first ``first_users`` users of the table, so the default
    run shows an example on any dataset without knowing its ids.
    """
    user_ids = list(similar_params.get("user_ids") or [])
    if not user_ids:
        count = int(similar_params["first_users"])
        user_ids = user_vectors["user_id"].head(count).tolist()
    return nearest_users(user_vectors, user_ids, int(similar_params["k"]))


def build_user_index(user_vectors: pd.DataFrame, index_params: dict) -> bytes:
    """``user_index``: every user's vector in a nearest-user index (exact or HNSW by size).

    Returned as ``UserIndex.to_bytes()`` (faiss index and user ids), which
    ``clue_pipeline.neighbours.UserIndex.from_bytes`` reads back and the served model loads.
    """
    config = to_dataclass(IndexConfig, index_params, "embed.index")
    vectors = user_vectors[vector_columns(user_vectors)].to_numpy(np.float32)
    index = build_index(user_vectors["user_id"].to_numpy(np.int64), vectors, config)
    logger.info("indexed %d users (%s, d = %d)", len(index), index.method, index.dim)
    return index.to_bytes()


def log_user_index(user_index: bytes) -> bytes:
    """``user_index_artifact``: the index again, for the run's MLflow artifacts (see
    conf/base/catalog_embed.yml for why the versioned file and the artifact are two entries)."""
    return user_index
