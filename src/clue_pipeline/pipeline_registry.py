"""Project pipelines: each folder under pipelines/ is one; `__default__` is the whole chain."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Run on request only: they repeat work of the main chain many times over.
NOT_IN_DEFAULT = ("tune", "report")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (p for name, p in pipelines.items() if name not in NOT_IN_DEFAULT), Pipeline([])
    )
    return pipelines
