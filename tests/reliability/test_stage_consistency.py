"""A stage never reads another stage's outputs built from data that has changed since.

Each saved file records what it was built from (``lineage``); a stage-only run after an ingest
of new data, with the sequences of the old data still on disk, stops with one `Error:` line
naming the stage to run again, and goes through once that stage has run. Ingesting the same
data again changes nothing.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from clue_pipeline import lineage
from tests.project import copy_project, kedro_run
from tests.reliability.test_runs import error_lines

RAW = Path("data") / "01_raw" / "twin"


@pytest.mark.slow
def test_a_stage_only_run_refuses_outputs_built_from_older_data(tmp_path: Path, monkeypatch):
    project = copy_project(tmp_path)
    (project / "conf" / "twin").mkdir()
    (project / "conf" / "twin" / "globals.yml").write_text("dataset: twin\n")
    shutil.copytree(project / "data" / "01_raw" / "ml-latest-small", project / RAW)

    def run(*args: str) -> str:
        result = kedro_run(project, "--env=twin", *args)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stderr

    run("--pipelines=ingest,sequences")
    sidecar = json.loads((project / "data" / "03_primary" / "twin" / lineage.SIDECAR).read_text())
    assert sidecar["sequences.parquet"]["stage"] == "sequences"
    assert "data/02_intermediate/twin/interactions.parquet" in json.dumps(sidecar)

    run("--pipelines=ingest")  # the same data again: the same bytes, nothing stale
    monkeypatch.chdir(project)  # the records name files from the project's root
    assert _stale_stages(Path("data/03_primary/twin")) == set()

    ratings = project / RAW / "ratings.csv"
    ratings.write_text("".join(ratings.read_text().splitlines(keepends=True)[:90_000]))
    run("--pipelines=ingest")  # new interactions; sequences still of the old ones
    assert _stale_stages(Path("data/03_primary/twin")) == {"sequences"}

    runs_before = _mlflow_runs(project)
    refused = kedro_run(project, "--env=twin", "--pipelines=augment")
    assert refused.returncode != 0
    assert error_lines(refused.stderr) == [
        "Error: stage(s) sequences must run again before this run reads their outputs: "
        "data/03_primary/twin/filtered_interactions.parquet (stage sequences) was built from "
        "another data/02_intermediate/twin/interactions.parquet. Run `kedro run --env=twin "
        "--pipelines=sequences` (or the whole chain) first. "
        "(VERBOSE=1 or --verbose shows the traceback)"
    ]
    assert "Traceback" not in refused.stderr
    assert _mlflow_runs(project) == runs_before  # refused before MLflow opened a run

    run("--pipelines=sequences")
    run("--pipelines=augment")


def _stale_stages(folder: Path) -> set[str]:
    return lineage.stale(sorted(folder.glob("*.parquet"))).stages


def _mlflow_runs(project: Path) -> int:
    with sqlite3.connect(project / "mlflow.db") as db:
        return db.execute("select count(*) from runs").fetchone()[0]


def _write(path: Path, text: str, stage: str, sources: dict[str, str | None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    lineage.record(path, stage, f"{stage}.node", sources)


def test_staleness_follows_sources_back_and_names_every_stage_between(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw, mid, out = Path("a/raw.txt"), Path("b/mid.txt"), Path("c/out.txt")
    _write(raw, "1", "ingest", {})
    _write(mid, "2", "sequences", {"a/raw.txt": lineage.content_hash(raw)})
    _write(out, "3", "pretrain", {"b/mid.txt": lineage.content_hash(mid)})
    assert lineage.stale([out]).causes == []

    _write(raw, "1", "ingest", {})  # rewritten, same content
    assert lineage.stale([out]).causes == []

    _write(raw, "changed", "ingest", {})
    found = lineage.stale([out])
    assert found.stages == {"sequences", "pretrain"}
    assert found.causes == ["b/mid.txt (stage sequences) was built from another a/raw.txt"]

    mid.write_text("half-written")  # changed after its stage recorded it
    assert "b/mid.txt changed after stage sequences wrote it" in lineage.stale([mid]).causes


def test_files_without_a_record_are_taken_as_they_are(tmp_path: Path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert lineage.stale([plain, tmp_path / "missing.txt"]).causes == []


def test_a_versioned_dataset_reads_its_latest_version(tmp_path: Path):
    key = tmp_path / "model.pt"
    for version in ("2026-01-01T00.00.00.000Z", "2026-02-01T00.00.00.000Z"):
        (key / version).mkdir(parents=True)
        (key / version / "model.pt").write_text(version)
    assert lineage.current_file(key) == key / "2026-02-01T00.00.00.000Z" / "model.pt"
    before = lineage.content_hash(key)
    (key / "2026-03-01T00.00.00.000Z").mkdir()
    (key / "2026-03-01T00.00.00.000Z" / "model.pt").write_text("2026-02-01T00.00.00.000Z")
    assert lineage.content_hash(key) == before  # another version, the same bytes
