"""`augment`: the view stage of the graph — validated settings and inspectable samples."""

from kedro.pipeline import Node, Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    from .nodes import build_view_policy, sample_views

    return Pipeline(
        [
            Node(
                build_view_policy,
                inputs="params:augment.views",
                outputs="view_policy",
                name="validate_view_policy",
            ),
            Node(
                sample_views,
                inputs=[
                    "sequences",
                    "item_index",
                    "view_policy",
                    "params:augment.samples",
                    "params:encoder.max_len",
                ],
                outputs="view_samples",
                name="sample_views_for_inspection",
            ),
        ],
        tags="augment",
        namespace="augment",
        prefix_datasets_with_namespace=False,
    )
