"""MLflow side of the project: one child run per training job (pre-training, fine-tuning).

A `kedro run` is one MLflow run (kedro-mlflow's, the parent); each training job in it is a
child run: pre-training (corpus x method) and fine-tuning + evaluation (task x method x
seed). Children carry the same metric names whatever the method (`train/loss`,
`valid/ndcg_at_10`, `test/ndcg_at_10`), only the parameters their job used, and tags to
group and filter by, so MLflow's own compare view puts CLUE beside CLUE-Zero.

The served user-vector model lives in ``clue_pipeline.serving``; its names stay importable
from here, which models logged before the split also rely on to unpickle.
"""

from __future__ import annotations

import logging
import numbers
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from clue_pipeline.config.trees import flatten
from clue_pipeline.run_summary import rounded  # as metrics.md shows them
from clue_pipeline.serving import (
    DEFAULT_ENCODER_LOADER,
    DEFAULT_MODEL_NAME,
    ENCODER_ARTIFACT,
    ITEM_INDEX_ARTIFACT,
    ITEMS_COLUMN,
    UserVectorConfig,
    UserVectorModel,
    log_user_vector_model,
    sequences_to_batch,
    ur_token,
)
from clue_pipeline.training.loop import EPOCH_ENTRY, EPOCH_PART

__all__ = [
    "DEFAULT_ENCODER_LOADER",
    "DEFAULT_MODEL_NAME",
    "ENCODER_ARTIFACT",
    "ITEMS_COLUMN",
    "ITEM_INDEX_ARTIFACT",
    "LOOP_KEYS",
    "NOT_SCORES",
    "PARENT_RUN_TAG",
    "PHASE_EVALUATE",
    "PHASE_TRAIN",
    "PRETRAIN_BLOCKS",
    "RUN_NAME_TAG",
    "STAGE_FINETUNE",
    "STAGE_PRETRAIN",
    "ChildRuns",
    "Job",
    "LiveEpochMetrics",
    "UserVectorConfig",
    "UserVectorModel",
    "job_history_metrics",
    "job_of",
    "job_params",
    "job_seed",
    "job_test_metrics",
    "job_train_config",
    "log_user_vector_model",
    "parent_run_name",
    "sequences_to_batch",
    "ur_token",
]

logger = logging.getLogger(__name__)

_METRIC_SEP = "/"  # MLflow's UI groups charts by the part of a metric key before "/"
_METRIC_NAME_FORBIDDEN = re.compile(r"[^\w\-. :/]")  # what MLflow rejects in a metric name

STAGE_PRETRAIN = "pretrain"
STAGE_FINETUNE = "finetune"
PHASE_TRAIN = "train"
PHASE_EVALUATE = "evaluate"
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
# History keys the loop itself writes; in a fine-tuning history every other key is a
# validation metric (what `validate_fn` returned), in a pre-training one a training metric.
LOOP_KEYS = {"loss": "loss", "sequences_per_s": "sequences_per_s", "wall_s": "epoch_s"}
# `pretrain` parameter blocks that only one pre-training method reads; another method's
# child run leaves them out.
PRETRAIN_BLOCKS = {
    "clue": ("simsiam", "objective", "health"),
    "mip": ("masked_item",),
    "s3rec": ("s3rec",),
}
# Facts about an evaluation, not scores; kept out of the per-epoch validation metrics.
NOT_SCORES = {"history_excluded", "n_users"}

# Catalog names of a job's outputs (`next_item__clue_history`, conf/base/catalog_models.yml);
# order matters: a pre-training history would also match the fine-tuning pattern.
_JOB_OUTPUTS = tuple(
    (re.compile(rf"^(?P<task>[a-z0-9]\w*?)__(?P<method>\w+)_{suffix}$"), stage, phase)
    for suffix, stage, phase in (
        ("pretrain_history", STAGE_PRETRAIN, PHASE_TRAIN),
        ("history", STAGE_FINETUNE, PHASE_TRAIN),
        ("metrics", STAGE_FINETUNE, PHASE_EVALUATE),
    )
)


