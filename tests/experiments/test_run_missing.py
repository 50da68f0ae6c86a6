"""The one run-the-missing-cells loop: what it skips, what it prepares, what it tells the study."""

from __future__ import annotations

from pathlib import Path

from clue_pipeline.experiments import runner
from clue_pipeline.experiments.cells import Cell
from clue_pipeline.experiments.store import CellStore


def test_cells_of_another_store_count_and_each_new_cell_is_reported(tmp_path, monkeypatch):
    prepared, ran = [], []
    monkeypatch.setattr(runner, "prepare", lambda dataset, config: prepared.append(dataset))

    def run_cell(cell, config):
        if cell.seed == 2:
            raise RuntimeError("kedro run failed")
        ran.append(cell)
        return {"cell": cell.as_dict(), "wall_s": 1.0, "record": {}}

    monkeypatch.setattr(runner, "run_cell", run_cell)
    store, other = CellStore(tmp_path / "mine"), CellStore(tmp_path / "other")
    cells = [Cell.create("a", "next_item", "clue", seed) for seed in range(4)]
    cells.append(Cell.create("b", "next_item", "clue", 0))
    other.save(cells[0], {"cell": cells[0].as_dict(), "wall_s": 1.0, "record": {}})
    saved: list[Path] = []
    config = runner.RunnerConfig(project_dir=tmp_path, envs={"a": "a", "b": "b"})
    log = runner.run_missing(
        cells, store, config, 3, also=[other], prepared={"b"}, on_saved=lambda c, p: saved.append(p)
    )
    assert ran == [cells[1], cells[3]] and prepared == ["a"]  # cell 0: the other store; b: prepared
    assert [("failed" in entry) for entry in log] == [False, True, False]  # the sitting goes on
    assert saved == [store.path(cells[1]), store.path(cells[3])]
    assert store.missing(cells) == [cells[0], cells[2], cells[4]]  # max_new 3 reached
