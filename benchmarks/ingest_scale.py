"""Ingest and sequence building at MovieLens-25M scale: wall time per stage and peak memory.

    .venv/bin/python -m benchmarks.ingest_scale [--interactions 25000000] [--regenerate]

(``.venv/bin/python benchmarks/ingest_scale.py``, the form of the recorded command, works too.)

A synthetic ML-25M-like log (``clue_pipeline.data.synthetic``) is written once to
``data/01_raw/ml25m-like/`` (the `scale` run-environment reads it) by a child process, so its memory does not count. This process then
reads it with the ingest reader (``generic`` format) and runs every function of the
``sequences`` pipeline with the project's parameters, recording the wall time of each stage
and the peak resident memory so far (``getrusage``). Results go to
``benchmarks/results/ingest_scale.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
if not __package__:  # started by file path: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))
CACHE = ROOT / "data" / "01_raw" / "ml25m-like"  # the `scale` run-environment's log
RESULTS = ROOT / "benchmarks" / "results"
TARGET_SECONDS = 60.0
TARGET_PEAK_GIB = 6.0
LOADED_AT = 0.5  # 1-minute load average above which other jobs competed for the cores


def main() -> None:
    from clue_pipeline.data.synthetic import ensure_log  # pandas and numpy only: no torch yet

    args = _arguments()
    started = time.perf_counter()
    if ensure_log(CACHE, args.interactions, args.regenerate):
        print(f"generated the log in {time.perf_counter() - started:.1f} s (child process)")
    result = run_stages(CACHE, args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "ingest_scale.md").write_text(to_markdown(result))
    print(to_markdown(result))


# --- measured stages ---------------------------------------------------------------------


def run_stages(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    params = _parameters(args.k_core)
    load_before = os.getloadavg()
    stages: list[dict[str, Any]] = []
    outputs = _measure(folder, params, partial(_stage, stages))
    total, peak = round(sum(item["seconds"] for item in stages), 2), _peak_gib()
    return {
        "command": " ".join([".venv/bin/python", "benchmarks/ingest_scale.py", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "threads": {
            "pyarrow_cpu_count": pa.cpu_count(),
            "numpy_pandas": 1,
            "CLUE_NUM_THREADS": os.environ.get("CLUE_NUM_THREADS"),
        },
        "load_average_1m": {
            "before": round(load_before[0], 2),
            "after": round(os.getloadavg()[0], 2),
        },
        "reader": outputs.pop("reader"),
        "data": outputs,
        "parameters": {key: params[key] for key in ("max_len", "min_seq_len", "k_core", "seed")},
        "stages": stages,
        "total_seconds": total,
        "total_cpu_seconds": round(sum(item["cpu_seconds"] for item in stages), 2),
        "peak_rss_gib": peak,
        "targets": {"seconds": TARGET_SECONDS, "peak_rss_gib": TARGET_PEAK_GIB},
        "met": total < TARGET_SECONDS and peak < TARGET_PEAK_GIB,
    }


def _parameters(k_core: int) -> dict[str, Any]:
    """The default run-environment's ``sequences`` block as the pipeline receives it, with its
    sequence length (``encoder.max_len``, one value for every stage) and this run's k-core."""
    from clue_pipeline.experiments.settings import _environment_parameters

    params = json.loads(_environment_parameters(str(ROOT / "conf"), None))
    return {**params["sequences"], "max_len": params["encoder"]["max_len"], "k_core": k_core}


def _stage(stages: list[dict[str, Any]], name: str, work: Callable[[], Any]) -> Any:
    """``work()``, its wall and CPU time and the peak memory so far appended to ``stages``."""
    started, cpu_started = time.perf_counter(), time.process_time()
    out = work()
    done = {
        "stage": name,
        "seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(time.process_time() - cpu_started, 2),
        "peak_rss_gib": _peak_gib(),
    }
    stages.append(done)
    print(
        f"{name:<28} {done['seconds']:>7.2f} s wall {done['cpu_seconds']:>7.2f} s cpu  "
        f"peak {done['peak_rss_gib']:.2f} GiB"
    )
    return out


def _measure(folder: Path, params: dict[str, Any], stage: Callable) -> dict[str, Any]:
    """Every function of the ingest checks and the ``sequences`` pipeline, each a stage."""
    from clue_pipeline.data.coldstart import ColdStartSettings, build_coldstart
    from clue_pipeline.data.sequences import (
        build_item_index,
        build_sequences,
        filter_interactions,
        order_interactions,
    )
    from clue_pipeline.data.splits import next_item_split, profile_split

    state: dict[str, Any] = {}
    reader = stage("read (ingest reader)", lambda: _read(folder))
    state["interactions"], state["users"], state["items"], reader_name = reader
    stage("validate (ingest checks)", lambda: _validate(state))
    state["ordered"] = stage(
        "order by user, time", lambda: order_interactions(state.pop("interactions"))
    )
    filtered, report = stage(
        "filter (k-core, min length)",
        lambda: filter_interactions(state.pop("ordered"), params["k_core"], params["min_seq_len"]),
    )
    index = stage("item index (popularity)", lambda: build_item_index(filtered))
    sequences = stage(
        "sequences (max_len + 2)", lambda: build_sequences(filtered, index, params["max_len"])
    )
    loo, dropped = stage("next-item leave-one-out", lambda: next_item_split(sequences))
    profiling = params["profiling"]
    profiles, classes = stage(
        "profiling splits",
        lambda: profile_split(
            sequences,
            state["users"],
            profiling["tasks"],
            profiling["ratios"],
            params["seed"],
            profiling["stratify_min_users"],
            "ml25m-like",
        ),
    )
    settings = ColdStartSettings.from_params(params)
    coldstart = stage(
        "cold-start tables",
        lambda: build_coldstart(filtered, state["items"], index, settings, "ml25m-like"),
    )
    return {
        "reader": reader_name,
        "interactions_read": report.interactions_before,
        "users": report.users_before,
        "items": report.items_before,
        "interactions_kept": report.interactions_after,
        "sequences": len(sequences),
        "next_item_users": len(loo),
        "next_item_dropped": dropped,
        "profile_rows": len(profiles),
        "profile_tasks": {task: len(names) for task, names in classes.items()},
        "coldstart_users": len(coldstart.source),
        "coldstart_instances": len(coldstart.targets),
        "coldstart_classes": len(coldstart.target_index),
    }


