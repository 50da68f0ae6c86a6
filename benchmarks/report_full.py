"""The full report on the public datasets, committed under benchmarks/results/report/.

    .venv/bin/python -m benchmarks.report_full [--max-new-cells N] [--only fig6 fig7]

Runs `kedro run --pipelines=report --params=report.profile=full` (cells cached in
benchmarks/results/quality/cells/, shared with benchmarks/quality.py, never recomputed), then
copies data/08_reporting/report.md and its figures here, with a section on the pre-training
objectives built from the objectives and transfer results
(`clue_pipeline.experiments.objectives_section`).
`--max-new-cells 0` only assembles the report from the cells already measured; the report lists
the missing ones.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import yaml

from benchmarks.common import REPO, RESULTS, _command
from clue_pipeline.experiments.objectives_section import section as objectives_section

OUT = RESULTS / "report"
BUILT = REPO / "data" / "08_reporting"
CONFIG = REPO / "benchmarks" / ".cache" / "report_full.yml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--max-new-cells", type=int, default=None, help="bound this sitting (0: assemble only)"
    )
    parser.add_argument(
        "--only", nargs="+", default=None, help="run only these experiments' cells, e.g. fig6 fig7"
    )
    args = parser.parse_args()
    report = {"profile": "full", "max_new_cells": args.max_new_cells, "run_only": args.only}
    env = {**os.environ, "CLUE_NUM_THREADS": os.environ.get("CLUE_NUM_THREADS", "1")}
    # a --config file, since --params cannot carry a list; kept (git-ignored) so that the
    # report's command line names a file that exists
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(yaml.safe_dump({"run": {"params": {"report": report}}}))
    command = [
        sys.executable,
        "-m",
        "kedro",
        "run",
        "--pipelines=report",
        f"--config={CONFIG.relative_to(REPO)}",
    ]
    subprocess.run(command, cwd=REPO, env=env, check=True)
    publish(_command())


def publish(command: str) -> None:
    """report.md (with the command that produced it) and its PNGs, replacing the last ones."""
    figures = OUT / "report"
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir(parents=True)
    for png in sorted((BUILT / "report").glob("*.png")):
        shutil.copy(png, figures / png.name)
    text = (BUILT / "report.md").read_text()
    marker = "- command: "
    text = text.replace(marker, f"- produced by: `{command}`\n{marker}", 1)
    text = insert_before(text, "## Wall time per cell", objectives_section(RESULTS, figures))
    (OUT / "report.md").write_text(text)
    print(
        f"wrote {(OUT / 'report.md').relative_to(REPO)} and {len(list(figures.iterdir()))} figures"
    )


def insert_before(text: str, heading: str, extra: str) -> str:
    """``extra`` placed before the section ``heading`` (appended when there is none)."""
    if not extra:
        return text
    at = text.find(f"\n{heading}\n")
    if at < 0:
        return f"{text.rstrip()}\n\n{extra}\n"
    return f"{text[: at + 1]}{extra}\n{text[at + 1 :]}"


if __name__ == "__main__":
    main()
