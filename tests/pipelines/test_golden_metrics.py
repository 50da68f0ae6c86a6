"""The default chain's test metrics stay what they were when this golden file was recorded.

A refactor that should not change behaviour (settings parsed elsewhere, a module split, a
registry instead of an if-chain) must give the same ``metrics.md`` at the default seed on CPU.
The golden file was written by the tests' own run (``TINY_BUDGET``, one torch thread). It was
first recorded before the settings / rooms / registries refactor, which left every row as it
was but one: the first training node of a run, whose initial weights came from whatever the
process had drawn before it, so two runs of the same code differed there. Since fine-tuning
seeds each model's construction the run is reproducible (two runs give the same file), and
the file was recorded again from such a run, the linear floor's row included. Tolerance: a metric may move by at most two users' worth (2 / the
row's ``n_users``), room for float summation order on another CPU, none for a changed
random draw or a changed default, which move many users.
To record a new golden file after an intended change of behaviour, copy
``data/08_reporting/ml-latest-small/metrics.md`` of that run here, and say why in the commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parents[1] / "golden" / "default_chain_tiny_budget.md"
USERS_OF_SLACK = 2
# Methods added to the default chain after the golden file was recorded: their rows are new,
# every row the file holds must still be there with its values.
ADDED_METHODS: set[str] = set()


def metric_rows(markdown: str) -> dict[tuple[str, str], dict[str, float]]:
    """``(task, method) -> {metric: value}`` from a metrics.md table (header row first)."""
    rows, header = {}, None
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or set(cells[0]) <= {"-", " "}:
            continue
        if cells[:2] == ["task", "method"]:
            header = cells
            continue
        if header is not None and len(cells) == len(header):
            rows[(cells[0], cells[1])] = {
                name: float(value) for name, value in zip(header[2:], cells[2:], strict=True)
            }
    return rows


def test_metric_rows_reads_the_table():
    table = "| task | method | mrr@10 | n_users |\n| --- | --- | --- | --- |\n| a | b | 0.5 | 10 |"
    assert metric_rows(table) == {("a", "b"): {"mrr@10": 0.5, "n_users": 10.0}}


def test_default_chain_metrics_equal_the_golden_file(finished_project: Path):
    golden = metric_rows(GOLDEN.read_text())
    produced = metric_rows(
        (finished_project / "data" / "08_reporting" / "ml-latest-small" / "metrics.md").read_text()
    )
    assert golden, "the golden file holds no metric row"
    assert set(golden) <= set(produced), "rows of the golden file are gone"
    added = {method for _, method in set(produced) - set(golden)}
    assert added <= ADDED_METHODS, f"rows of methods {added - ADDED_METHODS} are new"
    moved = []
    for key, expected in golden.items():
        slack = USERS_OF_SLACK / expected["n_users"] + 1e-9
        for name, value in expected.items():
            got = produced[key].get(name)
            if got is None or abs(got - value) > slack:
                moved.append(f"{key[0]}/{key[1]} {name}: golden {value}, now {got}")
    assert not moved, "metrics moved beyond two users' worth:\n" + "\n".join(moved)
