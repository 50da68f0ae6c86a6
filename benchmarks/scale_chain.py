"""The chain at MovieLens-25M scale: 160,000 users through ingest -> sequences -> augment ->
pretrain -> finetune (next item) -> evaluate -> embed, as one `kedro run`.

    .venv/bin/python -m benchmarks.scale_chain [--threads 2] [--interactions 25000000]

The seeded ML-25M-shaped log of ``clue_pipeline.data.synthetic`` is written once to
``data/01_raw/ml25m-like/`` by a child process; the run is ``kedro run --env scale --pipelines
core`` (conf/scale). Per-stage wall time and peak memory: the project's ``RunResourcesHook``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import time
from typing import Any

from benchmarks.common import REPO, write_results
from clue_pipeline.data.synthetic import ensure_log
from clue_pipeline.pipeline_registry import PHASES

RAW = REPO / "data" / "01_raw" / "ml25m-like"
DATASET = "ml25m-like"
TARGET_MINUTES, TARGET_PEAK_GIB = 60.0, 8.0
LOG = REPO / "logs" / "scale_chain.log"
STAGE_FILE = REPO / "logs" / "scale_chain_resources.json"
CHAIN = [stage for stages in PHASES.values() for stage in stages]


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
    # the hook resets the child's high-water mark per node: its getrusage is the last node's
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1024**3
    resources = json.loads(STAGE_FILE.read_text())
    return {
        "wall_minutes": round(wall / 60, 2),
        "peak_rss_gib": round(max(child_peak, resources["peak_rss_gib"]), 3),
        "load_average_1m": {"before": round(load_before, 2), "after": os.getloadavg()[0]},
        "resources": resources,
    }


def data_sizes() -> dict[str, int]:
    """Rows of the run's tables (parquet metadata: nothing is loaded)."""
    import pyarrow.parquet as pq

    def rows(layer: str, name: str) -> int:
        return pq.ParquetFile(REPO / "data" / layer / DATASET / f"{name}.parquet").metadata.num_rows

    return {
        "users": rows("03_primary", "sequences"),
        "items": rows("03_primary", "item_index"),
        "interactions": rows("02_intermediate", "interactions"),
    }


def settings() -> dict[str, Any]:
    from clue_pipeline.experiments.settings import resolved_settings

    keys = [
        f"{stage}.train.{k}" for stage in ("pretrain", "finetune") for k in ("epochs", "batch_size")
    ]
    keys += ["pretrain.objective.next_item_share", "finetune.next_item.position_share"]
    keys += ["encoder.max_len", "embed.index.method"]
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
    for row in sorted(run["resources"]["stages"], key=lambda r: CHAIN.index(r["stage"])):
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
        "mark is reset before each node), the whole run's the largest of them. "
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
    ensure_log(RAW, args.interactions)
    run = run_chain(args.threads)
    table = (REPO / "data" / "08_reporting" / DATASET / "metrics.md").read_text()
    payload = {
        "threads": args.threads,
        "settings": settings(),
        "data": data_sizes(),
        "run": run,
        "metrics_table": table,
        "targets": {"minutes": TARGET_MINUTES, "peak_rss_gib": TARGET_PEAK_GIB},
        "met": run["wall_minutes"] < TARGET_MINUTES and run["peak_rss_gib"] < TARGET_PEAK_GIB,
    }
    write_results("scale_chain", payload, markdown(payload))
    print(markdown(payload))


if __name__ == "__main__":
    main()
