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
from clue_pipeline.experiments.settings import settings_changes


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
