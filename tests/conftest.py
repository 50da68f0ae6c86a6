"""Fixtures shared by the whole suite."""

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_DATA = REPO_ROOT / "data" / "01_raw" / "ml-latest-small"


def shared_data_dir() -> Path:
    """The folder of public datasets beside the checkout (override with CLUE_SHARED_DATA)."""
    return Path(os.environ.get("CLUE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_test_process():
    torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    """Path to ../shared/data; the test is skipped, saying why, where it is absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"public datasets not found at {path} (set CLUE_SHARED_DATA)")
    return path


@pytest.fixture
def embedded_data() -> Path:
    return EMBEDDED_DATA


@pytest.fixture(scope="session")
def finished_project(tmp_path_factory) -> Path:
    """A copy of the project after one whole default `kedro run` (tiny training budget)."""
    from tests.project import TINY_BUDGET, copy_project, kedro_run

    project = copy_project(tmp_path_factory.mktemp("project"))
    result = kedro_run(project, TINY_BUDGET)
    assert result.returncode == 0, result.stderr[-4000:]
    return project
