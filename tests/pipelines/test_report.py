"""`kedro run --pipelines=report` on a copy of the project: the `smoke` profile's two cells at a
tiny budget, report.md with real PNG figures, and a second run that recomputes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.image import imread

from tests.project import copy_project, kedro_run

pytestmark = pytest.mark.slow

SMOKE = "--params=report.profile=smoke"


def test_report_runs_cells_once_and_writes_pictures(tmp_path: Path):
    project = copy_project(tmp_path)
    first = kedro_run(project, "--pipelines=report", SMOKE)
    assert first.returncode == 0, first.stderr[-4000:]

    cells = sorted((project / "data" / "07_model_output" / "report_cells").rglob("*.json"))
    assert [c.relative_to(cells[0].parents[3]).parts[:3] for c in cells] == [
        ("ml-latest-small", "next_item", "clue"),
        ("ml-latest-small", "pretrain", "clue"),
    ]
    finetuned = json.loads(cells[0].read_text())
    assert finetuned["cell"]["overrides"]["finetune.train.epochs"] == 1
    # the settings the run resolved: the override over the environment's files
    assert finetuned["settings"]["finetune.train.epochs"] == 1
    assert finetuned["settings"]["dataset_name"] == "ml-latest-small"
    assert 0.0 <= finetuned["record"]["metrics"]["recall@10"] <= 1.0
    pretrained = json.loads(cells[1].read_text())["record"]
    assert len(pretrained["history"]) == 1 and "z_std" in pretrained["history"][0]
    assert len(pretrained["representation"]["pca"]["x"]) > 100

    reporting = project / "data" / "08_reporting"
    report = (reporting / "report.md").read_text()
    assert "## Missing cells (0 of 2)" in report
    assert "| CLUE | " in report
    pictures = sorted((reporting / "report").glob("*.png"))
    assert [p.name for p in pictures] == [
        "fig3_next_item.png",
        "fig6_collapse_ml-latest-small.png",
    ]
    for picture in pictures:
        assert f"](report/{picture.name})" in report
        pixels = imread(picture)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100 and pixels.std() > 0.01

    second = kedro_run(project, "--pipelines=report", SMOKE)
    assert second.returncode == 0, second.stderr[-4000:]
    log = json.loads((reporting / "report_run_log.json").read_text())
    assert log["ran"] == []
    assert [json.loads(c.read_text()) for c in cells][0] == finetuned