@dataclass(frozen=True)
class Job:
    """One training job: ``task`` is the downstream task, or the corpus of a pre-training."""

    stage: str
    task: str
    method: str

    def run_name(self, seed: int | None) -> str:
        """``next_item clue seed 42``; pre-training runs say so (``pretrain next_item clue``)."""
        head = f"{self.stage} " if self.stage == STAGE_PRETRAIN else ""
        tail = f" seed {seed}" if seed is not None else ""
        return f"{head}{self.task} {self.method}{tail}"

    def tags(self, dataset: str, seed: int | None) -> dict[str, str]:
        tags = {"dataset": dataset, "task": self.task, "method": self.method, "stage": self.stage}
        if seed is not None:
            tags["seed"] = str(seed)
        return tags


def job_of(outputs: Sequence[str]) -> tuple[Job, str] | None:
    """The job a node's outputs belong to, and the phase (training or evaluation), or None."""
    for name in outputs:
        for pattern, stage, phase in _JOB_OUTPUTS:
            match = pattern.match(name)
            if match:
                return Job(stage, match["task"], match["method"]), phase
    return None


def job_train_config(job: Job, params: Mapping[str, Any]) -> dict[str, Any]:
    """The training settings the job ran with: shared, then the task's, then the method's.

    Fine-tuning merges them in this order (``pipelines/finetune/nodes.py``); pre-training
    has one block. ``params`` maps parameter names (``finetune``, ``pretrain``, ...) to values.
    """
    if job.stage == STAGE_PRETRAIN:
        return dict(params.get("pretrain", {}).get("train", {}))
    finetune = params.get("finetune", {})
    return {
        **finetune.get("train", {}),
        **finetune.get("tasks", {}).get(job.task, {}),
        **finetune.get("overrides", {}).get(job.method, {}),
    }


def job_seed(job: Job, params: Mapping[str, Any]) -> int | None:
    seed = job_train_config(job, params).get("seed")
    return int(seed) if seed is not None else None


def job_params(
    job: Job, params: Mapping[str, Any], init: str | None = None, views: Mapping | None = None
) -> dict[str, str]:
    """The parameters this job used, flattened (``encoder.hidden``, ``train.lr``, ...).

    Pre-training: the encoder, the training settings and the ``pretrain`` blocks but those
    of another method (``PRETRAIN_BLOCKS``), and the views for CLUE. Fine-tuning: the
    encoder, the merged training settings, the method, where its weights came from
    (``init``: an encoder's catalog name or ``random``; left out when None), and the
    task-wide switches. Values are strings, as MLflow stores them.
    """
    chosen: dict[str, Any] = {
        "encoder": params.get("encoder", {}),
        "train": job_train_config(job, params),
    }
    if job.stage == STAGE_PRETRAIN:
        others = {b for m, blocks in PRETRAIN_BLOCKS.items() if m != job.method for b in blocks}
        for key, value in params.get("pretrain", {}).items():
            if key != "train" and key not in others:
                chosen[key] = value
        if views is not None:
            chosen["views"] = dict(views)
    else:
        finetune = params.get("finetune", {})
        method = finetune.get("methods", {}).get(job.method, {})
        chosen["method"] = method
        if init is not None:
            chosen["init"] = init
        for switch in ("exclude_history", "train_user_fraction"):
            if switch in finetune:
                chosen[switch] = finetune[switch]
        if job.task == "next_item":
            for key in ("next_item_rows", "next_item"):
                if key in finetune:
                    chosen[key] = finetune[key]
        backbone = method.get("backbone") if isinstance(method, Mapping) else None
        if backbone in finetune.get("baselines", {}):
            chosen["baseline"] = finetune["baselines"][backbone]
        if "evaluate" in params:
            chosen["evaluate.exclude_history"] = params["evaluate"].get("exclude_history")
    return {key: _param_value(value) for key, value in flatten(chosen).items()}


