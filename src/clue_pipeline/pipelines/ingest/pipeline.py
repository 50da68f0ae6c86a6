"""Wiring of the ingest pipeline."""

from kedro.pipeline import Node, Pipeline

from clue_pipeline.pipelines.ingest.nodes import (
    locate_raw_dataset,
    read_raw_dataset,
    validate_dataset,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                locate_raw_dataset,
                inputs="params:ingest",
                outputs="raw_dataset_path",
                name="locate_raw_dataset",
            ),
            Node(
                read_raw_dataset,
                inputs=["raw_dataset_path", "params:ingest"],
                outputs=["raw_interactions", "raw_users", "raw_items"],
                name="read_raw_dataset",
            ),
            Node(
                validate_dataset,
                inputs=["raw_interactions", "raw_users", "raw_items", "params:ingest"],
                outputs=["interactions", "users", "items"],
                name="validate_dataset",
            ),
        ],
        namespace="ingest",
        prefix_datasets_with_namespace=False,  # a box in Kedro-Viz; names stay as in the catalog
        tags=["ingest"],
    )
