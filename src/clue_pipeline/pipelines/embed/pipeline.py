"""`embed`: every user's vector from a chosen pre-trained encoder, and some users' neighbours.

Every pre-trained encoder of the catalog is an input; the parameter ``embed.encoder`` picks
one. Kedro fixes a node's inputs when the pipeline is built, before parameters are read, so
choosing by parameter means offering all of them (a few small checkpoints to load).
"""

from kedro.pipeline import Node, Pipeline

from clue_pipeline.pipelines.pretrain.pipeline import CORPORA, encoder_name

from .nodes import (
    build_user_index,
    embed_users,
    find_similar_users,
    log_user_index,
    register_user_vector_model,
)

PRETRAIN_METHODS = ("clue", "mip")  # the `{method}_encoder` outputs of the pretrain pipeline
ENCODERS = [encoder_name(corpus, method) for corpus in CORPORA for method in PRETRAIN_METHODS]


def create_pipeline(encoders: tuple[str, ...] = tuple(ENCODERS), **kwargs) -> Pipeline:
    """``encoders``: the checkpoints ``embed.encoder`` may name (every pre-trained one, or the
    `core` chain's CLUE encoder alone)."""
    encoder_inputs = {name: name for name in encoders}
    return Pipeline(
        [
            Node(
                embed_users,
                inputs={"sequences": "sequences", "embed_params": "params:embed", **encoder_inputs},
                outputs="user_vectors",
                name="embed_users",
            ),
            Node(
                find_similar_users,
                inputs=["user_vectors", "params:embed.similar_users"],
                outputs="similar_users",
                name="find_similar_users",
            ),
            Node(
                build_user_index,
                inputs=["user_vectors", "params:embed.index"],
                outputs="user_index",
                name="build_user_index",
            ),
            Node(
                log_user_index,
                inputs="user_index",
                outputs="user_index_artifact",
                name="log_user_index",
            ),
            Node(
                register_user_vector_model,
                inputs={
                    "sequences": "sequences",
                    "item_index": "item_index",
                    "user_index": "user_index",
                    "embed_params": "params:embed",
                    "tracking_params": "params:tracking",
                    **encoder_inputs,
                },
                outputs="user_vector_model_registration",
                name="register_user_vector_model",
            ),
        ],
        tags="embed",
        namespace="embed",
        prefix_datasets_with_namespace=False,
    )
