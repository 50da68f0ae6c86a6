"""Kedro hooks of the project."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import mlflow
import torch
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset
from kedro.pipeline import Pipeline
from mlflow.tracking import MlflowClient

from clue_pipeline import lineage, run_lock
from clue_pipeline.pipeline_registry import COMPOSITES, stage_of
from clue_pipeline.tracking import (
    PHASE_EVALUATE,
    PHASE_TRAIN,
    RUN_NAME_TAG,
    ChildRuns,
    Job,
    LiveEpochMetrics,
    job_of,
    job_params,
    job_seed,
    parent_run_name,
)
from clue_pipeline.tracking_store import open_tracking_store
from clue_pipeline.training.loop import listen_to_epochs, stop_listening_to_epochs

logger = logging.getLogger(__name__)

ERROR_TAG_CHARS = 5000  # MLflow keeps tag values up to 8000 characters


class ThreadBudgetHook:
    """Sizes torch's intra-op thread pool to the cores this process may use.

    ``CLUE_NUM_THREADS`` overrides; otherwise the CPU affinity mask decides, so a shared
    machine is not oversubscribed by torch's default of one thread per visible core.
    """

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        threads = int(os.environ.get("CLUE_NUM_THREADS", "0")) or len(os.sched_getaffinity(0))
        torch.set_num_threads(max(1, threads))
        logger.info("torch uses %d threads", torch.get_num_threads())


class MissingInputsError(click.ClickException):
    """A run's inputs that no earlier run has written; the CLI prints it without a traceback."""


class MissingInputsHook:
    """Refuses a run whose inputs are not on disk yet, naming them and the pipelines that write them.

    ``kedro run --pipelines=finetune`` on a fresh clone would otherwise fail inside its first
    node with a bare load error, after MLflow has opened a run for it. ``tryfirst`` puts the
    check before kedro-mlflow's own ``before_pipeline_run``.
    """

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        from kedro.framework.project import pipelines as registered

        missing = missing_inputs(pipeline, catalog)
        if missing:
            registered.set_requested(None)  # `--pipelines` loads only its own; the run ends here
            raise MissingInputsError(
                describe_missing(missing, catalog, dict(registered), run_params.get("env"))
            )


class StaleInputsError(click.ClickException):
    """A run's inputs built from data that has changed since; printed without a traceback."""


class LineageHook:
    """Records what each saved file was built from, and refuses a run reading stale files.

    See ``lineage``: a stage-only run after a run that stopped half-way would otherwise read
    one stage's new outputs beside another's old ones. ``tryfirst`` and registered before
    ``MissingInputsHook``: the missing inputs are named first, and nothing (lock, MLflow run)
    is opened for a refused run.
    """

    def __init__(self) -> None:
        self._catalog = None
        self._memory: dict[str, dict[str, str | None]] = {}  # in-memory output -> its sources
        self._sources: dict[str, dict[str, str | None]] = {}  # node name -> its sources

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        from kedro.framework.project import pipelines as registered

        self._catalog, self._memory, self._sources = catalog, {}, {}
        keys = [lineage.file_key(catalog.get(name)) for name in _data_inputs(pipeline)]
        found = lineage.stale([key for key in keys if key is not None])
        if found.causes:
            registered.set_requested(None)  # as MissingInputsHook: the run ends here
            env = run_params.get("env")
            env_option = f" --env={env}" if env else ""
            more = f" (and {len(found.causes) - 1} more)" if len(found.causes) > 1 else ""
            raise StaleInputsError(
                f"stage(s) {', '.join(sorted(found.stages))} must run again before this run "
                f"reads their outputs: {found.causes[0]}{more}. Run `kedro run{env_option} "
                f"--pipelines={','.join(sorted(found.stages))}` (or the whole chain) first."
            )

    @hook_impl
    def before_node_run(self, node, catalog, inputs) -> None:
        self._catalog = catalog  # a ParallelRunner's worker saw no before_pipeline_run
        sources: dict[str, str | None] = {}
        for name in node.inputs:
            if name == "parameters" or name.startswith("params:"):
                continue
            key = lineage.file_key(catalog.get(name))
            if key is None:
                sources.update(self._memory.get(name, {}))
            else:
                sources[lineage.source_name(key)] = lineage.content_hash(key)
        self._sources[node.name] = sources

    @hook_impl
    def after_dataset_saved(self, dataset_name, data, node) -> None:
        if self._catalog is None:
            return
        sources = self._sources.get(node.name, {})
        key = lineage.file_key(self._catalog.get(dataset_name))
        if key is None:
            self._memory[dataset_name] = sources
        else:
            stage = stage_of(node)  # the pipeline to run again, not its phase
            lineage.record(key, stage, node.name, sources)


def _data_inputs(pipeline: Pipeline) -> list[str]:
    return sorted(n for n in pipeline.inputs() if n != "parameters" and not n.startswith("params:"))


