"""What a user reads of a `kedro run` in MLflow, at a glance.

- One name per metric. An evaluation record keeps the metric's short form (``recall@10``,
  in ``metrics/<task>/<method>.json``); everything shown to a user uses the MLflow-safe form
  ``metric_name`` gives (``recall_at_10``): ``metrics.md``'s columns, the child runs'
  ``test/recall_at_10`` and the parent run's ``next_item/clue/recall_at_10``. ``recall_at_10``
  is what papers call HR@10 (one held-out item per user).
- The parent run carries the test table as metrics, ``<task>/<method>/<metric>``; profiling
  adds the attribute as the child runs do (``profiling/clue/gender/accuracy``, the child's
  ``test/gender/accuracy``). Values are rounded as ``metrics.md`` shows them.
- Tags a user can read: kedro-mlflow copies Kedro's run parameters as tags, among them the
  runner's object repr and Kedro's session id named ``run_id`` beside MLflow's own run id.
- The experiment opens on its runs table: MLflow 3 UIs up to about 3.10 read the
  experiment's ``mlflow.experimentKind`` tag; later ones (3.17 here) decide by the sidebar's
  "GenAI / Model training" switch, remembered by the browser, or the URL's
  ``workflowType=machine_learning``, so the run ends by logging that link. 3.17's runs table
  shows no metric column until a user picks one; the link also names a view (an experiment
  tag MLflow's "share view" writes) whose columns are the test metrics.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from clue_pipeline.config.trees import flatten

logger = logging.getLogger(__name__)

DECIMALS = 4  # as metrics.md prints them
SUMMARY_DATASET = "metrics_summary"  # evaluate's table of every task x method
# Facts about an evaluation, not scores of the method: metrics.md shows them, the parent
# run's metrics leave them out.
NOT_SCORES = frozenset({"n_users", "n", "majority_rate", "history_excluded"})
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # "Machine learning", not "GenAI apps & agents"
RUNS_TABLE_QUERY = "workflowType=machine_learning"
VIEW_KEY = "test-metrics"  # ?viewStateShareKey=...
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
CHILD_COLUMNS = ("test/ndcg_at_10", "test/recall_at_10")  # every fine-tuning child run has them
HEADLINE = ("ndcg_at_10", "accuracy")  # the parent's column per task x method: ranking, profiling
# Kedro's session id: MLflow's run id is the run's id; a second one only confuses.
DROPPED_TAGS = ("run_id",)
DEFAULT_UI = ("127.0.0.1", "5000")  # conf/base/mlflow.yml `ui`


def set_experiment_tag(client: MlflowClient, experiment_id: str, key: str, value: str) -> None:
    """Set an experiment tag, tried twice: when two runs of a project start at once, another
    writer can insert the tag between the store's check and its insert, and SQLite refuses
    the second insert; by the second try the row exists and the tag is updated."""
    try:
        client.set_experiment_tag(experiment_id, key, value)
    except MlflowException:
        client.set_experiment_tag(experiment_id, key, value)


class RunSummaryHook:
    """Makes the parent run readable: its tags, the experiment's kind, the test metrics.

    ``trylast``: kedro-mlflow (a plugin, called first) has opened the run and written its
    tags by then; this hook rewrites the unreadable ones and logs with the client, so the
    parent stays kedro-mlflow's to close.
    """

    def __init__(self) -> None:
        self._run_id: str | None = None
        self._experiment_id: str | None = None
        self._ui = DEFAULT_UI

    @hook_impl
    def after_context_created(self, context) -> None:
        ui = getattr(getattr(context, "mlflow", None), "ui", None)
        if ui is not None:
            self._ui = (str(ui.host), str(ui.port))

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        run = mlflow.active_run()
        self._run_id = run.info.run_id if run else None
        if run is None:
            return
        self._experiment_id = run.info.experiment_id
        client = MlflowClient()
        set_experiment_tag(client, self._experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        set_experiment_tag(client, self._experiment_id, VIEW_TAG, runs_table_view(()))
        written = client.get_run(self._run_id).data.tags
        fallback = written.get("kedro_command", "kedro run")
        for key, value in readable_tags(run_params, sys.argv, fallback).items():
            client.set_tag(self._run_id, key, value)
        for key in DROPPED_TAGS:
            if key in written:
                client.delete_tag(self._run_id, key)

    @hook_impl
    def after_node_run(self, node, catalog, inputs, outputs: dict[str, Any]) -> None:
        summary = outputs.get(SUMMARY_DATASET)
        if self._run_id is None or not isinstance(summary, Mapping):
            return
        metrics = parent_metrics(summary.get("rows", ()))
        if metrics:
            stamp = int(time.time() * 1000)
            rows = [Metric(key, value, stamp, 0) for key, value in sorted(metrics.items())]
            client = MlflowClient()
            client.log_batch(self._run_id, metrics=rows)
            set_experiment_tag(client, self._experiment_id, VIEW_TAG, runs_table_view(metrics))

    @hook_impl
    def after_pipeline_run(self, run_params, run_result, pipeline, catalog) -> None:
        if self._experiment_id is not None:
            logger.info(
                "MLflow runs table (serve it with `kedro mlflow ui`): %s",
                runs_table_url(*self._ui, self._experiment_id),
            )
        self._run_id = self._experiment_id = None


def metric_name(key: str) -> str:
    """The MLflow-safe name of a metric: ``recall@10`` -> ``recall_at_10``.

    A dotted record key (``gender.accuracy``, a flattened profiling record) becomes a path
    (``gender/accuracy``); any other character MLflow refuses becomes ``_``.
    """
    key = key.replace("@", "_at_").replace(".", "/")
    return re.sub(r"[^\w\-./ ]", "_", key)


def rounded(value: float) -> float:
    """``DECIMALS`` decimals, as metrics.md shows; values under 0.001 keep 3 significant digits."""
    value = float(value)
    if value != 0 and abs(value) < 10**-3:
        return float(f"{value:.3g}")
    return round(value, DECIMALS)


def parent_metrics(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The test table (``metrics_summary``'s rows) as ``<task>/<method>/<metric>`` metrics.

    A profiling row's task is ``profiling/<attribute>``; its metrics become
    ``profiling/<method>/<attribute>/<metric>`` so every key starts with task and method.
    """
    metrics = {}
    for row in rows:
        task, _, part = str(row["task"]).partition("/")
        prefix = "/".join(p for p in (task, str(row["method"]), part) if p)
        for key, value in row.items():
            if key in ("task", "method") or key in NOT_SCORES:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                continue  # NaN: a column another kind of task fills
            metrics[f"{prefix}/{metric_name(key)}"] = rounded(value)
    return metrics