def job_history_metrics(job: Job, history: Any, timestamp_ms: int | None = None) -> list[Metric]:
    """Per-epoch metrics under names every job shares: ``train/loss``, ``valid/ndcg_at_10``.

    Profiling trains one classifier per attribute; its keys carry the attribute
    (``valid/gender/accuracy``). A skipped job's history (``{"skipped": ...}``) logs nothing.
    """
    timestamp_ms = timestamp_ms if timestamp_ms is not None else _now_ms()
    if isinstance(history, Mapping):
        return [
            metric
            for attribute, part in history.items()
            if isinstance(part, list)
            for metric in _history_rows(job, part, f"/{attribute}", timestamp_ms)
        ]
    return _history_rows(job, history, "", timestamp_ms) if isinstance(history, list) else []


def job_test_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """An evaluation record's numbers as ``test/<metric>`` (``test/gender/accuracy``)."""
    return {
        _metric_key("test", key.replace("@", "_at_").replace(".", "/")): rounded(value)
        for key, value in flatten(record.get("metrics", {})).items()
        if isinstance(value, numbers.Real) and not isinstance(value, bool)
    }


def parent_run_name(dataset: str, pipelines: Sequence[str], nodes: Sequence[str] = ()) -> str:
    """``ml-latest-small: pretrain+finetune``: what ran, on what, never ``__default__``."""
    if nodes:
        shown = "+".join(nodes)
        what = shown if len(shown) <= 120 else f"{len(nodes)} nodes"
    else:
        what = "+".join("full chain" if p == "__default__" else p for p in pipelines)
    return f"{dataset}: {what}" if dataset else what


class ChildRuns:
    """The child runs of one parent run, written with the client: the parent stays active.

    A job's child is created when its training starts, fills with each epoch's metrics as
    the loop reports them (``LiveEpochMetrics``), and is terminated when training ends;
    evaluation, a later node, logs into the same child and terminates it again. A run
    evaluated without training in this `kedro run` gets its child at evaluation.
    """

    def __init__(self, client: MlflowClient, parent_run_id: str, experiment_id: str) -> None:
        self.client = client
        self.parent_run_id = parent_run_id
        self.experiment_id = experiment_id
        self._runs: dict[Job, str] = {}
        self._live: dict[Job, set[tuple[str, int]]] = {}

    def child(
        self,
        job: Job,
        dataset: str,
        seed: int | None,
        params: Mapping[str, str],
        start_time_ms: int | None = None,
    ) -> str:
        """This job's child run id, created with its tags and parameters on first use."""
        if job in self._runs:
            return self._runs[job]
        run = self.client.create_run(
            self.experiment_id,
            start_time=start_time_ms,
            tags={
                PARENT_RUN_TAG: self.parent_run_id,
                RUN_NAME_TAG: job.run_name(seed),
                **job.tags(dataset, seed),
            },
            run_name=job.run_name(seed),
        )
        run_id = run.info.run_id
        if params:
            self.client.log_batch(
                run_id,
                params=[Param(key, value) for key, value in sorted(params.items())],
            )
        self._runs[job] = run_id
        return run_id

    def has(self, job: Job) -> bool:
        return job in self._runs

    def log_epoch(self, job: Job, entry: Mapping[str, Any], part: str | None = None) -> None:
        """One epoch's metrics as training reports it, so MLflow's charts fill in live.

        ``part`` names the fit an entry belongs to where a job trains several (profiling: one
        classifier per attribute), as the history's keys will.
        """
        infix = f"/{part}" if part else ""
        metrics = _history_rows(job, [entry], infix, _now_ms())
        if metrics:
            self.client.log_batch(self._runs[job], metrics=metrics)
            self._live.setdefault(job, set()).update((m.key, m.step) for m in metrics)

    def log_history(self, job: Job, history: Any) -> None:
        """The whole history, but the epochs already logged live (resumed or multi-process
        training reports nothing live, so its epochs all land here)."""
        live = self._live.pop(job, set())
        metrics = [m for m in job_history_metrics(job, history) if (m.key, m.step) not in live]
        run_id = self._runs[job]
        if isinstance(history, Mapping) and "skipped" in history:
            self.client.set_tag(run_id, "skipped", str(history["skipped"])[:5000])
        for start in range(0, len(metrics), _BATCH):  # MLflow takes 1000 metrics per call
            self.client.log_batch(run_id, metrics=metrics[start : start + _BATCH])

    def discard(self, job: Job) -> None:
        """Deletes a child opened for a job that turned out to have nothing to compare."""
        self._live.pop(job, None)
        self.client.delete_run(self._runs.pop(job))

    def log_evaluation(self, job: Job, record: Mapping[str, Any]) -> None:
        run_id = self._runs[job]
        numbers_ = job_test_metrics(record)
        if numbers_:
            timestamp = _now_ms()
            self.client.log_batch(
                run_id, metrics=[Metric(k, v, timestamp, 0) for k, v in numbers_.items()]
            )
        if "skipped" in record:
            self.client.set_tag(run_id, "skipped", str(record["skipped"])[:5000])
        self.client.log_dict(run_id, dict(record), "metrics.json")

    def finish(self, job: Job, status: str = "FINISHED") -> None:
        self.client.set_terminated(self._runs[job], status)


