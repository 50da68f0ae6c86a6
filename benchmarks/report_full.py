"""The full report on the public datasets, committed under benchmarks/results/report/.

    .venv/bin/python -m benchmarks.report_full [--max-new-cells N]

Runs `kedro run --pipelines=report --params=report.profile=full` (cells cached in
benchmarks/results/quality/cells/, shared with benchmarks/quality.py, never recomputed), then
copies data/08_reporting/report.md and its figures here. `--max-new-cells 0` only assembles the
report from the cells already measured; the report lists the missing ones.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

from benchmarks.common import REPO, RESULTS, _command

OUT = RESULTS / "report"
BUILT = REPO / "data" / "08_reporting"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--max-new-cells", type=int, default=None, help="bound this sitting (0: assemble only)"
    )
    args = parser.parse_args()
    params = "report.profile=full"
    if args.max_new_cells is not None:
        params += f",report.max_new_cells={args.max_new_cells}"
    command = [sys.executable, "-m", "kedro", "run", "--pipelines=report", f"--params={params}"]
    env = {**os.environ, "CLUE_NUM_THREADS": os.environ.get("CLUE_NUM_THREADS", "1")}
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
    (OUT / "report.md").write_text(text)
    print(
        f"wrote {(OUT / 'report.md').relative_to(REPO)} and {len(list(figures.iterdir()))} figures"
    )


if __name__ == "__main__":
    main()