def readable_tags(
    run_params: Mapping[str, Any], argv: Sequence[str], fallback_command: str
) -> dict[str, str]:
    """The run's tags rewritten for a reader: the runner's class name, lists as
    comma-separated names, ``--params`` as ``key=value`` and the command as typed."""
    tags = {"kedro_command": typed_command(argv, fallback_command)}
    for key, value in run_params.items():
        if not value or key in DROPPED_TAGS:
            continue
        if key == "runner":
            tags[key] = runner_name(value)
        elif isinstance(value, Mapping):
            tags[key] = ", ".join(f"{k}={v}" for k, v in flatten(value).items())
        elif isinstance(value, list | tuple | set):
            tags[key] = ", ".join(str(item) for item in value)
    return tags


def runner_name(runner: Any) -> str:
    """``SequentialRunner`` for the runner, its class or Kedro's repr of an instance."""
    if isinstance(runner, str):
        match = re.fullmatch(r"<(?:[\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>", runner)
        return match[1] if match else runner
    return getattr(runner, "__name__", type(runner).__name__)


def typed_command(argv: Sequence[str], fallback: str) -> str:
    """The command line as the user typed it when the kedro CLI ran; otherwise (a session
    started from Python) kedro-mlflow's reconstruction without the default pipeline it adds."""
    program = Path(argv[0]) if argv else Path()
    if program.name == "kedro" or (program.parent.name == "kedro" and program.stem == "__main__"):
        return shlex.join(["kedro", *argv[1:]])
    if program.parent.name == "clue_pipeline" and program.stem == "__main__":
        return shlex.join(["python", "-m", "clue_pipeline", *argv[1:]])
    return re.sub(r" --pipelines?=__default__(?=\s|$)", "", fallback)


def runs_table_url(host: str, port: str, experiment_id: str) -> str:
    """The experiment's runs table in the MLflow UI, whatever view the browser last used, with
    the test metrics as columns (``runs_table_view``)."""
    query = f"{RUNS_TABLE_QUERY}&viewStateShareKey={VIEW_KEY}"
    return f"http://{host}:{port}/#/experiments/{experiment_id}/runs?{query}"


def runs_table_view(parent_keys: Iterable[str]) -> str:
    """The runs table's view as MLflow's UI reads a shared view (plain JSON is accepted): the
    child runs' test metrics, then the parent's headline metric of every task x method."""
    headline = [key for key in sorted(parent_keys) if key.rsplit("/", 1)[-1] in HEADLINE]
    columns = [f"metrics.`{key}`" for key in (*CHILD_COLUMNS, *headline)]
    return json.dumps(
        {
            "selectedColumns": columns,
            "orderByKey": "attributes.start_time",
            "orderByAsc": False,
            "searchFilter": "",
        }
    )
