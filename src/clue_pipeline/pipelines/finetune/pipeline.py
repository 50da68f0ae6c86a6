"""`finetune`: every method on every downstream task, through the one training loop.

Methods differ only in where the encoder's weights come from (`init`), the backbone and whether
the encoder is frozen (linear probe); their knobs live in `conf/base/parameters_finetune.yml`.
In Kedro-Viz the stage is one box (namespace `finetune`) with a box per task
(`finetune.next_item`, ...); dataset names join task and method by `__` (`next_item__clue_model`).
One more node draws every job's history as one figure, so the histories stay inside the box.
"""

import inspect

from kedro.pipeline import Node, Pipeline

from clue_pipeline.pipelines.pretrain.pipeline import SEP, encoder_name

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
    "linear": None,
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


def methods_of(task: str, only: tuple[str, ...] | None = None) -> dict[str, str | None]:
    """The methods fine-tuned for ``task`` (those of ``only``, where given)."""
    methods = NEXT_ITEM_METHODS if task == "next_item" else USER_TASK_METHODS
    return {m: init for m, init in methods.items() if only is None or m in only}


def create_pipeline(
    tasks: tuple[str, ...] = tuple(TASKS), methods: tuple[str, ...] | None = None, **kwargs
) -> Pipeline:
    """Every method on every task; ``tasks`` / ``methods`` narrow it (the `core` chain)."""
    from . import nodes

    pipelines = []
    for task in tasks:
        function, data, corpus = TASKS[task]
        task_nodes = []
        for method, init in methods_of(task, methods).items():
            node_fn = getattr(nodes, function)
            names = list(inspect.signature(node_fn).parameters)
            inputs = dict(
                zip(
                    names,
                    [
                        *data,
                        "params:encoder",
                        "params:finetune",
                        f"params:finetune.methods.{method}",
                    ],
                    strict=False,
                )
            )
            if init is not None:
                inputs["pretrained"] = encoder_name(corpus, init)
            if "exclude_history" in names:  # the one ranking protocol: selection follows the test
                inputs["exclude_history"] = "params:evaluate.exclude_history"
            task_nodes.append(
                Node(
                    node_fn,
                    inputs=inputs,
                    outputs=[f"{task}{SEP}{method}_model", f"{task}{SEP}{method}_history"],
                    name=f"finetune_{task}_{method}",
                    tags=method,
                )
            )
        pipelines.append(
            Pipeline(
                task_nodes,
                namespace=f"finetune.{task}",
                prefix_datasets_with_namespace=False,
                tags=["finetune", task],
            )
        )
    return sum(pipelines, _curves(tasks, methods))


def _curves(tasks: tuple[str, ...], methods: tuple[str, ...] | None) -> Pipeline:
    """Every fine-tuning history into one figure (``finetuning_curves.png``)."""
    from .curves import plot_finetuning_curves

    histories = {
        f"{task}{SEP}{method}": f"{task}{SEP}{method}_history"
        for task in tasks
        for method in methods_of(task, methods)
    }
    return Pipeline(
        [
            Node(
                plot_finetuning_curves,
                inputs={"tasks": "params:finetune.tasks", **histories},
                outputs="finetuning_curves_plot",
                name="plot_finetuning_curves",
            )
        ],
        namespace="finetune",
        prefix_datasets_with_namespace=False,
        tags="finetune",
    )
