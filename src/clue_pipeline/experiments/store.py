"""The on-disk cell store: one JSON per cell, written atomically, never recomputed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clue_pipeline.experiments.cells import Cell


@dataclass(frozen=True)
class CellStore:
    root: Path

    def path(self, cell: Cell) -> Path:
        return Path(self.root) / cell.relative_path

    def has(self, cell: Cell) -> bool:
        return self.path(cell).exists()

    def load(self, cell: Cell) -> dict[str, Any] | None:
        """The stored result, or None; a file that is not JSON names itself in the error."""
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
        """Write to a temporary name, then rename: a killed run never leaves half a cell."""
        path = self.path(cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(path)
        return path

    def missing(self, cells: list[Cell]) -> list[Cell]:
        return [cell for cell in cells if not self.has(cell)]
