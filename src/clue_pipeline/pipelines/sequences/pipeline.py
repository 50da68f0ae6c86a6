"""Wiring of the ``sequences`` pipeline."""

from kedro.pipeline import Node, Pipeline

from clue_pipeline.pipelines.sequences.nodes import (
    build_coldstart_tables,
    filter_and_order_interactions,
    index_items_and_build_sequences,
    split_next_item,
    split_profiles,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                filter_and_order_interactions,
                inputs=["interactions", "params:sequences"],
                outputs="filtered_interactions",
                name="filter_and_order_interactions",
            ),
            Node(
                index_items_and_build_sequences,
                inputs=["filtered_interactions", "params:sequences", "params:encoder.max_len"],
                outputs=["item_index", "sequences"],
                name="index_items_and_build_sequences",
            ),
            Node(
                split_next_item,
                inputs=["sequences", "params:sequences"],
                outputs="next_item_split",
                name="split_next_item_leave_one_out",
            ),
            Node(
                split_profiles,
                inputs=["sequences", "users", "params:sequences"],
                outputs=["profile_split", "profile_classes"],
                name="split_profiling_users",
            ),
            Node(
                build_coldstart_tables,
                inputs=[
                    "filtered_interactions",
                    "items",
                    "item_index",
                    "params:sequences",
                    "params:encoder.max_len",
                ],
                outputs=["coldstart_source", "coldstart_targets", "coldstart_target_index"],
                name="build_coldstart_tables",
            ),
        ],
        tags="sequences",
        namespace="sequences",
        prefix_datasets_with_namespace=False,
    )
