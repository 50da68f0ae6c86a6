"""`report`: run the paper's experiments as cached cells, then write report.md and its figures.

Not in the default run: each cell is a whole `kedro run` of other pipelines' nodes.
"""

from kedro.pipeline import Node, Pipeline


def create_pipeline(**kwargs) -> Pipeline:
    from .nodes import build_report, run_cells

    return Pipeline(
        [
            Node(
                run_cells,
                inputs=["params:report", "params:encoder"],
                outputs="report_run_log",
                name="run_report_cells",
            ),
            Node(
                build_report,
                inputs=["report_run_log", "params:report", "params:encoder", "params:evaluate"],
                outputs=["report_markdown", "report_figures"],
                name="build_report",
            ),
        ],
        tags="report",
        namespace="report",
        prefix_datasets_with_namespace=False,
    )
