"""Nodes of the `tune` pipeline: an Optuna study over dropout and other CLUE knobs."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, replace

import mlflow
import pandas as pd

from clue_pipeline.config import (
    FinetuneSettings,
    PretrainSettings,
    SearchSpace,
    encoder_config,
    parse_finetune,
    parse_pretrain,
    to_dataclass,
)
from clue_pipeline.figures import dropout_sensitivity
from clue_pipeline.pipelines.pretrain.nodes import corpus_sequences
from clue_pipeline.tasks.batching import model_inputs
from clue_pipeline.tasks.task_data import next_item_data
from clue_pipeline.tasks.tuning import make_objective, run_study

logger = logging.getLogger(__name__)


def tune_clue(
    split: pd.DataFrame,
    item_index: pd.DataFrame,
    encoder_params: dict,
    view_params: dict,
    pretrain_params: dict | PretrainSettings,
    finetune_params: dict | FinetuneSettings,
    tune_params: dict,
    exclude_history: bool = False,
):
    """Run (or resume) the study; returns best parameters, all trials and the sensitivity plot.

    A trial trains what ``kedro run`` would (the same objective, heads, rows and ranking
    protocol), at ``tune.budget``'s epochs and without checkpoints.
    """
    encoder = encoder_config(encoder_params, num_items=len(item_index))
    data = next_item_data(split, encoder.max_len, encoder.num_items)
    pretraining, finetuning = parse_pretrain(pretrain_params), parse_finetune(finetune_params)
    budget = tune_params["budget"]
    no_checkpoints = {"checkpoint_dir": None, "checkpoint_every_steps": None, "resume": False}
    pretrain = replace(pretraining.train, epochs=budget["pretrain_epochs"], **no_checkpoints)
    finetune = replace(
        finetuning.train_for("next_item", "clue"),
        epochs=budget["finetune_epochs"],
        **no_checkpoints,
    )
    space = to_dataclass(
        SearchSpace, tune_params["search_space"], "tune.search_space", check_ranges=False
    )
    _check_search_space(space)
    parent = mlflow.active_run()
    objective = make_objective(
        data=data,
        pretrain_tokens=model_inputs(corpus_sequences(split), encoder.max_len, encoder.tokens.user),
        encoder=encoder,
        view_params=view_params,
        pretrain=pretrain,
        finetune=finetune,
        simsiam=pretraining.simsiam,
        space=space,
        parent_run_id=parent.info.run_id if parent else None,
        layout=finetuning.next_item.rows,
        objective=pretraining.objective,
        head=finetuning.next_item,
        exclude_history=exclude_history,
    )
    study = run_study(
        objective,
        study_name=tune_params["study_name"],
        storage=tune_params["storage"],
        n_trials=int(tune_params["n_trials"]),
        seed=int(tune_params["seed"]),
        pruner_startup_trials=int(tune_params["pruner"]["n_startup_trials"]),
        pruner_warmup_steps=int(tune_params["pruner"]["n_warmup_steps"]),
        timeout_s=tune_params.get("timeout_s"),
        progress=sys.stderr.isatty(),  # a bar on a terminal; no bar frames in a log file
    )
    trials = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration"))
    trials["duration"] = trials["duration"].dt.total_seconds()
    trials["state"] = trials["state"].astype(str)
    best = _best_parameters(study, encoder_params, view_params, asdict(pretraining.train))
    return best, trials, dropout_sensitivity(trials)


def _best_parameters(study, encoder_params, view_params, pretrain_train: dict) -> dict:
    """The best trial's knobs in the shape of conf/ parameters, ready to copy there."""
    completed = [t for t in study.trials if t.value is not None and t.state.name == "COMPLETE"]
    if not completed:
        return {"note": "no completed trial yet", "study": study.study_name}
    knobs = study.best_trial.params
    encoder = {**encoder_params, **({"dropout": knobs["dropout"]} if "dropout" in knobs else {})}
    views = dict(view_params)
    if "strategies" in knobs:
        views["strategies"] = knobs["strategies"].split("+")
    if "ratio" in knobs:
        views.update({f"{s}_ratio": knobs["ratio"] for s in ("mask", "crop", "permute")})
    train = dict(pretrain_train)
    if "lr" in knobs:
        train["lr"] = knobs["lr"]
    return {
        "encoder": encoder,
        "augment": {"views": views},
        "pretrain": {"train": train},
        "_tuning": {
            "study": study.study_name,
            "best_trial": study.best_trial.number,
            "best_value": study.best_value,
            "trials": len(study.trials),
        },
    }


def _check_search_space(space: SearchSpace) -> None:
    """Ranges must be [low, high] with low < high, and dropout within the paper's (0, 1)."""
    for name in ("dropout", "ratio", "lr"):
        bounds = getattr(space, name)
        if bounds is None:
            continue
        if len(bounds) != 2 or not bounds[0] < bounds[1]:
            raise ValueError(
                f"tune.search_space.{name} = {bounds!r}: expected [low, high], low < high"
            )
        if name in ("dropout", "ratio") and not (bounds[0] >= 0.0 and bounds[1] < 1.0):
            raise ValueError(
                f"tune.search_space.{name} = {bounds!r}: expected bounds within [0, 1)"
            )
