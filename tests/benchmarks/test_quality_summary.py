"""The grid summary: Kedro cells first, GPU runs of the same cells where a cell is missing,
each counted and marked, and only what neither measured listed as missing."""

from __future__ import annotations

import json

from benchmarks import quality
from benchmarks.gpu_quality import settings_of
from clue_pipeline.experiments.cells import Cell
from clue_pipeline.experiments.store import CellStore


def _metrics(ndcg: float) -> dict:
    return {"recall@10": 2 * ndcg, "ndcg@10": ndcg, "mrr@10": ndcg / 2}


def _summarise_beauty(store: CellStore, results, monkeypatch) -> dict:
    """The Beauty grid's summary over ``store``, captured instead of written."""
    written: dict = {}
    monkeypatch.setattr(quality, "STORE", store)
    monkeypatch.setattr(quality, "RESULTS", results)
    monkeypatch.setattr(
        quality, "write_results", lambda name, data, text: written.update(data=data, text=text)
    )
    quality.summarise(quality.grid(["beauty"]))
    return written


def test_gpu_runs_fill_missing_cells_and_say_so(tmp_path, monkeypatch):
    store = CellStore(tmp_path / "cells")
    cell = Cell.create("beauty", "next_item", "clue", 0)
    record = {"task": "next_item", "metrics": _metrics(0.04)}
    store.save(cell, {"cell": cell.as_dict(), "wall_s": 100.0, "record": record})
    gpu = tmp_path / "gpu_quality"
    gpu.mkdir()
    runs = [
        {"dataset": "beauty", "method": "clue", "seed": seed, "status": status, "best": best}
        for seed, status, best in (
            (0, "done", {"test": _metrics(0.5)}),  # the Kedro cell wins
            (1, "done", {"test": _metrics(0.05)}),
            (2, "capped by --budget-s", {"test": _metrics(0.06)}),
        )
    ] + [{"dataset": "beauty", "method": "gru", "seed": 0, "status": "running", "best": None}]
    settings = {"beauty": settings_of("beauty")}
    (gpu / "beauty.json").write_text(json.dumps({"settings": settings, "runs": runs}))
    written = _summarise_beauty(store, tmp_path, monkeypatch)

    (row,) = [r for r in written["data"]["rows"] if r["method"] == "clue"]
    assert (row["seeds"], row["on_gpu"], row["capped"], row["wall_s"]) == (3, 2, 1, 100.0)
    assert abs(row["ndcg@10"] - 0.05) < 1e-12
    assert "| beauty | clue | 100 % | 3 (2 on GPU, 1 capped) |" in written["text"]
    missing = {(c["method"], c["seed"]) for c in written["data"]["missing"]}
    assert ("clue", 1) not in missing and ("gru", 0) in missing  # no best epoch yet: missing


def test_rows_name_their_protocol_and_carry_the_excluded_ranking(tmp_path, monkeypatch):
    store = CellStore(tmp_path / "cells")
    for seed, (kept, excluded) in enumerate(((0.04, 0.05), (0.02, 0.03), (0.03, 0.04))):
        cell = Cell.create("beauty", "next_item", "clue", seed)
        record = {
            "task": "next_item",
            "metrics": _metrics(kept),
            "protocols": {"history_kept": _metrics(kept), "history_excluded": _metrics(excluded)},
        }
        store.save(cell, {"cell": cell.as_dict(), "wall_s": 10.0, "record": record})
    written = _summarise_beauty(store, tmp_path, monkeypatch)

    (row,) = [r for r in written["data"]["rows"] if r["method"] == "clue"]
    assert row["history_excluded"] is False
    assert abs(row["ndcg@10"] - 0.03) < 1e-12 and abs(row["excl. ndcg@10"] - 0.04) < 1e-12
    assert "excl. ndcg@10" in written["text"] and "history_excluded" not in written["text"][-500:]


def test_gpu_runs_of_an_earlier_recipe_do_not_count(tmp_path, monkeypatch):
    gpu = tmp_path / "gpu_quality"
    gpu.mkdir()
    earlier = {"beauty": {**settings_of("beauty"), "encoder.norm": "pre"}}
    run = {"dataset": "beauty", "method": "clue", "seed": 0, "status": "done"}
    run["best"] = {"test": _metrics(0.05)}
    (gpu / "beauty.json").write_text(json.dumps({"settings": earlier, "runs": [run]}))
    written = _summarise_beauty(CellStore(tmp_path / "cells"), tmp_path, monkeypatch)
    assert not [r for r in written["data"]["rows"] if r["method"] == "clue"]
    assert ("clue", 0) in {(c["method"], c["seed"]) for c in written["data"]["missing"]}


def test_seeds_scored_before_and_after_both_protocols_average_what_they_share(
    tmp_path, monkeypatch
):
    store = CellStore(tmp_path / "cells")
    for seed, protocols in enumerate((True, False)):
        cell = Cell.create("beauty", "next_item", "clue", seed)
        record = {"task": "next_item", "metrics": _metrics(0.04)}
        if protocols:
            record["protocols"] = {"history_excluded": _metrics(0.05)}
        store.save(cell, {"cell": cell.as_dict(), "wall_s": 10.0, "record": record})
    written = _summarise_beauty(store, tmp_path, monkeypatch)
    (row,) = [r for r in written["data"]["rows"] if r["method"] == "clue"]
    assert row["seeds"] == 2 and abs(row["ndcg@10"] - 0.04) < 1e-12
    assert "excl. ndcg@10" not in row


def test_clue_and_clue_zero_are_compared_seed_by_seed_with_holm(tmp_path, monkeypatch):
    store = CellStore(tmp_path / "cells")
    for seed in (0, 1, 2):
        for method, ndcg in (("clue", 0.05 + 0.002 * seed**2), ("clue_zero", 0.04 + 0.001 * seed)):
            cell = Cell.create("beauty", "next_item", method, seed)
            record = {"task": "next_item", "metrics": _metrics(ndcg)}
            store.save(cell, {"cell": cell.as_dict(), "wall_s": 1.0, "record": record})
    written = _summarise_beauty(store, tmp_path, monkeypatch)
    (test,) = written["data"]["comparisons"]
    assert (test["method"], test["against"], test["metric"]) == ("clue", "clue_zero", "ndcg@10")
    assert test["test"] == "paired t" and test["seeds"] == [0, 1, 2]
    assert test["p_holm"] == test["p"] and test["verdict_holm"] in ("better", "not shown")
    assert "paired t-test" in written["text"] and "Holm" in written["text"]