class TrackingStoreHook:
    """Opens the SQLite tracking store under its lock before kedro-mlflow opens it unlocked
    (``tryfirst``), so that two first runs at once do not both migrate a new database."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        try:
            server = context.config_loader["mlflow"].get("server") or {}
        except MissingConfigException:  # no mlflow.yml: kedro-mlflow's defaults, no SQLite
            return
        open_tracking_store(server.get("mlflow_tracking_uri"))


class RunLockHook:
    """Holds ``data/.kedro-run.<env>.lock`` for the whole run (see ``run_lock``).

    Registered before ``MissingInputsHook`` so that hook, also ``tryfirst``, checks first: a
    run refused for missing inputs leaves no lock file behind. kedro-mlflow opens its run
    after this, so a run refused here opens no MLflow run either.
    """

    def __init__(self) -> None:
        self._lock: run_lock.RunLock | None = None
        atexit.register(self._release)

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        project = Path(run_params.get("project_path") or Path.cwd())
        self._lock = run_lock.acquire(project, run_params.get("env"))
        if self._lock.previous:
            logger.warning(
                "took over the stale lock %s of pid %s (%s), which is no longer running",
                self._lock.path,
                self._lock.previous.get("pid", "?"),
                self._lock.previous.get("command", "?"),
            )

    @hook_impl(trylast=True)
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        self._release()

    @hook_impl(trylast=True)
    def on_pipeline_error(self, error, run_params, pipeline, catalog) -> None:
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class FailedRunTagHook:
    """Puts the error that stopped a run on its MLflow run (tags ``error``, ``error_type``).

    ``tryfirst``: kedro-mlflow's own ``on_pipeline_error`` marks the run FAILED and closes it;
    the tags must be written while it is still the active run.
    """

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self, error, run_params, pipeline, catalog) -> None:
        run = mlflow.active_run()
        if run is None:
            return
        tags = {"error": str(error)[:ERROR_TAG_CHARS], "error_type": type(error).__name__}
        client = mlflow.MlflowClient()
        run_id: str | None = run.info.run_id
        while run_id:  # the run of this `kedro run` and every parent of a nested one
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
            run_id = client.get_run(run_id).data.tags.get("mlflow.parentRunId")


def missing_inputs(pipeline: Pipeline, catalog) -> list[str]:
    """The pipeline's free inputs (parameters aside) whose dataset says it does not exist."""
    names = sorted(
        n for n in pipeline.inputs() if n != "parameters" and not n.startswith("params:")
    )
    return [n for n in names if not _exists(catalog.get(n))]


def _exists(dataset: AbstractDataset | None) -> bool:
    if dataset is None:
        return False
    if type(dataset)._exists is AbstractDataset._exists:
        return True  # cannot tell: leave it to the node's own load
    try:
        return dataset.exists()
    except Exception:  # noqa: BLE001 - an unreachable store is the load's error to report
        return True


def describe_missing(
    missing: list[str], catalog, pipelines: dict[str, Pipeline], env: str | None
) -> str:
    """One line per missing input (its file where it has one, the pipelines that write it) and
    a command that writes them all: the writers plus, in turn, the writers of their inputs."""
    lines = [f"{len(missing)} input(s) of this run have not been written yet:"]
    for name in missing:
        writers = writers_of(name, pipelines)
        path = getattr(catalog.get(name), "_filepath", None)
        where = f" ({path})" if path else ""
        made_by = (
            f"written by pipeline {', '.join(writers)}" if writers else "no pipeline writes it"
        )
        lines.append(f"  - {name}{where}: {made_by}")
    needed: set[str] = set()
    unwritten = missing
    while unwritten:
        writers = {w for name in unwritten for w in writers_of(name, pipelines)} - needed
        if not writers:
            break
        needed |= writers
        unwritten = missing_inputs(sum((pipelines[p] for p in needed), Pipeline([])), catalog)
    env_option = f" --env={env}" if env else ""
    command = f"`kedro run{env_option}`"
    if needed:
        command += f", or the pipelines that write them: `kedro run{env_option} --pipelines="
        command += ",".join(sorted(needed)) + "`"
    lines.append(f"Run the whole chain first ({command}).")
    return "\n".join(lines)


def writers_of(name: str, pipelines: dict[str, Pipeline]) -> list[str]:
    """The registered stage pipelines (not the chains made of them) with ``name`` among their
    outputs."""
    return sorted(
        p for p, pipe in pipelines.items() if p not in COMPOSITES and name in pipe.all_outputs()
    )


