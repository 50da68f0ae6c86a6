"""The check that refuses a run whose inputs are not written yet, and what it tells the user."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.io import AbstractDataset, DataCatalog
from kedro.pipeline import Pipeline, node
from kedro_datasets.json import JSONDataset

from clue_pipeline.hooks import (
    MissingInputsError,
    MissingInputsHook,
    describe_missing,
    missing_inputs,
)


def _step(value):
    return value


class _Unknowable(AbstractDataset):
    """A dataset that cannot say whether it exists (no ``_exists``)."""

    def _load(self):
        return 1

    def _save(self, data) -> None:
        pass

    def _describe(self) -> dict:
        return {}


@pytest.fixture
def chain(tmp_path: Path):
    """raw -> (a) -> mid -> (b) -> out -> (c) -> report; only raw is on disk."""
    JSONDataset(filepath=str(tmp_path / "raw.json")).save({"x": 1})
    catalog = DataCatalog(
        {
            name: JSONDataset(filepath=str(tmp_path / f"{name}.json"))
            for name in ("raw", "mid", "out")
        }
        | {"opaque": _Unknowable()}
    )
    pipelines = {
        "a": Pipeline([node(_step, "raw", "mid", name="a")]),
        "b": Pipeline([node(_step, "mid", "out", name="b")]),
        "c": Pipeline([node(lambda out, opaque, p: out, ["out", "opaque", "params:p"], "report")]),
    }
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return catalog, pipelines, tmp_path


def test_only_unwritten_datasets_count(chain):
    catalog, pipelines, _ = chain
    assert missing_inputs(pipelines["a"], catalog) == []
    assert missing_inputs(pipelines["b"], catalog) == ["mid"]
    # parameters and a dataset that cannot tell are left to the run itself
    assert missing_inputs(pipelines["c"], catalog) == ["out"]
    assert missing_inputs(pipelines["__default__"], catalog) == []


def test_the_message_names_file_writer_and_a_command_that_writes_everything(chain):
    catalog, pipelines, tmp_path = chain
    message = describe_missing(["out"], catalog, pipelines, env="beauty")
    assert f"out ({tmp_path / 'out.json'}): written by pipeline b" in message
    # b itself needs mid, which a writes: the command runs both
    assert "`kedro run --env=beauty --pipelines=a,b`" in message
    orphan = describe_missing(["nowhere"], catalog, pipelines, env=None)
    assert "nowhere: no pipeline writes it" in orphan
    assert "--pipelines" not in orphan


def test_the_hook_raises_before_anything_runs(chain):
    catalog, pipelines, _ = chain
    MissingInputsHook().before_pipeline_run({"env": None}, pipelines["a"], catalog)
    with pytest.raises(MissingInputsError, match="1 input"):
        MissingInputsHook().before_pipeline_run({"env": None}, pipelines["b"], catalog)
