"""`tune`: Optuna over a next-item recipe's knobs, per dataset; the best trial becomes the
recipe `conf/recipes/tuned_<dataset>.yml`. Not in the default run."""

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
                    "params:dataset_name",
                ],
                outputs=[
                    "best_parameters",
                    "tuned_recipe",
                    "tuning_trials",
                    "dropout_sensitivity_plot",
                ],
                name="tune_clue_with_optuna",
            )
        ],
        tags="tune",
        namespace="tune",
        prefix_datasets_with_namespace=False,
    )
