"""`evaluate`: test metrics of every fine-tuned model, and one table of them all."""

from kedro.pipeline import Node, Pipeline

from clue_pipeline.pipelines.finetune.pipeline import TASKS, methods_of
from clue_pipeline.pipelines.pretrain.pipeline import CORPORA


def create_pipeline(**kwargs) -> Pipeline:
    from . import nodes

    evaluators = {
        "next_item": (nodes.evaluate_next_item, ["next_item_split", "item_index"]),
        "profiling": (nodes.evaluate_profiling, ["profile_split", "profile_classes", "item_index"]),
        "coldstart": (
            nodes.evaluate_coldstart,
            ["coldstart_source", "coldstart_targets", "item_index"],
        ),
    }
    evaluation_nodes = []
    metric_names = {}
    for task in TASKS:
        function, data = evaluators[task]
        for method in methods_of(task):
            metrics = f"{task}.{method}_metrics"
            metric_names[f"{task}__{method}"] = metrics
            evaluation_nodes.append(
                Node(
                    function,
                    inputs=[
                        f"{task}.{method}_model",
                        *data,
                        "params:evaluate",
                        "params:dataset_name",
                    ],
                    outputs=metrics,
                    name=f"evaluate_{task}_{method}",
                    namespace=task,
                    tags=["evaluate", task, method],
                )
            )
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
            f"{corpus}__{method}": f"{corpus}.{method}_pretrain_history"
            for corpus in CORPORA
            for method in ("clue", "mip", "s3rec")
        },
        outputs="pretraining_curves_plot",
        name="plot_pretraining_curves",
        tags="evaluate",
    )
    pca = Node(
        nodes.plot_user_vectors,
        inputs=[
            "next_item.clue_encoder",
            "sequences",
            "users",
            "view_policy",
            "params:evaluate.figures",
        ],
        outputs="user_vectors_pca_plot",
        name="plot_user_vectors_pca",
        tags="evaluate",
    )
    return Pipeline([*evaluation_nodes, summary, curves, pca])