_BATCH = 1000


class LiveEpochMetrics(logging.Handler):
    """Logs each epoch the training loop reports (``training.loop.epoch_records``) into a
    job's child run while the job trains.

    Only records from the thread that created it count, so jobs run by Kedro's ThreadRunner
    do not log into each other's runs. A tracking error is logged once and stops the live
    metrics; training goes on, and the job's whole history is still logged when it ends.
    """

    def __init__(self, children: ChildRuns, job: Job) -> None:
        super().__init__()
        self.children = children
        self.job = job
        self._thread = threading.get_ident()
        self._part: str | None = None
        self._failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread:
            return
        part = getattr(record, EPOCH_PART, None)
        if part is not None:
            self._part = str(part)
            return
        entry = getattr(record, EPOCH_ENTRY, None)
        if entry is None or self._failed:
            return
        try:
            self.children.log_epoch(self.job, entry, self._part)
        except Exception as error:  # noqa: BLE001 - tracking must never stop training
            self._failed = True
            logger.warning("live MLflow metrics of %s stopped: %s", self.job.run_name(None), error)


def _history_rows(job: Job, history: list, infix: str, timestamp_ms: int) -> list[Metric]:
    rows = []
    for position, entry in enumerate(history):
        if not isinstance(entry, Mapping):
            continue
        step = int(entry.get("epoch", position))
        for key, value in entry.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            if key in NOT_SCORES:
                continue
            if key in LOOP_KEYS:
                name = f"train{infix}/{LOOP_KEYS[key]}"
            elif job.stage == STAGE_FINETUNE:
                name = f"valid{infix}/{key}"
            else:
                name = f"train{infix}/{key}"
            rows.append(
                Metric(
                    _metric_key("", name.replace("@", "_at_")), rounded(value), timestamp_ms, step
                )
            )
    return rows


def _param_value(value: Any) -> str:
    text = str(value)
    return text[:_MAX_PARAM_CHARS]


_MAX_PARAM_CHARS = 6000  # MLflow's cap on a parameter value


def _metric_key(prefix: str, key: str) -> str:
    """MLflow rejects e.g. ``hr@10``; such characters become ``_`` (``hr_10``)."""
    key = _METRIC_NAME_FORBIDDEN.sub("_", key)
    return f"{prefix}{_METRIC_SEP}{key}" if prefix else key


def _now_ms() -> int:
    return int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
