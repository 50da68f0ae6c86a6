"""`kedro run` of this project: Kedro's own command, with errors a user can act on in one line.

A run stopped by bad input or a bad parameter (a :class:`DataError`, or a ``ValueError`` /
``TypeError`` this package raised on purpose at a boundary) prints its message and a hint,
not a Python traceback; ``--verbose`` or ``VERBOSE=1`` brings the traceback back. Anything
else (a bug, an error inside a library) keeps its traceback. Kedro loads this module in
place of its built-in ``run`` (``kedro run`` and ``python -m clue_pipeline`` alike).
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import click
from kedro.framework.cli.project import run as kedro_run

from clue_pipeline.data.errors import DataError
from clue_pipeline.pipeline_registry import refuse_unknown_pipelines
from clue_pipeline.training.distributed import WorkerFailedError

PACKAGE_DIR = Path(__file__).resolve().parent
VERBOSE_HINT = "(VERBOSE=1 or --verbose shows the traceback)"
_CLEAR_TYPES = (ValueError, TypeError, KeyError)
# kedro.pipeline.Pipeline's filters: their ValueErrors name the nodes or datasets it lacks.
_KEDRO_FILTERS = {
    "only_nodes",
    "only_nodes_with_namespaces",
    "from_nodes",
    "to_nodes",
    "from_inputs",
    "to_outputs",
    "_get_nodes_with_inputs_transcode_compatible",
    "_get_nodes_with_outputs_transcode_compatible",
}


class RunStopped(click.ClickException):
    """A run stopped for a reason the user can fix; click prints it as one ``Error:`` line."""


@click.group(name="clue-pipeline")
def cli() -> None:
    """Commands of the clue-pipeline project."""


@cli.command(
    name="run",
    params=[
        *kedro_run.params,
        click.Option(
            ["--verbose"], is_flag=True, default=False, help="Show the Python traceback of errors."
        ),
    ],
    help=kedro_run.help,
    short_help=kedro_run.short_help,
)
@click.pass_context
def run(ctx: click.Context, verbose: bool, **kwargs) -> None:
    # Checked before Kedro opens a session (and kedro-mlflow its store): a typo costs nothing.
    refuse_unknown_pipelines([*(kwargs.get("pipelines") or ()), kwargs.get("pipeline") or ""])
    try:
        ctx.invoke(kedro_run, **kwargs)
    except Exception as error:
        if verbose or _verbose_env() or not is_clear_error(error):
            raise
        raise RunStopped(clear_message(error)) from error


def is_clear_error(error: BaseException) -> bool:
    """Bad input or a bad parameter, reported on purpose with a message that says where.

    A ``DataError`` (or a distributed worker's death, which names the checkpoint to resume
    from) always is; a ``ValueError``/``TypeError``/``KeyError`` is when it was
    raised by this package's own code (its last frame lies in the package), not by a library.
    """
    if isinstance(error, DataError | click.ClickException | WorkerFailedError):
        return True
    if not isinstance(error, _CLEAR_TYPES) or error.__traceback__ is None:
        return False
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    if isinstance(error, ValueError) and frames[-1].name in _KEDRO_FILTERS:
        return True  # --nodes, --tags, --from-nodes ... naming what the pipeline lacks
    return Path(frames[-1].filename).resolve().is_relative_to(PACKAGE_DIR)


def clear_message(error: BaseException) -> str:
    message = error.format_message() if isinstance(error, click.ClickException) else str(error)
    if isinstance(error, KeyError) and len(error.args) == 1:
        message = str(error.args[0])
    return f"{message} {VERBOSE_HINT}"


def _verbose_env() -> bool:
    return os.environ.get("VERBOSE", "").strip().lower() not in ("", "0", "false", "no")
