"""A failed `kedro run` says what is wrong in one `Error:` line, once: an unknown run-environment
names those that exist, a `--params` value YAML cannot read, an unknown encoding and a file name
too long are each one line; the default log carries no library warnings, no repeated error, no
hint to resume, and `VERBOSE=1` brings them all back. Another input needs a dataset name of its
own, and then its outputs and MLflow run carry that name.

The runs start together (a module fixture) and fail at once or at ingest: seconds each. A
run holds its project's lock, so each run that gets that far has a project copy of its own.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from clue_pipeline.cli import (
    RunStopped,
    environments,
    refuse_unknown_environment,
    refuse_unnamed_input,
    shorten,
)
from clue_pipeline.config_loader import ProjectConfigLoader
from tests.conftest import REPO_ROOT
from tests.reliability.test_runs import (
    error_lines,
    finish_run,
    make_project,
    mlflow_template,  # noqa: F401 - the fixture, shared
    start_run,
)

pytestmark = pytest.mark.slow

LONG_NAME = "data/01_raw/" + "a" * 300 + ".csv"
EVENTS = "data/01_raw/ml-latest-small/ratings.csv"
GENERIC = (
    f"ingest.format=generic,ingest.path={EVENTS},"
    "ingest.generic.columns.user_id=userId,ingest.generic.columns.item_id=movieId"
)
# What the default log no longer shows: library warnings, the error repeated by Kedro's node
# log, Kedro's resume hint, kedro-mlflow closing the run, its default tracking URI.
NOISE = ("Warning", "failed with error", "have not run", "was closed", "converted to a valid uri")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mlflow_template) -> dict[str, dict]:  # noqa: F811
    # a project per run that gets as far as the run lock, which would refuse a second one
    project, encoding, verbose_project, long_name = (
        make_project(tmp_path_factory, name, mlflow_template)
        for name in ("errors", "encoding", "verbose", "long")
    )
    logs = tmp_path_factory.mktemp("logs")
    verbose = {"VERBOSE": "1", "KEDRO_LOGGING_CONFIG": "conf/logging_verbose.yml"}
    started = {
        "env": start_run(project, logs, "--env", "nope"),
        "yaml_tag": start_run(
            project, logs, "--pipelines=ingest", "--params=ingest.path=!!python/object:os.system"
        ),
        "encoding": start_run(
            encoding,
            logs,
            "--pipelines=ingest",
            f"--params=dataset_name=klingon,{GENERIC},ingest.generic.encoding=klingon",
        ),
        "encoding_verbose": start_run(
            verbose_project,
            logs,
            "--pipelines=ingest",
            f"--params=dataset_name=klingon,{GENERIC},ingest.generic.encoding=klingon",
            env=verbose,
        ),
        "long_name": start_run(
            long_name,
            logs,
            "--pipelines=ingest",
            f"--params=dataset_name=long,ingest.format=generic,ingest.path={LONG_NAME}",
        ),
        "unnamed": start_run(project, logs, "--pipelines=ingest", f"--params={GENERIC}"),
        "named": start_run(
            project, logs, "--pipelines=ingest", f"--params=dataset_name=mine,{GENERIC}"
        ),
    }
    results = {name: finish_run(*process) for name, process in started.items()}
    results["_project"] = project
    return results


def _one_error(result: dict) -> str:
    assert result["returncode"] != 0
    errors = error_lines(result["stderr"])
    assert len(errors) == 1, result["stderr"][-3000:]
    assert "Traceback" not in result["stderr"]
    for noise in NOISE:
        assert noise not in result["stderr"], f"{noise!r} in:\n{result['stderr'][-3000:]}"
    return errors[0]


def test_an_unknown_environment_names_those_that_exist(runs):
    error = _one_error(runs["env"])
    assert error == (
        "Error: run-environment 'nope' does not exist; available: base, beauty, lastfm, local, "
        "ml-100k, ml-1m, peterrec, scale, sports"
    )
    assert len(runs["env"]["stderr"].strip().splitlines()) == 1


def test_a_yaml_tag_in_params_is_one_line_and_not_executed(runs):
    error = _one_error(runs["yaml_tag"])
    assert error.startswith("Error: --params ingest.path=!!python/object:os.system: ")
    assert "could not determine a constructor" in error


def test_an_unknown_encoding_is_one_line(runs):
    error = _one_error(runs["encoding"])
    assert "ingest.generic.encoding" in error and "'klingon' is not a text encoding" in error


def test_a_file_name_too_long_is_one_short_line(runs):
    error = _one_error(runs["long_name"])
    assert "File name too long" in error and "characters)..." in error
    assert len(error) < 400


def test_verbose_shows_the_traceback_and_the_library_lines(runs):
    output = runs["encoding_verbose"]["stderr"]
    assert runs["encoding_verbose"]["returncode"] != 0
    assert "Traceback" in output and "DataError: parameter 'ingest.generic.encoding'" in output
    assert "py.warnings" in output and "failed with error" in output


def test_another_input_without_a_name_is_refused_before_anything_runs(runs):
    error = _one_error(runs["unnamed"])
    assert "ingest.format, ingest.path given without dataset_name" in error
    assert "--params dataset_name=my-data,ingest.format=..." in error


def test_a_named_input_writes_its_own_folders_and_names_its_mlflow_run(runs):
    result, project = runs["named"], runs["_project"]
    assert result["returncode"] == 0, result["stderr"][-3000:]
    for noise in NOISE:
        assert noise not in result["stderr"]
    assert (project / "data" / "02_intermediate" / "mine" / "interactions.parquet").is_file()
    assert not (project / "data" / "02_intermediate" / "ml-latest-small").exists()
    with sqlite3.connect(project / "mlflow.db") as db:
        names = {row[0] for row in db.execute("select name from runs where status = 'FINISHED'")}
    assert names == {"mine: ingest"}


def test_environments_are_the_folders_holding_configuration(tmp_path: Path):
    assert "recipes" not in environments(REPO_ROOT / "conf")
    (tmp_path / "base").mkdir()
    (tmp_path / "mine" / "parameters").mkdir(parents=True)
    (tmp_path / "mine" / "parameters" / "x.yml").write_text("a: 1\n")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.yml").write_text("a: 1\n")
    assert environments(tmp_path) == ["base", "mine"]
    with pytest.raises(RunStopped, match="'notes' does not exist; available: base, mine$"):
        refuse_unknown_environment("notes", str(tmp_path))
    refuse_unknown_environment("local", str(tmp_path))  # Kedro's default may be absent


@pytest.mark.parametrize("name", ["../elsewhere", "a/b", "", ".hidden", "x" * 101])
def test_a_dataset_name_must_be_a_folder_name(name: str):
    with pytest.raises(RunStopped, match="not a folder name"):
        refuse_unnamed_input({"dataset_name": name})


def test_only_a_changed_input_needs_a_name():
    refuse_unnamed_input({"ingest": {"duplicates": "error"}})
    refuse_unnamed_input({"dataset_name": "mine", "ingest": {"path": "x.csv"}})
    with pytest.raises(RunStopped, match="ingest.download given without dataset_name"):
        refuse_unnamed_input({"ingest": {"download": {"url": "https://x"}}})


def test_dataset_name_also_names_the_catalog_folders():
    conf = {"conf_source": str(REPO_ROOT / "conf"), "base_env": "base", "default_run_env": "local"}
    catalog = ProjectConfigLoader(**conf, runtime_params={"dataset_name": "mine"})["catalog"]
    assert catalog["interactions"]["filepath"] == "data/02_intermediate/mine/interactions.parquet"
    default = ProjectConfigLoader(**conf)["catalog"]
    assert "/ml-latest-small/" in default["interactions"]["filepath"]


def test_shorten_keeps_head_and_tail():
    assert shorten("abc") == "abc"
    cut = shorten("x" * 150 + "TAIL" + "y" * 1000, 200)
    assert len(cut) < 220 and cut.endswith("y" * 50) and "characters)" in cut
