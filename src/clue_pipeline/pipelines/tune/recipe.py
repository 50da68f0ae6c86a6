"""The best trial as a run configuration, ``conf/recipes/tuned_<dataset>.yml``.

A recipe is what ``kedro run --config <file>`` reads (as ``conf/recipes/bsarec.yml``): a
``run: params:`` block merged over the run-environment's parameters. The tuned one holds the
blocks that shape what a trial trained (the whole encoder, the next-item head, the
pre-training objective, both stages' learning rate and weight decay, the views where searched),
so it reproduces the trial under the environment it was tuned in even when the study itself
ran with a recipe of its own (``--config``); its header names the study and the trial.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import optuna

from clue_pipeline.config import FinetuneSettings
from clue_pipeline.config.tuning import KNOB_PARAMETERS
from clue_pipeline.tasks.tuning import ENCODER_FIELDS, RATIO_KEYS, TrialRecipe, trial_recipe

# The header's first line: RecipeDataset replaces only a file that starts with it.
FIRST_LINE = "Written by the `tune` pipeline; each tune run of this dataset rewrites it."
FINETUNE_TASK, FINETUNE_METHOD = "next_item", "clue"


def recipe_document(
    study: optuna.Study,
    dataset: str,
    storage: str,
    encoder_params: dict[str, Any],
    base: TrialRecipe,
    finetuning: FinetuneSettings,
    searched: dict[str, Any],
) -> dict[str, Any]:
    """``{"header": ..., "run": {"params": ...}}`` for the study's best trial (RecipeDataset)."""
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        raise ValueError(
            f"study {study.study_name!r} in {storage} has no completed trial (all pruned or "
            "failed), so no recipe to write: add trials (tune.n_trials) or relax tune.pruner"
        )
    best = study.best_trial
    params = tuned_parameters(best.params, encoder_params, base, finetuning)
    return {
        "header": _header(study, best, dataset, storage, base, searched),
        "run": {"params": params},
    }


def tuned_parameters(
    knobs: dict[str, Any],
    encoder_params: dict[str, Any],
    base: TrialRecipe,
    finetuning: FinetuneSettings,
) -> dict[str, Any]:
    """The parameters of the trial with ``knobs`` (Optuna's params), in conf/'s shape.

    Fine-tuning's learning rate and weight decay go where they decide for CLUE's next-item
    fine-tuning: ``finetune.overrides.clue`` or ``finetune.tasks.next_item`` when the
    environment sets them there, ``finetune.train`` otherwise.
    """
    knobs = dict(knobs)
    if isinstance(knobs.get("strategies"), str):  # stored as one categorical choice
        knobs["strategies"] = knobs["strategies"].split("+")
    recipe = trial_recipe(base, knobs)
    encoder = dict(encoder_params)
    encoder.update({k: knobs[k] for k in (*ENCODER_FIELDS, "max_len") if k in knobs})
    objective = {k: v for k, v in asdict(recipe.objective).items() if k != "masked_item_ratio"}
    finetune: dict[str, Any] = {"next_item": asdict(recipe.head)}
    for key in ("lr", "weight_decay"):
        block = finetune
        for part in _finetune_block(finetuning, key):
            block = block.setdefault(part, {})
        block[key] = getattr(recipe.finetune, key)
    params: dict[str, Any] = {
        "encoder": encoder,
        "pretrain": {
            "objective": objective,
            "train": {"lr": recipe.pretrain.lr, "weight_decay": recipe.pretrain.weight_decay},
        },
        "finetune": finetune,
    }
    views = {"strategies": recipe.views["strategies"]} if "strategies" in knobs else {}
    if "ratio" in knobs:
        views.update({k: recipe.views[k] for k in RATIO_KEYS})
    if views:
        params["augment"] = {"views": views}
    return params


def _finetune_block(finetuning: FinetuneSettings, key: str) -> tuple[str, ...]:
    if key in finetuning.overrides.get(FINETUNE_METHOD, {}):
        return ("overrides", FINETUNE_METHOD)
    if key in finetuning.tasks.get(FINETUNE_TASK, {}):
        return ("tasks", FINETUNE_TASK)
    return ("train",)


def _header(
    study: optuna.Study,
    best: optuna.trial.FrozenTrial,
    dataset: str,
    storage: str,
    base: TrialRecipe,
    searched: dict[str, Any],
) -> str:
    protocol = "excluded" if base.exclude_history else "kept"
    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            FIRST_LINE,
            f"Recipe tuned for dataset {dataset}, written {written}:",
            f"study {study.study_name!r} in {storage},",
            f"trial {best.number} of {len(states)} ({counts}),",
            f"validation {base.finetune.monitor} {best.value:.6f} (history {protocol}).",
            f"Each trial: {base.pretrain.epochs} pre-training + {base.finetune.epochs} "
            "fine-tuning epochs (tune.budget); no test metric was read.",
            "Searched (tune.search_space):",
            *(f"  {k} {list(v)} -> {KNOB_PARAMETERS[k]}" for k, v in searched.items()),
            "Run it:",
            f"  .venv/bin/kedro run --config conf/recipes/tuned_{dataset}.yml --env <env>",
            f"  (<env>: the run-environment whose dataset is {dataset}; no --env for conf/base)",
            "A --params on the same command line replaces this whole block: put further",
            "overrides in a copy. `kedro run --pipelines=tune` adds trials and rewrites this.",
        ]
    )
