"""The settings a cell ran with, so that a stored cell whose settings have since changed is
told apart from one that still stands.

A cell is keyed by its overrides only; what the run-environment's files say (the encoder of
``conf/beauty``, a training budget) is not in the key. Each new cell therefore stores the
parameters its run resolved, and a stored cell is *stale* when a setting it recorded differs
from today's. Settings that are new since the cell ran are not counted: a new option starts at
the behaviour it extends. Cells stored before settings were recorded cannot be checked.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from clue_pipeline.config.renames import renamed
from clue_pipeline.experiments.cells import INIT, PRETRAIN_TASK, Cell, flatten, nest
from clue_pipeline.experiments.recipes import merge

# The parameter sections that shape a cell's numbers (not reporting, tuning or serving).
CELL_SECTIONS = (
    "dataset_name",
    "ingest",
    "sequences",
    "augment",
    "encoder",
    "pretrain",
    "finetune",
    "evaluate",
)
# Keys that change where or how visibly a run works, not what it computes.
NEUTRAL_KEYS = frozenset(
    {"device", "progress", "checkpoint_dir", "checkpoint_every_steps", "resume", "figures"}
)


@lru_cache(maxsize=16)
def _environment_parameters(conf_source: str, env: str | None) -> str:
    """The run-environment's parameters (conf/base soft-merged with conf/<env>), as JSON so the
    cache hands out fresh copies."""
    from kedro.config import OmegaConfigLoader

    from clue_pipeline.config_loader import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source, env=env, **CONFIG_LOADER_ARGS)
    return json.dumps(loader["parameters"])


def cell_sections(cell: Cell) -> tuple[str, ...]:
    """The sections that shape this cell: a method without pre-training leaves out the
    pre-training objective and its views (a new objective does not touch CLUE-Zero)."""
    if cell.task == PRETRAIN_TASK or cell.method in INIT:
        return CELL_SECTIONS
    return tuple(key for key in CELL_SECTIONS if key not in ("pretrain", "augment"))


def resolved_settings(
    project_dir: Path,
    env: str | None,
    params: dict[str, Any],
    sections: tuple[str, ...] = CELL_SECTIONS,
) -> dict:
    """Flat {dotted.key: value} of what `kedro run --env env --config <params>` resolves to,
    restricted to ``sections``."""
    base = json.loads(_environment_parameters(str(Path(project_dir) / "conf"), env))
    params = nest(renamed(flatten(json.loads(json.dumps(params)))))  # old names; tuples as lists
    merged = merge(base, params)  # the loader's values are resolved: plain mappings merge
    kept = {key: merged[key] for key in sections if key in merged}
    return {
        key: value
        for key, value in flatten(kept).items()
        if not NEUTRAL_KEYS.intersection(key.split("."))
    }


# finetune sections with one entry per method: a cell records only its own method's entry
PER_METHOD = ("methods", "overrides", "baselines")
# pre-training sections that one pre-training method reads (the others, such as `train` and
# `health`, every one): CLUE's objective does not touch a masked-item cell, nor its views
# (`masked_item.mask_ratio` is also the ratio of CLUE's masked-item term)
PRETRAIN_OWNER = {
    "objective": ("clue",),
    "simsiam": ("clue",),
    "masked_item": ("mip", "clue"),
    "s3rec": ("s3rec",),
}
SECTION_OWNER = {"augment": "clue"}


def cell_settings(cell: Cell, project_dir: Path, env: str | None, params: dict) -> dict:
    """The settings that shape ``cell``: its sections (:func:`cell_sections`), of the
    per-method entries its own method's only (another method's spec does not touch it), and
    of the pre-training sections those its pre-training method reads."""
    settings = resolved_settings(project_dir, env, params, cell_sections(cell))
    pretraining = cell.method if cell.task == PRETRAIN_TASK else INIT.get(cell.method)
    return {
        key: value for key, value in settings.items() if _concerns(key, cell.method, pretraining)
    }


def concerns(cell: Cell, key: str) -> bool:
    """Whether the dotted parameter ``key`` shapes ``cell`` (the rule of :func:`cell_settings`)."""
    if key.split(".")[0] not in cell_sections(cell):
        return False
    pretraining = cell.method if cell.task == PRETRAIN_TASK else INIT.get(cell.method)
    return _concerns(key, cell.method, pretraining)


def _concerns(key: str, method: str, pretraining: str | None) -> bool:
    parts = key.split(".")
    if parts[0] == "finetune" and len(parts) > 1 and parts[1] in PER_METHOD:
        return len(parts) > 2 and parts[2] == method
    if parts[0] == "pretrain" and len(parts) > 1 and parts[1] in PRETRAIN_OWNER:
        return pretraining in PRETRAIN_OWNER[parts[1]]
    return SECTION_OWNER.get(parts[0], pretraining) == pretraining


def settings_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for each setting both sides have and that differs, sorted.

    ``recorded`` is read under today's names (:data:`RENAMED_KEYS`): a cell stored before a
    key was renamed or merged still compares with the key's value today.
    """
    recorded = renamed(recorded)
    return [
        f"{key}: {json.dumps(recorded[key])} -> {json.dumps(current[key])}"
        for key in sorted(recorded.keys() & current.keys())
        if recorded[key] != current[key]
    ]
