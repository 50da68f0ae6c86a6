"""`finetune`: every method on every downstream task, through the one training loop.

Methods differ only in where the encoder's weights come from (`init`), the backbone and whether
the encoder is frozen (linear probe); their knobs live in `conf/base/parameters_finetune.yml`.
Each task is a namespace, so Kedro-Viz folds it into one box.
"""

from kedro.pipeline import Node, Pipeline

# method -> pre-trained encoder it starts from (None = random initialisation)
NEXT_ITEM_METHODS = {
    "clue": "clue",
    "clue_zero": None,
    "mip": "mip",
    "gru": None,
    "cnn": None,
    "caser": None,
    "s3rec": "s3rec",
    "clue_probe": "clue",
    "mip_probe": "mip",
    "pop": None,
}
USER_TASK_METHODS = {
    "clue": "clue",
    "clue_zero": None,
    "mip": "mip",
    "nfm": None,
    "deepfm": None,
    "s3rec": "s3rec",
    "clue_probe": "clue",
    "mip_probe": "mip",
    "pop": None,
}
# task -> (node function name, its data inputs, the pre-training corpus whose encoders it uses)
TASKS = {
    "next_item": ("finetune_next_item", ["next_item_split", "item_index"], "next_item"),
    "profiling": (
        "finetune_profiling",
        ["profile_split", "profile_classes", "item_index"],
        "next_item",
    ),
    "coldstart": (
        "finetune_coldstart",
        ["coldstart_source", "coldstart_targets", "coldstart_target_index", "item_index"],
        "coldstart",
    ),
}


def methods_of(task: str) -> dict[str, str | None]:
    return NEXT_ITEM_METHODS if task == "next_item" else USER_TASK_METHODS


def create_pipeline(**kwargs) -> Pipeline:
    from . import nodes

    pipelines = []
    for task, (function, data, corpus) in TASKS.items():
        task_nodes = []
        for method, init in methods_of(task).items():
            inputs = [
                *data,
                "params:encoder",
                "params:finetune",
                f"params:finetune.methods.{method}",
            ]
            if init is not None:
                inputs.append(f"{corpus}.{init}_encoder")
            task_nodes.append(
                Node(
                    getattr(nodes, function),
                    inputs=inputs,
                    outputs=[f"{task}.{method}_model", f"{task}.{method}_history"],
                    name=f"finetune_{task}_{method}",
                    namespace=task,
                    tags=["finetune", task, method],
                )
            )
        pipelines.append(Pipeline(task_nodes))
    return sum(pipelines, Pipeline([]))
