"""The cell store (atomic, never recomputed) and the verdict rule."""

from __future__ import annotations

import json

import pytest

from clue_pipeline.experiments.cells import Cell
from clue_pipeline.experiments.store import CellStore, relabel_for_new_default
from clue_pipeline.experiments.verdicts import (
    DOES_NOT_HOLD,
    HOLDS,
    NOT_MEASURED,
    NOT_TESTABLE,
    collapses,
    compare,
    pooled_std,
    reaches_minimum_sooner,
    spread,
)


def test_store_saves_atomically_and_lists_missing_cells(tmp_path):
    store = CellStore(tmp_path)
    done = Cell.create("d", "next_item", "clue", 0)
    todo = Cell.create("d", "next_item", "clue", 1)
    path = store.save(done, {"cell": done.as_dict(), "wall_s": 1.0, "record": {"x": 1}})
    assert path == tmp_path / "d/next_item/clue/seed0_users100.json"
    assert not list(tmp_path.rglob("*.tmp"))
    assert store.load(done)["record"] == {"x": 1}
    assert store.load(todo) is None
    assert store.missing([done, todo]) == [todo]


def test_a_broken_cell_file_names_its_place(tmp_path):
    store = CellStore(tmp_path)
    cell = Cell.create("d", "next_item", "clue", 0)
    store.path(cell).parent.mkdir(parents=True)
    store.path(cell).write_text('{"cell": 1,\n  oops}')
    with pytest.raises(ValueError, match=r"seed0_users100.json line 2 column 3"):
        store.load(cell)


def test_a_cell_whose_recorded_settings_changed_is_stale_and_kept_when_recomputed(tmp_path):
    today = {"encoder.heads": 1, "encoder.norm": "post", "encoder.new_option": 0}
    store = CellStore(tmp_path / "cells", settings=lambda cell: today)
    cell, unrecorded = (Cell.create("d", "next_item", "clue", seed) for seed in (0, 1))
    recorded = {"encoder.heads": 2, "encoder.norm": "post", "encoder.removed_option": 3}
    store.save(cell, {"record": {"x": 1}, "settings": recorded})
    store.save(unrecorded, {"record": {"x": 2}})
    assert store.stale(cell) == ["encoder.heads: 2 -> 1"]
    assert store.load(cell) is None and not store.has(cell)
    assert store.missing([cell, unrecorded]) == [cell]  # cells without settings cannot be checked
    assert "stale: encoder.heads: 2 -> 1" in store.missing_label(cell)
    store.save(cell, {"record": {"x": 3}, "settings": today})
    assert store.load(cell)["record"] == {"x": 3}
    (old,) = (tmp_path / "superseded").rglob("*.json")
    assert old.relative_to(tmp_path / "superseded").parts[1:] == cell.relative_path.parts
    assert json.loads(old.read_text())["settings"] == recorded


def test_resolved_settings_merge_the_environment_and_the_cell():
    from clue_pipeline.experiments.settings import cell_sections, cell_settings, resolved_settings
    from tests.conftest import REPO_ROOT

    settings = resolved_settings(REPO_ROOT, "beauty", {"encoder": {"heads": 1}})
    assert settings["encoder.heads"] == 1  # the cell's override
    assert settings["encoder.norm"] == "post"  # conf/beauty over conf/base
    assert settings["dataset_name"] == "beauty"
    assert not any(key.startswith(("report.", "tune.")) for key in settings)
    assert "finetune.train.device" not in settings  # where it runs, not what it computes
    zero = Cell.create("beauty", "next_item", "clue_zero", 0)
    own = cell_settings(zero, REPO_ROOT, "beauty", {})
    assert not any(key.startswith("pretrain.") for key in own)  # a new objective leaves it be
    assert own["finetune.methods.clue_zero.backbone"] == "transformer"
    assert not any(key.startswith("finetune.methods.gru") for key in own)
    assert "pretrain" in cell_sections(Cell.create("beauty", "next_item", "clue", 0))
    mip = cell_settings(Cell.create("beauty", "next_item", "mip", 0), REPO_ROOT, "beauty", {})
    assert "pretrain.masked_item.mask_ratio" in mip and "pretrain.train.epochs" in mip
    # CLUE's objective, heads and views do not shape a masked-item cell
    assert not any(key.startswith(("pretrain.objective.", "augment.")) for key in mip)
    clue = cell_settings(Cell.create("beauty", "pretrain", "clue", 0), REPO_ROOT, "beauty", {})
    assert "pretrain.objective.name" in clue and "augment.views.strategies" in clue
    assert not any(key.startswith("pretrain.s3rec.") for key in clue)
    # the one mask ratio: also CLUE's masked-item term's
    assert "pretrain.masked_item.mask_ratio" in clue


def test_cell_parameters_merge_as_omegaconf_merges_them():
    from omegaconf import OmegaConf

    from clue_pipeline.experiments.recipes import merge
    from clue_pipeline.experiments.settings import _environment_parameters
    from tests.conftest import REPO_ROOT

    base = json.loads(_environment_parameters(str(REPO_ROOT / "conf"), "ml-1m"))
    override = {
        "encoder": {"hidden": 128, "max_len": None},
        "finetune": {"classifier": {"probe_c_grid": [0.001, 3.0]}, "train": {"epochs": 1}},
        "augment": {"views": {"strategies": ["crop"]}},
        "sequences": {"profiling": {"tasks": {"age": {"bins": None}}}},
        "new_section": {"a": {"b": 1}},
    }
    expected = OmegaConf.to_container(OmegaConf.unsafe_merge(base, override), resolve=True)
    assert merge(base, override) == expected
    assert base["encoder"]["hidden"] != 128  # the environment's copy is left as it was


