"""`tune`: Optuna over dropout (and optionally views, ratio, learning rate); not in the default run."""

from kedro.pipeline import Node, Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    from .nodes import tune_clue

    return Pipeline(
        [
            Node(
                tune_clue,
                inputs=[
                    "next_item_split",
                    "item_index",
                    "params:encoder",
                    "params:augment.views",
                    "params:pretrain",
                    "params:finetune",
                    "params:tune",
                    "params:evaluate.exclude_history",
                ],
                outputs=["best_parameters", "tuning_trials", "dropout_sensitivity_plot"],
                name="tune_clue_with_optuna",
            )
        ],
        tags="tune",
        namespace="tune",
        prefix_datasets_with_namespace=False,
    )
