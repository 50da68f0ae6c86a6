"""`evaluate`: test metrics of every fine-tuned model, and one table of them all.

One box in Kedro-Viz (namespace `evaluate`) with a box per task inside.
"""

from kedro.pipeline import Node, Pipeline

from clue_pipeline.pipelines.finetune.pipeline import TASKS, methods_of
from clue_pipeline.pipelines.pretrain.pipeline import CORPORA, METHOD_NODES, SEP, encoder_name


def create_pipeline(
    tasks: tuple[str, ...] = tuple(TASKS),
    methods: tuple[str, ...] | None = None,
    corpora: tuple[str, ...] = tuple(CORPORA),
    pretrain_methods: tuple[str, ...] = tuple(METHOD_NODES),
    **kwargs,
) -> Pipeline:
    """Every fine-tuned model's test metrics; the arguments narrow it as in `finetune` and
    `pretrain` (the `core` chain)."""
    from . import nodes

    evaluators = {
        "next_item": (nodes.evaluate_next_item, ["next_item_split", "item_index"]),
        "profiling": (nodes.evaluate_profiling, ["profile_split", "profile_classes", "item_index"]),
        "coldstart": (
            nodes.evaluate_coldstart,
            ["coldstart_source", "coldstart_targets", "item_index"],
        ),
    }
    evaluation = []
    metric_names = {}
    for task in tasks:
        function, data = evaluators[task]
        task_nodes = []
        for method in methods_of(task, methods):
            metrics = f"{task}{SEP}{method}_metrics"
            metric_names[f"{task}{SEP}{method}"] = metrics
            task_nodes.append(
                Node(
                    function,
                    inputs=[
                        f"{task}{SEP}{method}_model",
                        *data,
                        "params:evaluate",
                        "params:dataset_name",
                    ],
                    outputs=metrics,
                    name=f"evaluate_{task}_{method}",
                    tags=method,
                )
            )
        evaluation.append(
            Pipeline(
                task_nodes,
                namespace=f"evaluate.{task}",
                prefix_datasets_with_namespace=False,
                tags=["evaluate", task],
            )
        )
    return sum(evaluation, _overview(metric_names, corpora, pretrain_methods))


def _overview(
    metric_names: dict[str, str], corpora: tuple[str, ...], pretrain_methods: tuple[str, ...]
) -> Pipeline:
    """One table of every test metric, the pre-training curves and the user-vector PCA."""
    from . import nodes

    summary = Node(
        nodes.summarise_metrics,
        inputs=metric_names,
        outputs=["metrics_summary", "metrics_table"],
        name="summarise_metrics",
        tags="evaluate",
    )
    curves = Node(
        nodes.plot_pretraining_curves,
        inputs={
            f"{corpus}{SEP}{method}": f"{corpus}{SEP}{method}_pretrain_history"
            for corpus in corpora
            for method in pretrain_methods
        },
        outputs="pretraining_curves_plot",
        name="plot_pretraining_curves",
        tags="evaluate",
    )
    pca = Node(
        nodes.plot_user_vectors,
        inputs=[
            encoder_name("next_item", "clue"),
            "sequences",
            "users",
            "view_policy",
            "params:evaluate.figures",
        ],
        outputs="user_vectors_pca_plot",
        name="plot_user_vectors_pca",
        tags="evaluate",
    )
    with_pca = "next_item" in corpora and "clue" in pretrain_methods
    return Pipeline(
        [summary, curves, pca] if with_pca else [summary, curves],
        namespace="evaluate",
        prefix_datasets_with_namespace=False,
    )
