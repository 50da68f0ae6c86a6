"""The reliability figure of the README: the fault table of ``tests/reliability`` run once.

Every bad input of ``tests/reliability/cases.py`` goes through the project's own ingest (and
sequences) pipelines in a throw-away project; a case counts as a clear error when it ends in
its stated error type, the message names the file and line, column or parameter (every
fragment the case lists), holds no traceback and is one line of at most ``MESSAGE_CHARS``. A partial output is any file under data/
that the failed run changed or added. Odd but valid inputs (BOM, CRLF, duplicate policies
that keep one event) must be read as their plain form.

    .venv/bin/python -m benchmarks.reliability_figure
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import markdown_table, write_results
from tests.reliability.cases import (
    CASES,
    MESSAGE_CHARS,
    UNREADABLE,
    make_sandbox,
    run_case,
    snapshot,
)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="clue-reliability-") as folder:
        root = make_sandbox(Path(folder))
        try:
            for case in CASES:
                rows.append(_run(case, root))
        finally:
            shutil.rmtree(UNREADABLE.parent, ignore_errors=True)
    bad = [r for r in rows if r["kind"] == "bad input"]
    valid = [r for r in rows if r["kind"] == "valid"]
    payload = {
        "bad_inputs": len(bad),
        "clear_errors": sum(r["clear"] for r in bad),
        "partial_outputs": sum(r["partial_output"] for r in rows),
        "valid_inputs": len(valid),
        "valid_read_correctly": sum(r["clear"] for r in valid),
        "seconds": round(sum(r["seconds"] for r in rows), 2),
        "cases": rows,
    }
    lines = [
        f"**{payload['bad_inputs']} bad inputs tried, {payload['clear_errors']} clear errors, "
        f"{payload['partial_outputs']} partial outputs**; {payload['valid_inputs']} odd but "
        f"valid inputs, {payload['valid_read_correctly']} read as their plain form "
        f"({payload['seconds']} s in all).",
        "",
        *markdown_table(("case", "outcome", "message (start)"), map(_table_row, rows)),
    ]
    write_results("reliability", payload, "\n".join(lines))
    print(lines[0])


def _table_row(row: dict) -> tuple[str, str, str]:
    if row["kind"] == "bad input":
        outcome = "clear error" if row["clear"] else "UNCLEAR"
    else:
        outcome = "read correctly" if row["clear"] else "WRONG"
    if row["partial_output"]:
        outcome += ", PARTIAL OUTPUT"
    return row["case"], outcome, row["message"][:110].replace("|", "\\|").replace("\n", " ")


def _run(case, root: Path) -> dict:
    before = snapshot(root / "data")
    started = time.perf_counter()
    try:
        error = run_case(case, root)
        failure = None
    except AssertionError as wrong:  # an accepted input read into the wrong values
        error, failure = None, str(wrong)
    seconds = time.perf_counter() - started
    after = snapshot(root / "data")
    own = {k for k in after if f"data/{k}" in case.files or k.startswith("01_raw/bad/")}
    changed = {
        k for k in after.keys() | before.keys() if k not in own and after.get(k) != before.get(k)
    }
    message = "" if error is None else f"{type(error).__name__}: {error}"
    if case.error is None:
        clear = error is None and failure is None
        message = failure or (message if error is not None else "")
    else:
        text = str(error)
        clear = (
            isinstance(error, case.error)
            and all(fragment in text for fragment in case.fragments)
            and "Traceback" not in text
            and "\n" not in text
            and len(text) <= MESSAGE_CHARS
        )
    return {
        "case": case.name,
        "kind": "bad input" if case.error is not None else "valid",
        "clear": bool(clear),
        "partial_output": bool(changed),
        "message": message,
        "seconds": round(seconds, 3),
    }


if __name__ == "__main__":
    main()
