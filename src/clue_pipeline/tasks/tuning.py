"""Optuna search over a next-item recipe's knobs: dropout first (the paper's most sensitive one),
then learning rates, weight decay, the backbone's own knobs and the window length.

A trial = a short CLUE pre-training with the sampled knobs, then a short next-item fine-tuning;
its value is the best validation metric of its epochs, which also feed the pruner. A trial sees
training rows and validation targets only (:class:`TrialInputs` has no test part), so the
search never reads a test metric. Each trial is a nested MLflow run under the tuning run,
opened with an explicit ``parent_run_id`` rather than Optuna's MLflowCallback, which starts
trials as top-level runs when a parent run is active.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import mlflow
import numpy as np
import optuna

from clue_pipeline.augment import validate_view_policy
from clue_pipeline.config.blocks import PrunerConfig, SearchSpace
from clue_pipeline.config.tuning import CHOICES, INTEGERS, LOG_SCALE, searched_knobs
from clue_pipeline.models.encoders import EncoderConfig
from clue_pipeline.models.objectives import ObjectiveConfig
from clue_pipeline.tasks.finetuning import (
    MethodSpec,
    NextItemHead,
    NextItemRows,
    RankingData,
    make_encoder,
)
from clue_pipeline.tasks.finetuning import finetune_next_item as train_next_item
from clue_pipeline.tasks.pretraining import ClueSettings, PretrainJob, SimSiamConfig, run_job
from clue_pipeline.tracking_store import sqlite_path
from clue_pipeline.training.loop import TrainConfig

logger = logging.getLogger(__name__)

ENCODER_FIELDS = ("dropout", "blocks", "heads", "ffn_hidden", "frequency_mix", "frequency_cutoff")
RATIO_KEYS = ("mask_ratio", "crop_ratio", "permute_ratio")


@dataclass(frozen=True)
class TrialInputs:
    """What a trial trains and validates on, at one ``max_len``: no test targets."""

    pretrain_tokens: np.ndarray
    train_rows: NextItemRows
    valid: RankingData


@dataclass(frozen=True)
class TrialRecipe:
    """What a trial trains when no knob is sampled: the run-environment's settings at the
    study's budget. A trial's own is :func:`trial_recipe` of this and its knobs."""

    encoder: EncoderConfig
    views: dict[str, Any]
    pretrain: TrainConfig
    finetune: TrainConfig
    simsiam: SimSiamConfig = field(default_factory=SimSiamConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    head: NextItemHead = field(default_factory=NextItemHead)
    exclude_history: bool = False  # the ranking protocol of validation (evaluate's)


def sample_knobs(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """One value per searched knob: lrs on a log scale, weight decay too when its low is > 0,
    integer ranges as integers, lists as choices (a strategy list joined by ``+``)."""
    knobs: dict[str, Any] = {}
    for name, bounds in searched_knobs(space).items():
        if name == "strategies":
            choices = ["+".join(s) for s in bounds]
            knobs[name] = trial.suggest_categorical(name, choices).split("+")
        elif name in CHOICES:
            knobs[name] = trial.suggest_categorical(name, list(bounds))
        elif name in INTEGERS:
            knobs[name] = trial.suggest_int(name, *bounds)
        else:
            log = name in LOG_SCALE or (name == "weight_decay" and bounds[0] > 0)
            knobs[name] = trial.suggest_float(name, float(bounds[0]), float(bounds[1]), log=log)
    return knobs


def trial_recipe(base: TrialRecipe, knobs: dict[str, Any]) -> TrialRecipe:
    """``base`` with the sampled knobs set (``EncoderConfig`` checks the combination)."""
    encoder_changes = {k: knobs[k] for k in (*ENCODER_FIELDS, "max_len") if k in knobs}
    views = dict(base.views)
    if "strategies" in knobs:
        views["strategies"] = list(knobs["strategies"])
    if "ratio" in knobs:
        views.update(dict.fromkeys(RATIO_KEYS, knobs["ratio"]))
    finetune_changes = {"lr": knobs.get("finetune_lr", base.finetune.lr)}
    finetune_changes["weight_decay"] = knobs.get("weight_decay", base.finetune.weight_decay)
    return replace(
        base,
        encoder=replace(base.encoder, **encoder_changes),
        views=views,
        pretrain=replace(base.pretrain, lr=knobs.get("pretrain_lr", base.pretrain.lr)),
        finetune=replace(base.finetune, **finetune_changes),
    )


def make_objective(
    inputs_for: Callable[[int], TrialInputs],
    base: TrialRecipe,
    space: SearchSpace,
    parent_run_id: str | None,
) -> Callable[[optuna.Trial], float]:
    """The trial function: pre-train with sampled knobs, fine-tune, return the validation metric.

    ``inputs_for(max_len)``: the trial's rows at its window length (the base one unless
    ``max_len`` is searched); ``base``: what ``kedro run`` would train, so a trial differs
    from it only by its knobs.
    """
    monitor = base.finetune.monitor

    def trial_value(trial: optuna.Trial) -> float:
        knobs = sample_knobs(trial, space)
        recipe = trial_recipe(base, knobs)
        inputs = inputs_for(recipe.encoder.max_len)
        with _trial_run(trial, parent_run_id, knobs):
            job = PretrainJob(
                method="clue",
                tokens=inputs.pretrain_tokens,
                encoder=recipe.encoder,
                train=replace(recipe.pretrain, checkpoint_dir=None),
                settings=ClueSettings(
                    validate_view_policy(recipe.views), recipe.simsiam, recipe.objective
                ),
            )
            checkpoint, _ = run_job(job)
            _, result = train_next_item(
                inputs.train_rows,
                inputs.valid,
                make_encoder(recipe.encoder, checkpoint, MethodSpec("clue")),
                replace(recipe.finetune, checkpoint_dir=None),
                on_validation=_PruningReporter(trial, monitor),
                head=recipe.head,
                exclude_history=recipe.exclude_history,
            )
            best = max(entry[monitor] for entry in result.history)
            if mlflow.active_run() is not None:
                mlflow.log_metric(f"valid_{monitor}".replace("@", "_at_"), best)
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


def make_pruner(config: PrunerConfig) -> optuna.pruners.BasePruner:
    """``tune.pruner``: the median rule, or successive halving over fine-tuning epochs."""
    if config.kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=config.min_resource, reduction_factor=config.reduction_factor
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=config.n_startup_trials, n_warmup_steps=config.n_warmup_steps
    )


def run_study(
    objective: Callable[[optuna.Trial], float],
    study_name: str,
    storage: str,
    n_trials: int,
    seed: int,
    pruner: PrunerConfig,
    timeout_s: float | None = None,
    progress: bool = True,
) -> optuna.Study:
    """Create or resume the persistent study and add ``n_trials`` trials to it.

    TPE is seeded with ``seed`` plus the trials already stored, so a resumed study does not
    draw its first trials again. Each finished trial is logged with the best so far.
    """
    _make_sqlite_folder(storage)
    done = len(_existing(storage, study_name))
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed + done),
        pruner=make_pruner(pruner),
    )
    logger.info("study %s: %d trials so far, adding %d", study_name, done, n_trials)
    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=timeout_s,
        show_progress_bar=progress,
        callbacks=[_ProgressLog(done, n_trials)],
    )
    return study


class _ProgressLog:
    """One log line per finished trial: its state and value, and the best so far."""

    def __init__(self, done_before: int, n_trials: int) -> None:
        self.done_before, self.n_trials = done_before, n_trials

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        this_run = trial.number - self.done_before + 1
        value = "" if trial.value is None else f" {trial.value:.4f}"
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:  # no completed trial yet
            best = "no completed trial yet"
        logger.info(
            "study %s: trial %d (%d of %d this run) %s%s; %s",
            study.study_name,
            trial.number,
            this_run,
            self.n_trials,
            trial.state.name.lower(),
            value,
            best,
        )


def _make_sqlite_folder(storage: str) -> None:
    """SQLite creates the database file but not its folder (a dataset tuned right after
    `sequences` has no data/07_model_output/ yet)."""
    database = sqlite_path(storage)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)


def _existing(storage: str, study_name: str) -> list:
    """Trials already in the study, so that a resumed study's sampler gets a fresh seed."""
    try:
        return optuna.load_study(study_name=study_name, storage=storage).trials
    except KeyError:
        return []