class MlflowOutputsHook:
    """Names kedro-mlflow's run of this `kedro run` and gives each training job a child run.

    The parent run is named for what ran (``ml-latest-small: full chain``) and keeps the
    run-level artifacts (metrics table, figures, the registered model). Each job is a child
    run (``tracking.ChildRuns``): pre-training outputs ``*_pretrain_history``, fine-tuning
    ``*_history`` and evaluation ``*_metrics``, so the catalog's naming, not tracking code in
    the nodes, says which node is which job. kedro-mlflow still owns the parent run itself.
    """

    def __init__(self) -> None:
        self._children: ChildRuns | None = None
        self._dataset = ""
        self._started_ms: dict[str, int] = {}
        self._live: dict[str, LiveEpochMetrics] = {}  # node name -> its epochs' listener
        atexit.register(self._abandon)  # Ctrl-C mid-training: no child left RUNNING

    @hook_impl(trylast=True)  # after kedro-mlflow has started the run
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        run = mlflow.active_run()
        self._children = None
        if run is None:
            return
        if not sys.stderr.isatty():  # MLflow's own artifact bars would fill a log file
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self._dataset = str(_parameter(catalog, "dataset_name") or run_params.get("env") or "")
        pipelines = run_params.get("pipeline_names") or [
            run_params.get("pipeline_name") or "__default__"
        ]
        name = parent_run_name(self._dataset, pipelines, run_params.get("node_names") or ())
        mlflow.set_tag(RUN_NAME_TAG, name)
        self._children = ChildRuns(MlflowClient(), run.info.run_id, run.info.experiment_id)

    @hook_impl
    def before_node_run(self, node, catalog, inputs) -> None:
        found = job_of(node.outputs)
        if self._children is None or found is None:
            return
        self._started_ms[node.name] = int(time.time() * 1000)
        job, phase = found
        if phase == PHASE_TRAIN:  # open the child now: its epochs are logged as they end
            self._child(job, phase, node, catalog, inputs)
            self._live[node.name] = LiveEpochMetrics(self._children, job)
            listen_to_epochs(self._live[node.name])

    @hook_impl
    def after_node_run(
        self, node, catalog, inputs: dict[str, Any], outputs: dict[str, Any]
    ) -> None:
        self._stop_live(node.name)
        found = job_of(node.outputs)
        if self._children is None or found is None:
            return
        job, phase = found
        output = next(v for k, v in outputs.items() if k.endswith(_OUTPUT_SUFFIX[phase]))
        if isinstance(output, dict) and "skipped" in output:
            if phase == PHASE_TRAIN and self._children.has(job):
                self._children.discard(job)  # opened when training started; nothing trained
            if not self._children.has(job):
                return  # e.g. profiling on a dataset without user attributes: no run to compare
        run_id = self._child(job, phase, node, catalog, inputs)
        if phase == PHASE_TRAIN:
            self._children.log_history(job, output)
        elif isinstance(output, dict):
            self._children.log_evaluation(job, output)
        self._children.finish(job)
        logger.debug("%s logged into MLflow child run %s", node.name, run_id)

    @hook_impl
    def on_node_error(self, error, node, catalog, inputs) -> None:
        self._stop_live(node.name)
        found = job_of(node.outputs)
        if self._children is None or found is None:
            return
        job, phase = found
        self._child(job, phase, node, catalog, inputs)
        self._children.finish(job, "FAILED")

    def _abandon(self) -> None:
        """Marks the children of jobs still training KILLED (the process is exiting)."""
        for node_name, handler in list(self._live.items()):
            self._stop_live(node_name)
            try:
                handler.children.finish(handler.job, "KILLED")
            except Exception as error:  # noqa: BLE001 - exiting anyway; say why it stays open
                logger.warning("could not close the MLflow run of %s: %s", node_name, error)

    def _stop_live(self, node_name: str) -> None:
        handler = self._live.pop(node_name, None)
        if handler is not None:
            stop_listening_to_epochs(handler)

    def _child(self, job: Job, phase: str, node, catalog, inputs: dict[str, Any]) -> str:
        params = {
            name: _parameter(catalog, name)
            for name in ("encoder", "pretrain", "finetune", "evaluate")
        }
        params = {name: value for name, value in params.items() if value is not None}
        # where the weights came from: the pre-trained encoder among a fine-tuning's inputs;
        # unknown when this run only evaluates
        init = None
        if phase == PHASE_TRAIN:
            init = next((k for k in inputs if k.endswith("_encoder")), "random")
        return self._children.child(
            job,
            self._dataset,
            job_seed(job, params),
            job_params(job, params, init=init, views=inputs.get("view_policy")),
            self._started_ms.pop(node.name, None),
        )


_OUTPUT_SUFFIX = {PHASE_TRAIN: "history", PHASE_EVALUATE: "_metrics"}


def _parameter(catalog, name: str) -> Any:
    """A parameter's value from the run's catalog, or None where it has none."""
    try:
        return catalog.load(f"params:{name}")
    except Exception:  # noqa: BLE001 - a missing parameter is simply not logged
        return None
