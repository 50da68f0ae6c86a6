"""`pretrain`: one CLUE, one masked-item and one S3-Rec encoder per pre-training corpus.

Corpora differ by downstream task so that no evaluation target is ever seen in pre-training:
`next_item` uses the training part of each sequence (profiling reuses it), `coldstart` the
source-domain sequences. In Kedro-Viz the stage is one box (namespace `pretrain`) holding a
box per corpus (`pretrain.next_item`, ...); dataset names carry no dots: corpus and method
are joined by `__` (`next_item__clue_encoder`).
"""

from kedro.pipeline import Node, Pipeline

CORPORA = {"next_item": "next_item_split", "coldstart": "coldstart_source"}
SEP = "__"  # between corpus (or task) and method in a dataset name
# method -> its node in each corpus's template
METHOD_NODES = {
    "clue": "pretrain_clue",
    "mip": "pretrain_masked_item_prediction",
    "s3rec": "pretrain_s3rec",
}


def encoder_name(corpus: str, method: str) -> str:
    """The catalog name of a pre-trained encoder, e.g. ``next_item__clue_encoder``."""
    return f"{corpus}{SEP}{method}_encoder"


def create_pipeline(
    corpora: tuple[str, ...] = tuple(CORPORA),
    methods: tuple[str, ...] = tuple(METHOD_NODES),
    **kwargs,
) -> Pipeline:
    """Every method on every corpus; ``corpora`` / ``methods`` narrow it (the `core` chain)."""
    from .nodes import (
        item_attributes,
        plot_pretraining_health,
    )

    template = _methods_template().only_nodes(*(METHOD_NODES[m] for m in methods))
    attributes = Node(
        item_attributes,
        inputs=["items", "item_index", "params:pretrain"],
        outputs="item_attributes",
        name="item_attributes",
        namespace="pretrain",
        tags="pretrain",
    )
    health = Node(
        plot_pretraining_health,
        inputs={
            f"{corpus}__{method}": f"{corpus}{SEP}{method}_pretrain_history"
            for corpus in corpora
            for method in ("clue", "mip")
            if method in methods
        },
        outputs="pretraining_health_plot",
        name="plot_pretraining_health",
        namespace="pretrain",
        tags="pretrain",
    )
    return sum(
        (
            Pipeline(
                template,
                namespace=f"pretrain.{corpus}",
                prefix_datasets_with_namespace=False,
                inputs={
                    name: source
                    for name, source in {
                        "corpus": CORPORA[corpus],
                        "item_index": "item_index",
                        "view_policy": "view_policy",
                        "item_attributes": "item_attributes",
                    }.items()
                    if name in template.inputs()
                },
                outputs={name: f"{corpus}{SEP}{name}" for name in template.outputs()},
                parameters={"params:encoder", "params:pretrain"},
                tags=["pretrain", corpus],
            )
            for corpus in corpora
        ),
        Pipeline([health, attributes] if "s3rec" in methods else [health]),
    )


def _methods_template() -> Pipeline:
    """One corpus's pre-training, a node per method, instantiated per corpus below."""
    from .nodes import pretrain_clue, pretrain_masked_items, pretrain_s3rec

    return Pipeline(
        [
            Node(
                pretrain_clue,
                inputs=["corpus", "item_index", "view_policy", "params:encoder", "params:pretrain"],
                outputs=["clue_encoder", "clue_pretrain_history"],
                name="pretrain_clue",
            ),
            Node(
                pretrain_masked_items,
                inputs=["corpus", "item_index", "params:encoder", "params:pretrain"],
                outputs=["mip_encoder", "mip_pretrain_history"],
                name="pretrain_masked_item_prediction",
            ),
            Node(
                pretrain_s3rec,
                inputs=[
                    "corpus",
                    "item_index",
                    "item_attributes",
                    "params:encoder",
                    "params:pretrain",
                ],
                outputs=["s3rec_encoder", "s3rec_pretrain_history"],
                name="pretrain_s3rec",
            ),
        ]
    )
