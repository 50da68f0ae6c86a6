"""Project pipelines: each folder under pipelines/ is one; `__default__` is the whole chain."""

from pathlib import Path

import click
from kedro.framework.project import find_pipelines, pipelines
from kedro.pipeline import Pipeline

# Run on request only: they repeat work of the main chain many times over.
NOT_IN_DEFAULT = ("tune", "report")
PIPELINES_DIR = Path(__file__).resolve().parent / "pipelines"


class UnknownPipelineError(click.ClickException):
    """``--pipelines`` named a pipeline the project does not have; printed without a traceback."""


def register_pipelines() -> dict[str, Pipeline]:
    refuse_unknown_pipelines(getattr(pipelines, "_requested_pipelines", None))
    found = find_pipelines(raise_errors=True)
    found["__default__"] = sum(
        (p for name, p in found.items() if name not in NOT_IN_DEFAULT), Pipeline([])
    )
    return found


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
