"""The on-disk cell store: one JSON per cell, written atomically, never recomputed while the
settings it recorded still hold."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clue_pipeline.experiments.cells import Cell
from clue_pipeline.experiments.settings import concerns, settings_changes


@dataclass(frozen=True)
class CellStore:
    root: Path
    # today's settings of a cell (``runner.settings_resolver``); None = never check them
    settings: Callable[[Cell], dict[str, Any]] | None = None

    def path(self, cell: Cell) -> Path:
        return Path(self.root) / cell.relative_path

    def has(self, cell: Cell) -> bool:
        """Stored, and not stale."""
        return self.load(cell) is not None

    def load(self, cell: Cell) -> dict[str, Any] | None:
        """The stored result, or None when there is none or it is stale; a file that is not
        JSON names itself in the error."""
        record = self._read(cell)
        if record is None or self._changes(cell, record):
            return None
        return record

    def stale(self, cell: Cell) -> list[str]:
        """The settings that changed since the stored cell ran (``key: old -> new``); empty when
        none did, when nothing is stored or when the cell recorded no settings."""
        record = self._read(cell)
        return [] if record is None else self._changes(cell, record)

    def missing_label(self, cell: Cell) -> str:
        """The cell's label, with the changed settings when a stale copy is stored."""
        changes = self.stale(cell)
        return cell.label() + (f" (stale: {'; '.join(changes)})" if changes else "")

    def _changes(self, cell: Cell, record: dict[str, Any]) -> list[str]:
        if self.settings is None or "settings" not in record:
            return []
        return settings_changes(record["settings"], self.settings(cell))

    def _read(self, cell: Cell) -> dict[str, Any] | None:
        path = self.path(cell)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path} line {error.lineno} column {error.colno}: not valid JSON ({error.msg}); "
                "delete it to recompute the cell"
            ) from error

    def save(self, cell: Cell, result: dict[str, Any]) -> Path:
        """Write to a temporary name, then rename: a killed run never leaves half a cell. A cell
        already stored (a stale one being recomputed) is first moved to
        ``<root>/../superseded/<UTC time>/``, never overwritten."""
        path = self.path(cell)
        if path.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            old = Path(self.root).parent / "superseded" / stamp / cell.relative_path
            old.parent.mkdir(parents=True, exist_ok=True)
            path.replace(old)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(path)
        return path

    def missing(self, cells: list[Cell]) -> list[Cell]:
        return [cell for cell in cells if not self.has(cell)]


def relabel_for_new_default(root: Path, key: str, old: Any, new: Any) -> list[tuple[Path, Path]]:
    """Rename the stored cells that a default's change from ``old`` to ``new`` touches, so that
    every cell stays filed under the settings it ran with.

    A cell is keyed by its overrides, not by the defaults, so without this a cell run on the old
    default would pass for the new one (cells stored before settings were recorded cannot tell).
    A cell that ``key`` shapes and that ran on the old default gains the override ``key: old``;
    one whose override was ``key: new`` loses it, since that is now the default. Each moved
    record gets its new ``cell`` and a ``relabelled`` note; a cell whose new name is taken
    already is moved to ``superseded/`` instead. Returns the (from, to) moves.
    """
    if old == new:
        raise ValueError(f"relabel {key}: the old and the new default are both {old!r}")
    root = Path(root)
    planned = []
    for path in sorted(root.rglob("*.json")):
        record = json.loads(path.read_text())
        cell = Cell.create(**record["cell"])
        overrides = cell.override_dict
        if not concerns(cell, key) or overrides.get(key, new) != new:
            continue  # untouched by the key, or run with an explicit value that still holds
        if key in overrides:
            del overrides[key]
        else:
            overrides[key] = old
        moved = Cell.create(**{**record["cell"], "overrides": overrides})
        record["cell"] = moved.as_dict()
        record.setdefault("relabelled", []).append(
            {"from": str(cell.relative_path), "default": f"{key}: {old!r} -> {new!r}"}
        )
        planned.append((path, moved, record))
    for path, _, _ in planned:  # all read first: a cell may move to where another one was
        path.unlink()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moves = []
    for path, moved, record in planned:
        target = root / moved.relative_path
        if target.exists():  # an explicit cell of the same settings ran already
            target = root.parent / "superseded" / stamp / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, indent=2, default=str))
        moves.append((path, target))
    return moves
