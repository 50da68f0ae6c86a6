"""Optuna search over CLUE's knobs: dropout first (the paper's most sensitive one).

A trial = a short CLUE pre-training with the sampled knobs, then a short next-item fine-tuning;
its value is the validation metric. Fine-tuning epochs feed the MedianPruner. Each trial is a
nested MLflow run under the tuning run, opened with an explicit ``parent_run_id`` rather than
Optuna's MLflowCallback, which starts trials as top-level runs when a parent run is active.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import mlflow
import numpy as np
import optuna

from clue_pipeline.augment import validate_view_policy
from clue_pipeline.config.blocks import SearchSpace
from clue_pipeline.models.encoders import EncoderConfig
from clue_pipeline.models.objectives import ObjectiveConfig
from clue_pipeline.tasks.finetuning import MethodSpec, NextItemHead, make_encoder
from clue_pipeline.tasks.finetuning import finetune_next_item as train_next_item
from clue_pipeline.tasks.pretraining import ClueSettings, PretrainJob, SimSiamConfig, run_job
from clue_pipeline.tasks.task_data import NextItemData
from clue_pipeline.training.loop import TrainConfig

logger = logging.getLogger(__name__)


def sample_knobs(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    knobs: dict[str, Any] = {}
    if space.dropout:
        knobs["dropout"] = trial.suggest_float("dropout", *space.dropout)
    if space.strategies:
        choices = ["+".join(s) for s in space.strategies]
        knobs["strategies"] = trial.suggest_categorical("strategies", choices).split("+")
    if space.ratio:
        knobs["ratio"] = trial.suggest_float("ratio", *space.ratio)
    if space.lr:
        knobs["lr"] = trial.suggest_float("lr", *space.lr, log=True)
    return knobs


def make_objective(
    data: NextItemData,
    pretrain_tokens: np.ndarray,
    encoder: EncoderConfig,
    view_params: dict,
    pretrain: TrainConfig,
    finetune: TrainConfig,
    simsiam: SimSiamConfig,
    space: SearchSpace,
    parent_run_id: str | None,
    layout: str = "user",
    objective: ObjectiveConfig | None = None,
    head: NextItemHead | None = None,
    exclude_history: bool = False,
) -> Callable[[optuna.Trial], float]:
    """The trial function: pre-train with sampled knobs, fine-tune, return validation metric.

    ``layout``: the next-item training rows (``finetune.next_item.rows``), built once;
    ``exclude_history``: the ranking protocol of validation (``evaluate.exclude_history``).
    ``objective`` and ``head``: ``pretrain.objective`` and ``finetune.next_item``, so a trial
    trains what ``kedro run`` would with the same knobs.
    """
    objective = objective or ObjectiveConfig()
    head = head or NextItemHead()
    train_rows = data.training_rows(layout)

    def trial_value(trial: optuna.Trial) -> float:
        knobs = sample_knobs(trial, space)
        trial_encoder = replace(encoder, dropout=knobs.get("dropout", encoder.dropout))
        views = dict(view_params)
        if "strategies" in knobs:
            views["strategies"] = knobs["strategies"]
        if "ratio" in knobs:
            views.update({f"{s}_ratio": knobs["ratio"] for s in ("mask", "crop", "permute")})
        trial_pretrain = replace(pretrain, lr=knobs.get("lr", pretrain.lr), checkpoint_dir=None)
        with _trial_run(trial, parent_run_id, knobs):
            job = PretrainJob(
                method="clue",
                tokens=pretrain_tokens,
                encoder=trial_encoder,
                train=trial_pretrain,
                settings=ClueSettings(validate_view_policy(views), simsiam, objective),
            )
            checkpoint, _ = run_job(job)
            pruned = _PruningReporter(trial, finetune.monitor)
            _, result = train_next_item(
                train_rows,
                data.valid,
                make_encoder(trial_encoder, checkpoint, MethodSpec("clue")),
                replace(finetune, checkpoint_dir=None),
                on_validation=pruned,
                head=head,
                exclude_history=exclude_history,
            )
            best = max(entry[finetune.monitor] for entry in result.history)
            if mlflow.active_run() is not None:
                mlflow.log_metric(f"valid_{finetune.monitor}".replace("@", "_at_"), best)
        return best

    return trial_value


class _PruningReporter:
    """Feeds each epoch's validation metric to the pruner; stops the trial when told to."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial, self.monitor, self.epoch = trial, monitor, 0

    def __call__(self, metrics: dict[str, float], model=None) -> None:
        self.trial.report(metrics[self.monitor], self.epoch)
        self.epoch += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at fine-tuning epoch {self.epoch}")


class _trial_run:
    """A nested MLflow run for one trial, only when the tuning run is tracked."""

    def __init__(self, trial: optuna.Trial, parent_run_id: str | None, knobs: dict) -> None:
        self.trial, self.parent, self.knobs = trial, parent_run_id, knobs

    def __enter__(self):
        if self.parent is None:
            return None
        run = mlflow.start_run(
            run_name=f"trial-{self.trial.number}", nested=True, parent_run_id=self.parent
        )
        mlflow.log_params({k: str(v) for k, v in self.knobs.items()})
        mlflow.set_tag("optuna.trial", self.trial.number)
        return run

    def __exit__(self, exc_type, exc, tb):
        if self.parent is None:
            return False
        pruned = exc_type is optuna.TrialPruned
        mlflow.end_run("KILLED" if pruned else ("FAILED" if exc_type else "FINISHED"))
        return False


def run_study(
    objective: Callable[[optuna.Trial], float],
    study_name: str,
    storage: str,
    n_trials: int,
    seed: int,
    pruner_startup_trials: int,
    pruner_warmup_steps: int,
    timeout_s: float | None = None,
    progress: bool = True,
) -> optuna.Study:
    """Create or resume the persistent study and add ``n_trials`` trials to it."""
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed + len(_existing(storage, study_name))),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=pruner_startup_trials, n_warmup_steps=pruner_warmup_steps
        ),
    )
    logger.info("study %s: %d trials so far, adding %d", study_name, len(study.trials), n_trials)
    study.optimize(objective, n_trials=n_trials, timeout=timeout_s, show_progress_bar=progress)
    return study


def _existing(storage: str, study_name: str) -> list:
    """Trials already in the study, so that a resumed study's sampler gets a fresh seed."""
    try:
        return optuna.load_study(study_name=study_name, storage=storage).trials
    except KeyError:
        return []
