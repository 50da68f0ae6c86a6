"""`kedro run` of this project: Kedro's own command, with errors a user can act on in one line.

A run stopped by bad input or a bad parameter (a :class:`DataError`, a ``ValueError`` /
``TypeError`` this package raised on purpose at a boundary, an unknown encoding, an ``OSError``
naming its file) prints one ``Error:`` line, once, not a Python traceback; ``--verbose`` or
``VERBOSE=1`` brings the traceback (and the library log lines that repeat it) back. Anything
else (a bug, an error inside a library) keeps its traceback. Checks that need no session run
first: an unknown ``--env``, unparsable ``--params``, another input without a dataset name.
Kedro loads this module in place of its built-in ``run`` (``kedro run`` and
``python -m clue_pipeline`` alike).
"""

from __future__ import annotations

import copy
import logging
import os
import re
import traceback
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

from clue_pipeline.data.errors import DataError
from clue_pipeline.pipeline_registry import refuse_unknown_pipelines
from clue_pipeline.training.distributed import WorkerFailedError

PACKAGE_DIR = Path(__file__).resolve().parent
VERBOSE_HINT = "(VERBOSE=1 or --verbose shows the traceback)"
VALUE_CHARS = 200  # a file name or parameter value quoted in an error, at most
LINE_CHARS = 500  # one line of an error message, at most
_CLEAR_TYPES = (ValueError, TypeError, KeyError, LookupError)
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
# Parameters that change which data is read: the outputs then need a name of their own.
INPUT_PARAMETERS = ("path", "format", "download")
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Files that make a folder of conf/ a run-environment (Kedro's config patterns).
_CONFIG_FILE = re.compile(
    r"(?:^|/)(catalog|parameters|globals|credentials|mlflow)[^/]*(?:/.+)?\.(ya?ml|json)$"
)
_RUNNER_LOGGERS = ("sequential_runner", "parallel_runner", "thread_runner")


class RunStopped(click.ClickException):
    """A run stopped for a reason the user can fix; click prints it as one ``Error:`` line."""


@click.group(name="clue-pipeline")
def cli() -> None:
    """Commands of the clue-pipeline project."""


def _checked_params_option() -> list[click.Parameter]:
    """Kedro's options, ``--params`` parsed so that a value YAML cannot read is a usage error."""
    options = []
    for option in kedro_run.params:
        if option.name == "params":
            option = copy.copy(option)
            option.callback = _parse_params(option.callback)
        options.append(option)
    return options


def _parse_params(parse):
    def parse_or_refuse(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return parse(ctx, param, value)
        except click.ClickException:
            raise
        except Exception as error:  # noqa: BLE001 - YAML's own errors, with the value quoted
            reason = shorten(str(error).splitlines()[0] if str(error) else type(error).__name__)
            raise RunStopped(f"--params {shorten(str(value))}: {reason}") from error

    return parse_or_refuse


@cli.command(
    name="run",
    params=[
        *_checked_params_option(),
        click.Option(
            ["--verbose"], is_flag=True, default=False, help="Show the Python traceback of errors."
        ),
    ],
    help=kedro_run.help,
    short_help=kedro_run.short_help,
)
@click.pass_context
def run(ctx: click.Context, verbose: bool, **kwargs) -> None:
    verbose = verbose or _verbose_env()
    apply_log_levels(verbose)
    # Checked before Kedro opens a session (and kedro-mlflow its store): a typo costs nothing.
    refuse_unknown_pipelines([*(kwargs.get("pipelines") or ()), kwargs.get("pipeline") or ""])
    refuse_unknown_environment(kwargs.get("env"), kwargs.get("conf_source"))
    refuse_unnamed_input(kwargs.get("params") or {})
    try:
        ctx.invoke(kedro_run, **kwargs)
    except Exception as error:
        if verbose or not is_clear_error(error):
            raise
        raise RunStopped(clear_message(error)) from error


def refuse_unknown_environment(env: str | None, conf_source: str | None) -> None:
    """``--env`` (or ``KEDRO_ENV``) must be a folder of conf/; Kedro would run on base alone
    and fail much later inside MLflow, never saying the environment does not exist."""
    env = env or os.environ.get("KEDRO_ENV")
    conf = Path(conf_source) if conf_source else Path.cwd() / "conf"
    if not env or not conf.is_dir():  # a packaged (zip, remote) conf: Kedro reads it
        return
    known = environments(conf)
    if env not in known and env != "local":  # local: Kedro's default, optional
        raise RunStopped(
            f"run-environment {shorten(env)!r} does not exist; available: {', '.join(known)}"
        )


def environments(conf: Path) -> list[str]:
    """The folders of ``conf`` that hold configuration (``recipes/`` and the like do not)."""
    return sorted(
        folder.name
        for folder in conf.iterdir()
        if folder.is_dir()
        and (
            folder.name in ("base", "local")
            or any(
                _CONFIG_FILE.search(f.relative_to(folder).as_posix())
                for f in folder.rglob("*")
                if f.is_file()
            )
        )
    )


def refuse_unnamed_input(params: dict[str, Any]) -> None:
    """Another input file under the run-environment's dataset name would overwrite that
    dataset's outputs (data/<layer>/<dataset>/), so it must come with a name of its own."""
    name = params.get("dataset_name")
    if name is not None:
        if not isinstance(name, str | int) or not DATASET_NAME.fullmatch(str(name)):
            raise RunStopped(
                f"dataset_name {shorten(repr(name))}: not a folder name (letters, digits, "
                "'.', '_' or '-', starting with a letter or digit)"
            )
        return
    ingest = params.get("ingest")
    changed = sorted(k for k in INPUT_PARAMETERS if isinstance(ingest, dict) and k in ingest)
    if changed:
        keys = ", ".join(f"ingest.{k}" for k in changed)
        raise RunStopped(
            f"{keys} given without dataset_name: the outputs would overwrite the run-"
            "environment's own dataset; name this one, e.g. --params dataset_name=my-data,"
            f"ingest.{changed[0]}=... (outputs then go to data/<layer>/my-data/)"
        )


def is_clear_error(error: BaseException) -> bool:
    """Bad input or a bad parameter, reported on purpose with a message that says where.

    A ``DataError`` (or a distributed worker's death, which names the checkpoint to resume
    from) always is, as is an ``OSError`` naming its file (too long, missing, not allowed: the
    path is the user's); a ``ValueError``/``TypeError``/``KeyError``/``LookupError`` is when it
    was raised by this package's own code (its last frame lies in the package), not by a library.
    """
    if isinstance(error, DataError | click.ClickException | WorkerFailedError):
        return True
    if isinstance(error, OSError) and error.filename is not None:
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
    """The error's message with every line cut to ``LINE_CHARS``, and the verbose hint."""
    if isinstance(error, click.ClickException):
        message = error.format_message()
    elif isinstance(error, OSError) and error.filename is not None:
        message = f"{shorten(str(error.filename))}: {error.strerror or error}"
    elif isinstance(error, KeyError) and len(error.args) == 1:
        message = str(error.args[0])
    else:
        message = str(error)
    lines = [shorten(line, LINE_CHARS) for line in message.splitlines() or [""]]
    return f"{chr(10).join(lines)} {VERBOSE_HINT}"


def shorten(text: str, limit: int = VALUE_CHARS) -> str:
    """``text`` or its head and tail, saying how much was left out: a value can be megabytes."""
    if len(text) <= limit:
        return text
    keep = max(limit - 40, 20)
    return f"{text[: keep // 2]}...({len(text) - keep} characters)...{text[-keep // 2 :]}"


def apply_log_levels(verbose: bool) -> None:
    """Applies the logging config's levels again, and hides log lines that repeat the error.

    kedro-mlflow and MLflow set their own loggers to INFO when imported, after Kedro applied
    ``conf/logging.yml``; so their chatter (a run closed three times, a default tracking URI
    'converted') would pass. Kedro's hints (resume ``--from-nodes``, ``--async``) are dropped
    too unless verbose: the ``Error:`` line is the one thing to read. ``logging_verbose.yml`` (kedro at
    INFO) counts as verbose.
    """
    import kedro_mlflow  # noqa: F401 - its import resets its logger's level
    from kedro.framework.project import LOGGING

    for name, config in (LOGGING.data.get("loggers") or {}).items():
        if isinstance(config, dict) and "level" in config:
            logging.getLogger(name).setLevel(config["level"])
    if verbose or logging.getLogger("kedro").getEffectiveLevel() <= logging.INFO:
        return
    for name in _RUNNER_LOGGERS:
        runner_logger = logging.getLogger(f"kedro.runner.{name}")
        if not any(isinstance(f, _NoResumeHint) for f in runner_logger.filters):
            runner_logger.addFilter(_NoResumeHint())


class _NoResumeHint(logging.Filter):
    """Kedro's hints that are no news to a user of this project (resume, async saving)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.funcName == "_suggest_resume_scenario":
            return False
        return not str(record.msg).startswith("Using synchronous mode")


def _verbose_env() -> bool:
    return os.environ.get("VERBOSE", "").strip().lower() not in ("", "0", "false", "no")