def test_a_changed_default_files_every_cell_under_the_settings_it_ran_with(tmp_path):
    key = "pretrain.objective.next_item_weight"
    store = CellStore(tmp_path / "cells")

    def stored(method, seed, overrides=None, task="next_item"):
        cell = Cell.create("d", task, method, seed, overrides=overrides)
        store.save(cell, {"cell": cell.as_dict(), "record": {"seed": seed}})
        return cell

    stored("clue", 0)  # ran on the old default
    stored("clue", 1, {key: 1.0})  # ran with the new default as an override
    stored("clue", 2, {key: 0.5})  # an explicit third value stays as it is
    stored("clue_zero", 0)  # not pre-trained: the key does not shape it
    stored("mip", 0)  # pre-trained, but CLUE's objective is not its own
    stored("clue", 3)  # ran on the old default, and so did an explicit twin
    stored("clue", 3, {key: 0.0})
    moves = relabel_for_new_default(store.root, key, 0.0, 1.0)
    assert len(moves) == 3

    def seeds(overrides=None, method="clue"):
        return {
            seed
            for seed in range(4)
            if store.load(Cell.create("d", "next_item", method, seed, overrides=overrides))
        }

    assert seeds() == {1}
    assert seeds({key: 0.0}) == {0, 3}
    assert seeds({key: 0.5}) == {2}
    assert seeds(method="clue_zero") == seeds(method="mip") == {0}
    moved = store.load(Cell.create("d", "next_item", "clue", 0, overrides={key: 0.0}))
    assert moved["cell"]["overrides"] == {key: 0.0} and moved["record"] == {"seed": 0}
    assert moved["relabelled"] == [
        {"from": "d/next_item/clue/seed0_users100.json", "default": f"{key}: 0.0 -> 1.0"}
    ]
    (twin,) = (tmp_path / "superseded").rglob("*.json")  # the explicit twin is kept instead
    assert twin.name == "seed3_users100.json"
    with pytest.raises(ValueError, match="both 1.0"):
        relabel_for_new_default(store.root, key, 1.0, 1.0)


def test_pooled_std_weights_groups_by_degrees_of_freedom():
    assert pooled_std([[1.0], [2.0]]) is None
    assert pooled_std([[1.0, 3.0], [5.0]]) == pytest.approx(2**0.5)
    assert pooled_std([[1.0, 3.0], [0.0, 0.0, 0.0]]) == pytest.approx((2 / 3) ** 0.5)


def test_beats_holds_only_beyond_k_pooled_std():
    clearly = compare([0.30, 0.31, 0.32], [0.20, 0.21, 0.22], k=2.0)
    assert clearly.verdict == HOLDS
    noisy = compare([0.30, 0.20, 0.40], [0.28, 0.18, 0.38], k=2.0)
    assert noisy.verdict == DOES_NOT_HOLD and "inside noise" in noisy.detail
    opposite = compare([0.20, 0.21, 0.22], [0.30, 0.31, 0.32], k=2.0)
    assert opposite.verdict == DOES_NOT_HOLD and "opposite" in opposite.detail


def test_one_seed_uses_the_fallback_noise_or_says_there_is_none():
    assert compare([0.30], [0.29], k=2.0, fallback_noise=0.01).verdict == DOES_NOT_HOLD
    assert compare([0.30], [0.20], k=2.0, fallback_noise=0.01).verdict == HOLDS
    bare = compare([0.30], [0.29], k=2.0)
    assert bare.verdict == HOLDS and "no noise estimate" in bare.detail


def test_missing_cells_and_lower_is_better():
    assert compare([0.3], [0.2], k=2.0, missing=2).text() == f"{NOT_MEASURED} (2 cells missing)"
    assert compare([], [0.2], k=2.0).verdict == NOT_TESTABLE
    lower = compare([-3.0, -3.1], [-2.0, -2.1], k=2.0, higher_is_better=False)
    assert lower.verdict == HOLDS


def test_matches_holds_unless_worse_beyond_noise():
    assert compare([0.29, 0.30], [0.30, 0.31], k=2.0, kind="matches").verdict == HOLDS
    assert compare([0.10, 0.11], [0.30, 0.31], k=2.0, kind="matches").verdict == DOES_NOT_HOLD


def test_spread_and_collapse_rules():
    assert spread([0.1, 0.2, 0.3], k=2.0, noise=0.01).verdict == HOLDS
    assert spread([0.1, 0.11], k=2.0, noise=0.01).verdict == DOES_NOT_HOLD
    assert spread([0.1, 0.2], k=2.0, noise=None).verdict == NOT_TESTABLE
    assert collapses(0.001, 0.1, std_ratio=0.25).verdict == HOLDS
    assert collapses(0.097, 0.1, std_ratio=0.25).verdict == DOES_NOT_HOLD
    sooner = reaches_minimum_sooner([-0.5, -0.97, -0.99], [-0.5, -0.8, -0.96], loss_below=-0.95)
    assert sooner.verdict == HOLDS and "first at epoch 1 vs 2" in sooner.detail
    later = reaches_minimum_sooner([-0.5, -0.8, -0.9], [-0.5, -0.96, -0.97], loss_below=-0.95)
    assert later.verdict == DOES_NOT_HOLD and "epoch never vs 1" in later.detail


def test_constant_predictions_borrow_the_task_noise():
    # both sides have a std of 0 (e.g. always the majority class): 0 is no noise estimate
    flat = compare([0.21, 0.21, 0.21], [0.23], k=2.0, fallback_noise=0.012)
    assert flat.verdict == DOES_NOT_HOLD and "inside noise" in flat.detail
    assert "task's multi-seed groups" in flat.detail
