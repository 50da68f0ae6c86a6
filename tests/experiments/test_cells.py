"""Cell identity: stable names, the quality grid's paths, the nodes and parameters of a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from clue_pipeline.experiments.cells import (
    VIEW_POLICY_NODE,
    Cell,
    flatten,
    kedro_nodes,
    kedro_params,
    nest,
    uses_views,
)


def test_a_cell_without_overrides_has_the_quality_grid_path_and_record():
    cell = Cell.create("ml-100k", "coldstart", "clue", 0, 0.6)
    assert cell.relative_path == Path("ml-100k/coldstart/clue/seed0_users60.json")
    assert cell.as_dict() == {
        "dataset": "ml-100k",
        "task": "coldstart",
        "method": "clue",
        "seed": 0,
        "fraction": 0.6,
    }


def test_overrides_name_the_cell_by_a_stable_hash_whatever_their_order_or_nesting():
    nested = Cell.create(
        "ml-100k", "next_item", "clue", 1, overrides={"encoder": {"dropout": 0.1}, "a.b": [1, 2]}
    )
    dotted = Cell.create(
        "ml-100k", "next_item", "clue", 1, overrides={"a.b": (1, 2), "encoder.dropout": 0.1}
    )
    assert nested == dotted
    assert len(nested.override_hash) == 8
    other = Cell.create("ml-100k", "next_item", "clue", 1, overrides={"encoder.dropout": 0.3})
    assert other.override_hash != nested.override_hash
    assert nested.relative_path.name == f"seed1_users100_{nested.override_hash}.json"
    assert nested.as_dict()["overrides"] == {"a.b": [1, 2], "encoder.dropout": 0.1}


def test_the_hash_is_the_same_in_every_process():
    cell = Cell.create("d", "next_item", "clue", 0, overrides={"encoder.dropout": 0.1})
    # sha256('{"encoder.dropout": 0.1}')[:8], fixed so that a renamed store is noticed
    assert cell.override_hash == "9ccc40b0"


def test_nodes_of_a_cell_include_the_pretraining_it_starts_from():
    probe = Cell.create("d", "coldstart", "clue_probe", 0)
    assert kedro_nodes(probe) == [
        VIEW_POLICY_NODE,
        "learn.pretrain.coldstart.pretrain_clue",
        "learn.finetune.coldstart.finetune_coldstart_clue_probe",
        "learn.evaluate.coldstart.evaluate_coldstart_clue_probe",
    ]
    profiling = Cell.create("d", "profiling", "mip", 0)
    assert kedro_nodes(profiling)[0] == "learn.pretrain.next_item.pretrain_masked_item_prediction"
    assert kedro_nodes(Cell.create("d", "next_item", "gru", 0)) == [
        "learn.finetune.next_item.finetune_next_item_gru",
        "learn.evaluate.next_item.evaluate_next_item_gru",
    ]
    assert kedro_nodes(Cell.create("d", "pretrain", "mip", 0)) == [
        "learn.pretrain.next_item.pretrain_masked_item_prediction"
    ]
    assert kedro_nodes(Cell.create("d", "coldstart", "s3rec", 0)) == [
        "learn.pretrain.item_attributes",
        "learn.pretrain.coldstart.pretrain_s3rec",
        "learn.finetune.coldstart.finetune_coldstart_s3rec",
        "learn.evaluate.coldstart.evaluate_coldstart_s3rec",
    ]


def test_nodes_of_a_cell_are_nodes_the_project_registers():
    """Node names carry the namespaces the registry gives (phase, stage, task)."""
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    from tests.conftest import REPO_ROOT

    bootstrap_project(REPO_ROOT)
    registered = {node.name for node in pipelines["__default__"].nodes}
    cells = [
        Cell.create("d", task, method, 0)
        for task, method in [
            ("coldstart", "clue_probe"),
            ("pretrain", "s3rec"),
            ("next_item", "gru"),
        ]
    ]
    assert {name for cell in cells for name in kedro_nodes(cell)} - registered == set()


def test_parameters_carry_seed_share_and_overrides_nested():
    cell = Cell.create(
        "d", "next_item", "clue", 2, 0.4, {"augment.views.strategies": ["mask", "crop"]}
    )
    params = kedro_params(cell)
    assert params["pretrain"]["train"]["seed"] == 2
    assert params["finetune"] == {"train": {"seed": 2}, "train_user_fraction": 0.4}
    assert params["augment"]["views"]["strategies"] == ["mask", "crop"]
    assert uses_views(cell)
    assert not uses_views(Cell.create("d", "next_item", "clue", 2))


def test_bad_cells_and_overrides_are_named():
    with pytest.raises(ValueError, match="cell task 'ranking'"):
        Cell.create("d", "ranking", "clue", 0)
    with pytest.raises(ValueError, match="pre-training cell method 'gru'"):
        Cell.create("d", "pretrain", "gru", 0)
    with pytest.raises(ValueError, match=r"fraction 1.5"):
        Cell.create("d", "next_item", "clue", 0, 1.5)
    with pytest.raises(ValueError, match="'a' is both a value and a branch"):
        nest({"a": 1, "a.b": 2})


def test_flatten_and_nest_are_inverse():
    tree = {"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}
    assert flatten(tree) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}
    assert nest(flatten(tree)) == tree


def test_cells_that_reshape_the_data_rebuild_the_sequences_stage_around_them(monkeypatch):
    from clue_pipeline.experiments import runner
    from clue_pipeline.experiments.cells import reshapes_sequences

    folds = Cell.create("d", "profiling", "linear", 0, overrides={"sequences.profiling.fold": 2})
    longer = Cell.create("d", "profiling", "clue_zero", 0, overrides={"encoder.max_len": 200})
    plain = Cell.create("d", "profiling", "clue_zero", 0, overrides={"encoder.dropout": 0.3})
    assert reshapes_sequences(folds) and reshapes_sequences(longer)
    assert not reshapes_sequences(plain)

    calls = []
    monkeypatch.setattr(
        runner,
        "kedro",
        lambda config, dataset, args, params, log_name: calls.append((args, params)),
    )
    monkeypatch.setattr(runner, "cell_settings", lambda *a: {})
    monkeypatch.setattr(runner, "_versions", lambda output: set())

    class Path_:
        name = "x"

        def __truediv__(self, other):
            return self

        def read_text(self):
            return "{}"

    monkeypatch.setattr(runner, "_new_version", lambda output, before: Path_())
    config = runner.RunnerConfig(project_dir=".", envs={"d": None})
    runner.run_cell(folds, config)
    pipelines = [args for args, _ in calls]
    assert (
        pipelines[0] == ["--pipelines", "sequences"]
        and calls[0][1]["sequences"]["profiling"]["fold"] == 2
    )
    assert pipelines[1][0] == "--nodes"
    assert pipelines[-1] == ["--pipelines", "sequences"] and calls[-1][1] == {}
