"""Strict parameters: every key of every block is one the typed settings know.

A typo (``--params ingest.formatt=generic``) would otherwise be ignored and the default run
instead, rc 0. :func:`check_parameters` walks the parameters against the settings' fields and
refuses the first unknown keys in one line, naming the nearest valid key (difflib). Blocks
that are open maps (method, task or column names) are declared as such in :func:`schema`.
"""

from __future__ import annotations

import difflib
import functools
import typing
from dataclasses import fields, is_dataclass
from typing import Any

from clue_pipeline.config import blocks
from clue_pipeline.config.finetuning import (
    ClassifierHead,
    EvaluateSettings,
    LinearFloorConfig,
    NextItemHead,
)
from clue_pipeline.config.pretraining import (
    AttributesConfig,
    DistributedSettings,
    HealthConfig,
    MaskedItemConfig,
    ObjectiveConfig,
    S3RecConfig,
    SimSiamConfig,
)
from clue_pipeline.config.renames import RENAMED_KEYS
from clue_pipeline.config.training import TrainConfig

LEAF = None  # a value, not checked below


class OpenMap:
    """Any key (a name the user chooses), each value of ``schema``."""

    def __init__(self, schema: Any = LEAF) -> None:
        self.schema = schema


def check_parameters(params: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming every unknown key (dotted) and the nearest known one."""
    problems = unknown_keys(params)
    if problems:
        raise ValueError("; ".join(problems))


def unknown_keys(params: dict[str, Any]) -> list[str]:
    """One message per unknown key, e.g. ``unknown parameter 'ingest.formatt' (did you mean
    'ingest.format'?)``."""
    found: list[str] = []
    _walk(params, schema(), "", found)
    return found


@functools.cache
def schema() -> dict[str, Any]:
    """The parameter tree: block -> its settings' fields, nested settings resolved."""
    from clue_pipeline.models.baselines import BaselineConfig
    from clue_pipeline.models.encoders import EncoderConfig
    from clue_pipeline.tasks.finetuning import MethodSpec

    train = _of(TrainConfig)
    return {
        "dataset_name": LEAF,
        "encoder": _of(EncoderConfig, drop=("num_items",)),
        "augment": _of(blocks.AugmentSettings),
        "embed": _of(blocks.EmbedSettings),
        "evaluate": _of(EvaluateSettings),
        "ingest": _of(blocks.IngestSettings),
        "sequences": _of(blocks.SequencesSettings),
        "tune": _of(blocks.TuneSettings),
        "tracking": _of(blocks.TrackingSettings),
        "report": _of(blocks.ReportSettings, leaves=("profiles",)),
        "pretrain": {
            "objective": _of(ObjectiveConfig, drop=("masked_item_ratio",)),
            "simsiam": _of(SimSiamConfig),
            "health": _of(HealthConfig),
            "masked_item": _of(MaskedItemConfig),
            "s3rec": {**_of(S3RecConfig), "attributes": _of(AttributesConfig)},
            "train": train,
            "distributed": _of(DistributedSettings),
        },
        "finetune": {
            "train": train,
            "tasks": OpenMap(train),
            "overrides": OpenMap(train),
            "next_item": _of(NextItemHead),
            "classifier": _of(ClassifierHead),
            "train_user_fraction": LEAF,
            "methods": OpenMap(_of(MethodSpec)),
            "baselines": OpenMap(_of(BaselineConfig, drop=("num_items", "num_classes"))),
            "linear": _of(LinearFloorConfig),
        },
    }


def _of(cls: type, drop: tuple[str, ...] = (), leaves: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass's fields; a field typed as a settings dataclass (or an open map of them)
    is walked into, any other is a value."""
    try:
        hints = typing.get_type_hints(cls)
    except NameError:  # a foreign module's forward references: its fields are values
        hints = {}
    tree: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in drop:
            continue
        tree[f.name] = LEAF if f.name in leaves else _nested(hints.get(f.name))
    return tree


def _nested(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if is_dataclass(hint):
        return _of(hint)
    if typing.get_origin(hint) is dict and len(args) == 2:
        return OpenMap(_nested(args[1]))
    if len(args) == 1 and is_dataclass(args[0]):  # X | None
        return _of(args[0])
    return LEAF


def _walk(value: Any, node: Any, path: str, found: list[str]) -> None:
    if node is LEAF or not isinstance(value, dict):
        return
    if isinstance(node, OpenMap):
        for key, child in value.items():
            _walk(child, node.schema, f"{path}{key}.", found)
        return
    for key, child in value.items():
        if key not in node:
            found.append(_message(f"{path}{key}", path, list(node)))
            continue
        _walk(child, node[key], f"{path}{key}.", found)


def _message(key: str, parent: str, siblings: list[str]) -> str:
    if key in RENAMED_KEYS:
        return f"unknown parameter {key!r}: it is now {RENAMED_KEYS[key]!r}"
    close = difflib.get_close_matches(key[len(parent) :], siblings, n=1, cutoff=0.5)
    if close:
        return f"unknown parameter {key!r} (did you mean {parent + close[0]!r}?)"
    where = parent[:-1] or "the top level"
    return f"unknown parameter {key!r}; {where} has {sorted(siblings)}"
