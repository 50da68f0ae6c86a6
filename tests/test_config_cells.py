"""Stored grid cells stay valid across renamed parameters: a cell recorded its settings under
the names of its day, and the store reads them through ``config.renames``."""

from __future__ import annotations

import json

from clue_pipeline.config import RENAMED_KEYS, renamed
from clue_pipeline.experiments.cells import Cell, kedro_params
from clue_pipeline.experiments.runner import settings_resolver
from clue_pipeline.experiments.settings import settings_changes
from clue_pipeline.experiments.store import CellStore
from tests.conftest import REPO_ROOT

ENVS = {name: name for name in ("beauty", "sports", "ml-100k", "ml-1m", "lastfm", "peterrec")}


def test_every_stored_cell_with_recorded_settings_is_still_valid():
    """Every one of them was valid before the settings were typed and renamed (117 cells)."""
    resolver = settings_resolver(REPO_ROOT, ENVS)
    checked, stale = 0, {}
    for path in sorted((REPO_ROOT / "benchmarks" / "results").rglob("cells/**/*.json")):
        record = json.loads(path.read_text())
        if "settings" not in record or "cell" not in record:
            continue
        root = str(path)[: str(path).index("/cells/") + len("/cells")]
        cell = Cell.create(**record["cell"])
        changes = CellStore(root, resolver).stale(cell)
        checked += 1
        if changes:
            stale[str(path.relative_to(REPO_ROOT))] = changes
    assert checked >= 100 and stale == {}


def test_a_recorded_old_key_compares_under_its_new_name():
    recorded = {"finetune.next_item_rows": "user", "pretrain.objective.masked_item_ratio": 0.2}
    current = {"finetune.next_item.rows": "prefix", "pretrain.masked_item.mask_ratio": 0.2}
    assert settings_changes(recorded, current) == ['finetune.next_item.rows: "user" -> "prefix"']


def test_a_cell_overriding_an_old_key_runs_with_the_new_one():
    cell = Cell.create(
        "beauty", "next_item", "clue_zero", 0, overrides={"finetune.next_item_rows": "prefix"}
    )
    assert kedro_params(cell)["finetune"]["next_item"] == {"rows": "prefix"}
    assert "next_item_rows" not in kedro_params(cell)["finetune"]


def test_renames_point_at_todays_keys():
    assert set(RENAMED_KEYS).isdisjoint(RENAMED_KEYS.values())
    assert renamed({"sequences.max_len": 50}) == {"encoder.max_len": 50}
