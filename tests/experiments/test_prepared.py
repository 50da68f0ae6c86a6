"""Which run-environment prepares a dataset: the embedded data has no folder of its own."""

from __future__ import annotations

from clue_pipeline.experiments import prepared, runner
from tests.conftest import REPO_ROOT


def test_embedded_data_is_prepared_by_the_default_environment():
    assert prepared.dataset_environment("ml-latest-small", REPO_ROOT) is None
    assert prepared.dataset_environment("beauty", REPO_ROOT) == "beauty"


def test_prepared_next_item_runs_kedro_without_an_env_for_the_embedded_data(monkeypatch):
    seen = {}
    monkeypatch.setattr(runner, "prepare", lambda dataset, config: seen.update(config.envs))
    monkeypatch.setattr(prepared, "read_prepared", lambda project, dataset: dataset)
    assert prepared.prepared_next_item("ml-latest-small", REPO_ROOT) == "ml-latest-small"
    prepared.prepared_next_item("beauty", REPO_ROOT)
    assert seen == {"ml-latest-small": None, "beauty": "beauty"}
