"""What every benchmark shares: the data as the project prepares it, and results written as
JSON + Markdown with the command, date, machine and thread count."""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import shlex
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from scipy import stats

from clue_pipeline.experiments.prepared import NextItemDataset, prepared_next_item

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# The RecBole reference of a timing: the peers study that measured RecBole 1.2.1's SASRec on
# Beauty beside ours (one thread per side, same settings as the pipeline's recipe before the
# ladder; its scripts are archived, see benchmarks/archive/README.md).
RECBOLE_RESULTS = RESULTS / "peers_beauty.json"


def next_item_dataset(dataset: str) -> NextItemDataset:
    """The dataset's next-item split and item index as its run-environment prepares them
    (`kedro run --env <dataset> --pipelines ingest,sequences`; the default environment for the
    embedded data)."""
    env = None if dataset == "ml-latest-small" else dataset
    return prepared_next_item(dataset, REPO, env)


def recbole_reference(path: Path = RECBOLE_RESULTS) -> dict[str, Any]:
    """RecBole's median training epoch and full-ranking validation, as measured and stored by
    the peers study, with the file and thread count they come from (None where not stored)."""
    if not path.is_file():
        return {"source": f"{path.relative_to(REPO)} (not found)", "epoch_s": None, "eval_s": None}
    record = json.loads(path.read_text())
    side = record["summary"]["sides"]["recbole"]
    return {
        "source": f"{path.relative_to(REPO)} ({record['date']}, "
        f"{record['machine']['torch_threads']} thread(s) per side)",
        "epoch_s": side["median_epoch_train_s"],
        "eval_s": side["median_eval_s"],
    }


ALPHA = 0.05  # two-sided level of the seed comparisons


def welch(a: list[float], b: list[float]) -> dict[str, Any]:
    """Mean difference a - b, Welch's t and its two-sided p, and the verdict at ``ALPHA``."""
    if len(a) < 2 or len(b) < 2:
        return {"verdict": f"not testable ({len(a)} vs {len(b)} seeds)"}
    diff = statistics.mean(a) - statistics.mean(b)
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        t, p = (0.0, 1.0) if diff == 0 else (float("inf"), 0.0)
    else:
        t, p = stats.ttest_ind(a, b, equal_var=False)
    verdict = ("better" if diff > 0 else "worse") if p < ALPHA else "level"
    return {"diff": diff, "t": float(t), "p": float(p), "verdict": verdict}


def show_cell_progress() -> None:
    """The cell runner's own lines (each cell's log path) on stderr: benchmarks run cells
    outside Kedro, whose logging would otherwise show them."""
    runner = logging.getLogger("clue_pipeline.experiments.runner")
    if not runner.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        runner.addHandler(handler)
    runner.setLevel(logging.INFO)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_results(name: str, payload: dict[str, Any], markdown_body: str) -> Path:
    """benchmarks/results/<name>.json and .md, each stating how the numbers were made."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = {
        "command": _command(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    record = {**header, **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    facts = "\n".join(
        [
            f"- command: `{header['command']}`",
            f"- date: {header['date']}",
            f"- machine: {header['machine']['cpu']}, {header['machine']['cores_available']} cores "
            f"available, torch threads {header['machine']['torch_threads']}, load average "
            f"{', '.join(f'{x:.2f}' for x in header['machine']['load_average'])}",
        ]
    )
    (RESULTS / f"{name}.md").write_text(f"# {name}\n\n{facts}\n\n{markdown_body.strip()}\n")
    return RESULTS / f"{name}.json"


def _command() -> str:
    """How this benchmark was started, as a user would type it (``python -m benchmarks.x``)."""
    script = Path(sys.argv[0]).resolve()
    if script.suffix == ".py" and script.is_relative_to(REPO / "benchmarks"):
        module = ".".join(script.relative_to(REPO).with_suffix("").parts)
        head = [".venv/bin/python", "-m", module]
    else:
        head = [".venv/bin/python", *sys.argv[:1]]
    return " ".join(shlex.quote(a) for a in [*head, *sys.argv[1:]])
