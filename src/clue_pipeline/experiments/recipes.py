"""Recipes as conf files: the next-item recipe ladder of ``conf/recipes/ladder.yml``, and the
one soft merge of nested settings that a rung (and anything else merging a change over a base)
uses.

Plain dicts and YAML only, no data stack, so that a GPU machine with torch, numpy and PyYAML
trains the same recipes as the CPU ladder.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LADDER = Path(__file__).resolve().parents[3] / "conf" / "recipes" / "ladder.yml"


def merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``change`` soft-merged over a copy of ``base``: nested dicts merge key by key, any other
    value (a list, None) replaces the base's, as Kedro's soft merge of run-environments does."""
    merged = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass(frozen=True)
class Rung:
    parent: str | None
    change: dict[str, Any]
    what: str


@dataclass(frozen=True)
class Ladder:
    base: dict[str, Any]
    rungs: dict[str, Rung]
    patience: int
    max_epochs: int

    def recipe(self, name: str) -> dict[str, Any]:
        """A rung's full settings: the chain of changes from the base down to it."""
        if name not in self.rungs:
            raise KeyError(f"unknown rung {name!r}; known: {list(self.rungs)}")
        rung = self.rungs[name]
        parent = self.base if rung.parent is None else self.recipe(rung.parent)
        return merge(parent, rung.change)


def load_ladder(path: Path = LADDER) -> Ladder:
    """The ladder of ``path``; a rung whose parent is not a rung is refused by name."""
    document = yaml.safe_load(Path(path).read_text())
    rungs = {
        name: Rung(spec.get("parent"), spec.get("change") or {}, spec["what"])
        for name, spec in document["rungs"].items()
    }
    for name, rung in rungs.items():
        if rung.parent is not None and rung.parent not in rungs:
            raise ValueError(f"{path}: rung {name!r} has the unknown parent {rung.parent!r}")
    return Ladder(document["base"], rungs, int(document["patience"]), int(document["max_epochs"]))
