"""The chain at MovieLens-25M scale: 160,000 users through ingest -> sequences -> augment ->
pretrain -> finetune (next item) -> evaluate -> embed, as one `kedro run`.

    .venv/bin/python -m benchmarks.scale_chain [--threads 2] [--interactions 25000000]

The log is the seeded ML-25M-shaped one of ``clue_pipeline.data.synthetic``, written once to
``data/01_raw/ml25m-like/`` by a child process. The run is ``kedro run --env scale
--pipelines core`` (conf/scale: one epoch each, a tenth of the positions scored per step);
its wall time and peak memory per stage come from the project's ``RunResourcesHook``, and the
peak of the whole child from ``getrusage``. Results: benchmarks/results/scale_chain.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import REPO, write_results

RAW = REPO / "data" / "01_raw" / "ml25m-like"
DATASET = "ml25m-like"
TARGET_MINUTES, TARGET_PEAK_GIB = 60.0, 8.0
LOG = REPO / "logs" / "scale_chain.log"
STAGE_FILE = REPO / "logs" / "scale_chain_resources.json"


def ensure_log(interactions: int) -> None:
    """The synthetic log, drawn by a child process so its memory stays out of the figures."""
    if (RAW / f"done-{interactions}").exists():
        return
    command = [sys.executable, "-m", "clue_pipeline.data.synthetic", str(RAW)]
    subprocess.run([*command, "--interactions", str(interactions)], check=True, cwd=REPO)


def run_chain(threads: int) -> dict[str, Any]:
    """`kedro run --env scale --pipelines core`; its output goes to ``LOG``."""
    env = {**os.environ, "CLUE_NUM_THREADS": str(threads), "CLUE_RESOURCES_FILE": str(STAGE_FILE)}
    STAGE_FILE.unlink(missing_ok=True)
    LOG.parent.mkdir(parents=True, exist_ok=True)
    command = [str(REPO / ".venv" / "bin" / "kedro"), "run", "--env", "scale", "--pipelines"]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with LOG.open("w") as log:
        done = subprocess.run([*command, "core"], cwd=REPO, env=env, stdout=log, stderr=log)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the scale run failed (exit {done.returncode}); see {LOG}")
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1024**3
    return {
        "wall_minutes": round(wall / 60, 2),
        "peak_rss_gib": round(child_peak, 3),
        "load_average_1m": {"before": round(load_before, 2), "after": os.getloadavg()[0]},
        "resources": json.loads(STAGE_FILE.read_text()),
    }


def latest(name: str) -> Any:
    """The newest version of a versioned JSON output of the run."""
    folder = REPO / "data" / "08_reporting" / DATASET / name
    versions = sorted(p for p in folder.iterdir() if p.is_dir())
    return json.loads((versions[-1] / name).read_text())


def data_sizes() -> dict[str, int]:
    import pandas as pd

    sequences = pd.read_parquet(REPO / "data" / "03_primary" / DATASET / "sequences.parquet")
    return {
        "users": len(sequences),
        "items": int(sequences["items"].explode().nunique()),
        "interactions": int(sequences["items"].str.len().sum()),
    }


def settings() -> dict[str, Any]:
    from clue_pipeline.experiments.settings import resolved_settings

    keys = (
        "pretrain.train.epochs",
        "pretrain.train.batch_size",
        "pretrain.objective.next_item_share",
        "finetune.train.epochs",
        "finetune.train.batch_size",
        "finetune.next_item.position_share",
        "encoder.max_len",
        "embed.index.method",
    )
    resolved = resolved_settings(REPO, "scale", {}, ("pretrain", "finetune", "encoder", "embed"))
    return {key: resolved[key] for key in keys}


def markdown(payload: dict[str, Any]) -> str:
    run, sizes = payload["run"], payload["data"]
    lines = [
        f"`kedro run --env scale --pipelines core` on {sizes['users']:,} users, "
        f"{sizes['items']:,} items, {sizes['interactions']:,} interactions (the seeded "
        f"ML-25M-shaped log), {payload['threads']} torch threads. Settings: "
        + ", ".join(f"`{k}` {v}" for k, v in payload["settings"].items())
        + ".",
        "",
        "| stage | nodes | wall (s) | peak memory (GiB) |",
        "| --- | --- | --- | --- |",
    ]
    for row in run["resources"]["stages"]:
        lines.append(
            f"| {row['stage']} | {row['nodes']} | {row['seconds']:.1f} "
            f"| {row['peak_rss_gib']:.2f} |"
        )
    lines += [
        f"| **whole run** | {sum(r['nodes'] for r in run['resources']['stages'])} "
        f"| {run['wall_minutes'] * 60:.0f} ({run['wall_minutes']:.1f} min) "
        f"| {run['peak_rss_gib']:.2f} |",
        "",
        f"Targets: under {TARGET_MINUTES:.0f} min and {TARGET_PEAK_GIB:.0f} GiB: "
        f"{'met' if payload['met'] else 'not met'}. A stage's peak is its own (the high-water "
        "mark is reset before each node); the whole run's is the child process's `getrusage`. "
        "Wall time includes the start of Kedro and MLflow.",
        "",
        "Test metrics (the log has no sequential signal; they show the chain ran, not quality):",
        "",
        "```",
        payload["metrics_table"].strip(),
        "```",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--interactions", type=int, default=25_000_000)
    args = parser.parse_args()
    ensure_log(args.interactions)
    run = run_chain(args.threads)
    summary = latest("metrics_summary.json")
    table = (REPO / "data" / "08_reporting" / DATASET / "metrics.md").read_text()
    payload = {
        "threads": args.threads,
        "settings": settings(),
        "data": data_sizes(),
        "run": run,
        "metrics": summary,
        "metrics_table": table,
        "targets": {"minutes": TARGET_MINUTES, "peak_rss_gib": TARGET_PEAK_GIB},
        "met": run["wall_minutes"] < TARGET_MINUTES and run["peak_rss_gib"] < TARGET_PEAK_GIB,
    }
    write_results("scale_chain", payload, markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
