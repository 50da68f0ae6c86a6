"""What every benchmark shares: the real data through the project's own functions, and
results written as JSON + Markdown with the command, date, machine and thread count."""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from scipy import stats

from clue_pipeline.data.readers import read_dataset
from clue_pipeline.data.sequences import (
    build_item_index,
    build_sequences,
    filter_interactions,
    order_interactions,
)
from clue_pipeline.data.splits import next_item_split
from clue_pipeline.data.validation import IngestOptions

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED = Path(os.environ.get("CLUE_SHARED_DATA", REPO.parent / "shared" / "data"))

DATASETS = {
    "beauty": ("s3rec", SHARED / "s3rec" / "Beauty.txt"),
    "sports": ("s3rec", SHARED / "s3rec" / "Sports_and_Outdoors.txt"),
    "ml-100k": ("ml-100k", SHARED / "movielens-100k"),
    # the public part of ML-1M (conf/ml-1m: users 1..2999, real timestamps)
    "ml-1m": ("ml-1m-partial", SHARED / "movielens-1m" / "partial"),
    "ml-latest-small": ("ml-latest-small", REPO / "data" / "01_raw" / "ml-latest-small"),
}


@dataclass
class NextItemDataset:
    name: str
    item_index: pd.DataFrame
    split: pd.DataFrame

    @property
    def num_items(self) -> int:
        return len(self.item_index)


def load_next_item(name: str, max_len: int = 50, min_seq_len: int = 3) -> NextItemDataset:
    """Read a dataset and build its leave-one-out split exactly as the pipelines do."""
    fmt, path = DATASETS[name]
    raw = read_dataset(IngestOptions(format=fmt, path=path))
    ordered, _ = filter_interactions(order_interactions(raw.interactions), 0, min_seq_len)
    item_index = build_item_index(ordered)
    split, _ = next_item_split(build_sequences(ordered, item_index, max_len))
    return NextItemDataset(name, item_index, split)


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


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


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
