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


FINISHED_PROJECT = "finished_project"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules that read the finished project run last, whole (their module fixtures set
    up once), so the other tests run meanwhile on the core its one-thread run leaves free."""
    readers = {item.module.__name__ for item in items if FINISHED_PROJECT in item.fixturenames}
    items.sort(key=lambda item: item.module.__name__ in readers)


@pytest.fixture(scope="session", autouse=True)
def _finished_project_run(request, tmp_path_factory):
    """The whole default `kedro run` (tiny training budget) that ``finished_project`` serves,
    started in the background as the session starts, if any collected test reads it."""
    if not any(FINISHED_PROJECT in item.fixturenames for item in request.session.items):
        yield None
        return
    from tests.project import TINY_BUDGET, copy_project, start_kedro_run

    project = copy_project(tmp_path_factory.mktemp("project"))
    process = start_kedro_run(project, TINY_BUDGET)
    yield project, process
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def finished_project(_finished_project_run) -> Path:
    """A copy of the project after one whole default `kedro run` (tiny training budget)."""
    project, process = _finished_project_run
    code = process.wait(timeout=600)
    log = (project / "kedro-run.log").read_text()
    assert code == 0, log[-4000:]
    return project
