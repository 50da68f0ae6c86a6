"""Project pipelines: each folder under pipelines/ is one; `__default__` is the whole chain.

Each stage's nodes sit in a namespace named for the stage (a box in Kedro-Viz), and the stages
of the chain sit in one of two phases: `prepare.ingest`, `learn.pretrain.next_item`. Kedro-Viz
opens on the outermost boxes, folded, and draws every dataset that crosses a box's edge: with a
box per stage that is each pre-trained encoder and fine-tuned model (about 90 datasets), with a
box per phase the tables that pass from one phase to the other and the results a user reads.
"""

from pathlib import Path

import click
from kedro.framework.project import find_pipelines, pipelines
from kedro.pipeline import Node, Pipeline

# Run on request only: tune and report repeat work of the main chain many times over; core
# is a part of it.
NOT_IN_DEFAULT = ("tune", "report", "core")
# pipelines made of other pipelines' nodes (never named as the writer of a dataset)
COMPOSITES = ("__default__", "core")
PIPELINES_DIR = Path(__file__).resolve().parent / "pipelines"
# phase -> the stages (pipelines) it holds; the outer namespace of their nodes.
PHASES = {
    "prepare": ("ingest", "sequences"),
    "learn": ("augment", "pretrain", "finetune", "evaluate", "embed"),
}
PHASE_OF = {stage: phase for phase, stages in PHASES.items() for stage in stages}


class UnknownPipelineError(click.ClickException):
    """``--pipelines`` named a pipeline the project does not have; printed without a traceback."""


def register_pipelines() -> dict[str, Pipeline]:
    refuse_unknown_pipelines(getattr(pipelines, "_requested_pipelines", None))
    found = {
        name: in_phase(name, pipeline)
        for name, pipeline in find_pipelines(raise_errors=True).items()
    }
    found["__default__"] = sum(
        (p for name, p in found.items() if name not in NOT_IN_DEFAULT), Pipeline([])
    )
    return found


def in_phase(stage: str, pipeline: Pipeline) -> Pipeline:
    """``pipeline`` with its namespaces under its phase's (unchanged outside a phase)."""
    phase = PHASE_OF.get(stage)
    if phase is None:
        return pipeline
    return Pipeline(pipeline, namespace=phase, prefix_datasets_with_namespace=False)


def stage_of(node: Node) -> str:
    """The stage a registered node belongs to: ``learn.pretrain.next_item`` -> ``pretrain``."""
    parts = (node.namespace or node.name).split(".")
    return parts[1] if parts[0] in PHASES and len(parts) > 1 else parts[0]


def pipeline_names() -> list[str]:
    """The project's pipelines: the folders under pipelines/ that define one."""
    return sorted(p.name for p in PIPELINES_DIR.iterdir() if (p / "pipeline.py").is_file())


def refuse_unknown_pipelines(requested: list[str] | None) -> None:
    """Kedro would try to import ``pipelines.<name>`` and fail with an ImportError."""
    requested = [name for name in requested or () if name]
    known = pipeline_names()
    unknown = sorted(set(requested or ()) - {*known, "__default__"})
    if unknown:
        raise UnknownPipelineError(
            f"unknown pipeline(s) {', '.join(unknown)}; this project has: {', '.join(known)} "
            "(leave out --pipelines to run the default chain)"
        )
