"""Nodes of the `tune` pipeline: an Optuna study over a next-item recipe's knobs per dataset."""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import asdict, replace

import mlflow
import pandas as pd

from clue_pipeline.config import (
    FinetuneSettings,
    PretrainSettings,
    encoder_config,
    parse_finetune,
    parse_pretrain,
    parse_tune,
)
from clue_pipeline.config.tuning import check_space_fits_encoder, searched_knobs
from clue_pipeline.figures import dropout_sensitivity
from clue_pipeline.pipelines.pretrain.nodes import corpus_sequences
from clue_pipeline.pipelines.tune.recipe import recipe_document
from clue_pipeline.tasks.batching import model_inputs
from clue_pipeline.tasks.task_data import next_item_data
from clue_pipeline.tasks.tuning import TrialInputs, TrialRecipe, make_objective, run_study

logger = logging.getLogger(__name__)


def tune_clue(
    split: pd.DataFrame,
    item_index: pd.DataFrame,
    encoder_params: dict,
    view_params: dict,
    pretrain_params: dict | PretrainSettings,
    finetune_params: dict | FinetuneSettings,
    tune_params: dict,
    exclude_history: bool,
    dataset: str,
):
    """Run (or resume) the study; returns best parameters, the tuned recipe, all trials and the
    sensitivity plot.

    A trial trains what ``kedro run`` would (the same objective, heads, rows and ranking
    protocol), at ``tune.budget``'s epochs and without checkpoints, and is scored on
    validation: the trials never see a test target (:class:`TrialInputs`).
    """
    tune = parse_tune(tune_params)
    check_space_fits_encoder(tune.search_space, encoder_params)
    encoder = encoder_config(encoder_params, num_items=len(item_index))
    pretraining, finetuning = parse_pretrain(pretrain_params), parse_finetune(finetune_params)
    no_checkpoints = {"checkpoint_dir": None, "checkpoint_every_steps": None, "resume": False}
    base = TrialRecipe(
        encoder=encoder,
        views=dict(view_params),
        pretrain=replace(pretraining.train, epochs=tune.budget.pretrain_epochs, **no_checkpoints),
        finetune=replace(
            finetuning.train_for("next_item", "clue"),
            epochs=tune.budget.finetune_epochs,
            **no_checkpoints,
        ),
        simsiam=pretraining.simsiam,
        objective=pretraining.objective,
        head=finetuning.next_item,
        exclude_history=exclude_history,
    )
    parent = mlflow.active_run()
    study = run_study(
        make_objective(
            _inputs_for(split, encoder.num_items, finetuning.next_item.rows),
            base,
            tune.search_space,
            parent_run_id=parent.info.run_id if parent else None,
        ),
        study_name=tune.study_name,
        storage=tune.storage,
        n_trials=tune.n_trials,
        seed=tune.seed,
        pruner=tune.pruner,
        timeout_s=tune.timeout_s,
        progress=sys.stderr.isatty(),  # a bar on a terminal; no bar frames in a log file
    )
    searched = searched_knobs(tune.search_space)
    recipe = recipe_document(
        study, dataset, tune.storage, encoder_params, base, finetuning, searched
    )
    trials = study.trials_dataframe(attrs=("number", "value", "params", "state", "duration"))
    trials["duration"] = trials["duration"].dt.total_seconds()
    trials["state"] = trials["state"].astype(str)
    best = _best_parameters(study, recipe, asdict(pretraining.train), view_params)
    return best, recipe, trials, dropout_sensitivity(trials, param=_plotted(searched, trials))


def _inputs_for(split: pd.DataFrame, num_items: int, layout: str):
    """``max_len`` -> the trial's rows; the last two lengths are kept (rows at a long window
    are large, and TPE rarely draws one length twice in a row)."""

    @functools.lru_cache(maxsize=2)
    def inputs_for(max_len: int) -> TrialInputs:
        data = next_item_data(split, max_len, num_items)
        corpus = model_inputs(corpus_sequences(split), max_len, data.user_token)
        return TrialInputs(corpus, data.training_rows(layout), data.valid)

    return inputs_for


def _plotted(searched: dict, trials: pd.DataFrame) -> str:
    """The knob the sensitivity plot draws: dropout where searched, else the first searched
    float knob in the trials table."""
    names = [n for n in searched if f"params_{n}" in trials.columns]
    numeric = [n for n in names if pd.api.types.is_numeric_dtype(trials[f"params_{n}"])]
    return "dropout" if "dropout" in numeric else (numeric or names or ["dropout"])[0]


def _best_parameters(study, recipe: dict, pretrain_train: dict, view_params: dict) -> dict:
    """The best trial's parameters (the recipe's), with the whole pre-training ``train`` block
    and views, kept beside the trials as a versioned record of each tuning run."""
    params = recipe["run"]["params"]
    train = {**pretrain_train, **params["pretrain"]["train"]}
    views = {**view_params, **params.get("augment", {}).get("views", {})}
    return {
        **params,
        "augment": {"views": views},
        "pretrain": {**params["pretrain"], "train": train},
        "_tuning": {
            "study": study.study_name,
            "best_trial": study.best_trial.number,
            "best_value": study.best_value,
            "trials": len(study.trials),
        },
    }
