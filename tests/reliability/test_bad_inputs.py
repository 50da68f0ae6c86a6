"""Every bad input of the table ends in its stated error, naming the file and the line, column
or parameter at fault in one short line, and leaves every file under data/ exactly as it was."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.cases import (
    CASES,
    MESSAGE_CHARS,
    UNREADABLE,
    Case,
    make_sandbox,
    run_case,
    snapshot,
)

BAD_INPUTS = [case for case in CASES if case.error is not None]
ACCEPTED = [case for case in CASES if case.error is None]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Iterator[Path]:
    yield make_sandbox(tmp_path_factory.mktemp("reliability"))
    shutil.rmtree(UNREADABLE.parent, ignore_errors=True)


def test_the_table_covers_at_least_thirty_bad_inputs():
    assert len(BAD_INPUTS) >= 55
    assert len({case.name for case in CASES}) == len(CASES), "case names must be unique"


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda case: case.name)
def test_bad_input_is_a_clear_error_and_writes_nothing(case: Case, sandbox: Path):
    before = snapshot(sandbox / "data")
    error = run_case(case, sandbox)
    assert isinstance(error, case.error), f"expected {case.error.__name__}, got {error!r}"
    message = str(error)
    for fragment in case.fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert "Traceback" not in message
    assert "\n" not in message and len(message) <= MESSAGE_CHARS, f"not one short line: {message}"
    after = snapshot(sandbox / "data")
    assert after == _without_case_files(before, after, case), "data/ changed"


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda case: case.name)
def test_odd_but_valid_input_is_read_as_its_plain_form(case: Case, sandbox: Path):
    before = snapshot(sandbox / "data")
    assert run_case(case, sandbox) is None
    after = snapshot(sandbox / "data")
    assert after == _without_case_files(before, after, case), "data/ changed"


def _without_case_files(before: dict, after: dict, case: Case) -> dict:
    """The snapshot before, plus only the files the case itself wrote as its input."""
    own = {key for key in after if f"data/{key}" in case.files or key.startswith("01_raw/bad/")}
    return {**before, **{key: after[key] for key in own}}
