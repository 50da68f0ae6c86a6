"""The transfer protocol's grid, tests and stored-cell summary."""

from __future__ import annotations

import json

import pytest

from benchmarks import transfer
from clue_pipeline.experiments.settings import resolved_settings
from clue_pipeline.experiments.store import CellStore


def test_grid_is_every_dataset_share_method_and_seed_with_small_shares_kept_whole():
    cells = transfer.grid(list(transfer.TASKS))
    assert len(cells) == 3 * 4 * 3 * 3
    assert {(c.dataset, c.task) for c in cells} == set(transfer.TASKS.items())
    for cell in cells:
        overrides = cell.override_dict
        assert (overrides == {}) == (cell.fraction == 1.0), cell.label()
        if cell.fraction < 1.0:
            assert overrides["finetune.train.drop_last"] is False
            # the full-data budget and patience, counted in steps
            train = resolved_settings(transfer.REPO, cell.dataset, {}, ("finetune",))
            epochs = overrides["finetune.train.epochs"]
            assert epochs * cell.fraction == pytest.approx(train["finetune.train.epochs"], abs=1)
            wait = overrides["finetune.train.min_epochs"]
            patience = train["finetune.train.patience"]
            assert wait * cell.fraction == pytest.approx(patience, abs=1) and wait <= epochs
    objective = {"pretrain.objective.name": "infonce"}
    mixed = transfer.grid(["ml-100k"], (1.0,), (0,), clue_only=objective)
    assert {c.method: c.override_dict for c in mixed} == {
        "clue": objective,
        "clue_zero": {},
        "mip": {},
    }
    chosen = transfer.grid(["beauty"], (0.1,), (0, 1), methods=("clue", "clue_zero"))
    assert sorted((c.method, c.seed) for c in chosen) == [
        ("clue", 0),
        ("clue", 1),
        ("clue_zero", 0),
        ("clue_zero", 1),
    ]


def test_summary_reads_stored_cells_compares_and_lists_the_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "RESULTS", tmp_path)
    monkeypatch.setattr(transfer, "QUALITY_STORE", CellStore(tmp_path / "quality"))
    monkeypatch.setattr("benchmarks.common.RESULTS", tmp_path)
    store = CellStore(tmp_path / "cells")
    cells = transfer.grid(["ml-100k"], (0.1,), (0, 1, 2))
    gains = {"clue": 0.10, "clue_zero": 0.05, "mip": 0.098}
    for cell in cells:
        if cell.method == "mip" and cell.seed == 2:
            continue  # left missing on purpose
        # CLUE's gain over the others grows a little with the seed: noise between pairs
        value = gains[cell.method] + 0.001 * cell.seed
        value += 0.0005 * cell.seed**2 if cell.method == "clue" else 0.0
        record = {"task": "coldstart", "metrics": {"mrr@10": value, "recall@10": 2 * value}}
        store.save(cell, {"cell": cell.as_dict(), "wall_s": 1.0, "record": record})
    payload = transfer.summarise(cells, store, "transfer_test")
    tests = {(c["against"], c["metric"]): c for c in payload["comparisons"]}
    assert tests[("clue_zero", "mrr@10")]["verdict"] == "better"
    assert tests[("clue_zero", "mrr@10")]["test"] == "paired t"
    assert tests[("clue_zero", "mrr@10")]["seeds"] == [0, 1, 2]
    # 4 comparisons, Holm multiplies the smallest p by 4
    smallest = min(c["p"] for c in tests.values())
    assert min(c["p_holm"] for c in tests.values()) == pytest.approx(4 * smallest)
    mip = tests[("mip", "mrr@10")]  # paired on the two seeds both have
    assert mip["seeds"] == [0, 1] and mip["verdict_holm"] in ("level", "not shown")
    assert [m["method"] for m in payload["missing"]] == ["mip"]
    written = json.loads((tmp_path / "transfer_test.json").read_text())
    assert written["cells_total"] == 9
    text = (tmp_path / "transfer_test.md").read_text()
    assert "| ml-100k | coldstart | 10% | mrr@10 | clue_zero | 0, 1, 2 |" in text
    assert "paired t-test" in text and "Holm" in text
    assert "## Missing cells (1 of 9)" in text


def test_profiling_values_are_per_attribute_accuracies():
    record = {
        "record": {
            "metrics": {
                "gender": {"accuracy": 0.7, "macro_f1": 0.6},
                "age": {"accuracy": 0.4, "macro_f1": 0.3},
            }
        }
    }
    assert transfer.values(record, "profiling") == {"gender/accuracy": 0.7, "age/accuracy": 0.4}
    assert transfer.values({"record": {"skipped": "no users"}}, "profiling") == {}
