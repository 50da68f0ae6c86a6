"""Parameter trees and their dotted form: ``{"a": {"b": 1}}`` <-> ``{"a.b": 1}``.

One home for the conversion that overrides, stored cell settings, MLflow params and tags all
use, so a key means the same path everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} and {"a.b": 1} both -> {"a.b": 1}; lists are values, not branches."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = list(value) if isinstance(value, tuple) else value
    return flat


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """The tree of dotted keys; a key that is both a value and a branch is refused."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key!r}: {part!r} is both a value and a branch")
        node[leaf] = value
    return tree