def _read(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """The project's `generic` reader (named in the result)."""
    from clue_pipeline.data.readers import known_formats, read_dataset
    from clue_pipeline.data.validation import parse_ingest_params

    params = {
        "format": "generic",
        "path": str(folder / "interactions.parquet"),
        "generic": {
            "columns": {
                "user_id": "userId",
                "item_id": "movieId",
                "timestamp": "timestamp",
                "rating": "rating",
            },
            "users": {
                "path": str(folder / "users.parquet"),
                "columns": {
                    "user_id": "userId",
                    "gender": "gender",
                    "age": "age",
                    "occupation": "occupation",
                },
            },
            "items": {
                "path": str(folder / "items.parquet"),
                "columns": {"item_id": "movieId", "title": "title", "genres": "genres"},
            },
        },
    }
    raw = read_dataset(parse_ingest_params(params, known_formats()))
    return raw.interactions, raw.users, raw.items, "clue_pipeline.data.readers (generic)"


def _validate(state: dict[str, Any]) -> None:
    """The ingest pipeline's checks (duplicate policy, contract dtypes)."""
    from clue_pipeline.data.validation import check_contract, drop_duplicate_events

    key = ("user_id", "item_id", "timestamp")
    state["interactions"] = drop_duplicate_events(state["interactions"], "keep_last", key, "bench")
    check_contract(state["interactions"], state["users"], state["items"])


def _peak_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)  # KiB on Linux


def _machine() -> dict[str, Any]:
    # Imported only now, after every stage's peak memory was taken: benchmarks.common loads
    # torch, whose memory is no part of ingest.
    from benchmarks.common import machine

    shared = machine()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu_model": shared["cpu"],
        "cores_usable": shared["cores_available"],
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
    }


def to_markdown(result: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {s['stage']} | {s['seconds']:.2f} | {s['cpu_seconds']:.2f} | {s['peak_rss_gib']:.2f} |"
        for s in result["stages"]
    )
    machine = result["machine"]
    data = result["data"]
    verdict = "met" if result["met"] else "NOT met"
    return f"""# Ingest and sequences at ML-25M scale

`{result["command"]}` — {result["date"]}

Machine: {machine["cpu_model"]}, {machine["cores_usable"]} usable cores, \
{machine["memory_gib"]} GiB; pyarrow threads {result["threads"]["pyarrow_cpu_count"]}, \
numpy/pandas single-threaded. 1-minute load average {result["load_average_1m"]["before"]} \
before, {result["load_average_1m"]["after"]} after: {_load_note(result)}. \
Reader: {result["reader"]}.

Data: {data["interactions_read"]:,} interactions, {data["users"]:,} users, \
{data["items"]:,} items (synthetic, ML-25M-like); parameters {result["parameters"]}.
Sequences {data["sequences"]:,}; leave-one-out users {data["next_item_users"]:,}; \
profiling rows {data["profile_rows"]:,} ({data["profile_tasks"]}); cold-start \
{data["coldstart_users"]:,} users, {data["coldstart_instances"]:,} instances, \
{data["coldstart_classes"]:,} target classes.

| stage | wall s | CPU s (all threads) | peak RSS so far (GiB) |
| --- | ---: | ---: | ---: |
{rows}
| **total** | **{result["total_seconds"]:.2f}** | **{result["total_cpu_seconds"]:.2f}** | \
**{result["peak_rss_gib"]:.2f}** |

Wall time is what the target is about; CPU time is the work itself, which other jobs on a
shared machine do not inflate (wall well above CPU on a 2-core machine means waiting for a
core).

Target: under {result["targets"]["seconds"]:.0f} s and {result["targets"]["peak_rss_gib"]:.0f} \
GiB peak — {verdict}.
"""


def _load_note(result: dict[str, Any]) -> str:
    load = max(result["load_average_1m"].values())
    if load > LOADED_AT:
        return "the machine was loaded, other jobs shared its cores during the run"
    return "the machine was otherwise idle"


# --- synthetic log -----------------------------------------------------------------------


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interactions", type=int, default=25_000_000)
    parser.add_argument("--k-core", type=int, default=0, help="sequences.k_core for the run")
    parser.add_argument("--regenerate", action="store_true")
    return parser.parse_args()


if __name__ == "__main__":
    main()
