"""Next-item quality of every grid method on the Amazon S3-Rec files, run on a GPU machine.

    PYTHONPATH=src python3 -m benchmarks.gpu_quality --data DIR --out OUT \\
        [--datasets beauty sports] [--methods clue clue_zero mip gru cnn ...] [--seeds 0 1 2] \\
        [--parallel 8] [--budget-s 420] [--device cuda|cpu|auto]

Why: on 2 CPU cores a Beauty cell of the quality grid (``benchmarks/quality.py``) takes about
an hour. A lent GPU machine has PyTorch but not the pipelines' packages, so this runs the steps
of those cells without a Kedro session, with the run-environments' settings (``conf/beauty``,
``conf/sports``) parsed by ``clue_pipeline.config``: the split the run-environment prepared
(``--data``, as for ``benchmarks/gpu_check.py``), pre-training through
``tasks.pretraining.run_job`` for the methods that start from it (``INIT``), fine-tuning through
``tasks.finetuning.finetune_next_item`` with early stopping on validation NDCG@10. Every epoch
also scores the test items, so a run cut by ``--budget-s`` still reports the test metrics at
its best validation epoch so far, marked as capped.

``--methods rung-<name>`` trains CLUE-Zero with a rung of the recipe ladder instead
(``conf/recipes/ladder.yml``), so the rungs the CPU ladder has not reached can run on a GPU.

Each (dataset, method, seed) runs in its own process, ``--parallel`` at once, and rewrites
``OUT/runs/<dataset>_<method>_seed<s>.json`` after every epoch; the parent stops what is still
running at ``--budget-s`` and writes ``OUT/gpu_quality.{json,md}`` (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a bare copy of the repository, not installed
    sys.path.insert(0, str(REPO / "src"))

from benchmarks.common import RunSettings, markdown_head, markdown_table, run_settings  # noqa: E402
from benchmarks.gpu_check import device_facts  # noqa: E402
from clue_pipeline.config import NextItemHead, encoder_config  # noqa: E402
from clue_pipeline.experiments.cells import INIT as CELL_INIT  # noqa: E402
from clue_pipeline.experiments.prepared import read_prepared  # noqa: E402
from clue_pipeline.experiments.recipes import load_ladder  # noqa: E402
from clue_pipeline.experiments.settings import resolved_settings  # noqa: E402
from clue_pipeline.models.heads import NextItemModel  # noqa: E402
from clue_pipeline.tasks.finetuning import (  # noqa: E402
    MethodSpec,
    evaluate_next_item,
    finetune_next_item,
    make_encoder,
)
from clue_pipeline.tasks.pretraining import MaskedItemSettings, PretrainJob, run_job  # noqa: E402

DATASETS = ("beauty", "sports")
LADDER = load_ladder()  # conf/recipes/ladder.yml
PATIENCE, MAX_EPOCHS = LADDER.patience, LADDER.max_epochs
# The quality grid's next-item methods that train here: pop is counted, not trained, and
# S3-Rec needs the attributes the Kedro pipeline reads, so both run through Kedro only.
METHODS = ("clue", "clue_zero", "mip", "gru", "cnn", "caser", "clue_probe", "mip_probe")
# method -> the pre-training it starts from
INIT = {method: start for method, start in CELL_INIT.items() if method in METHODS}
HEADLINE = ("recall@10", "ndcg@10", "mrr@10")
RUNG = (
    "rung-"  # --methods rung-<name>: CLUE-Zero with a recipe-ladder rung (conf/recipes/ladder.yml)
)


def settings_of(dataset: str) -> dict[str, Any]:
    """What a run's numbers depend on: the run-environment's parameters as a cell records them
    (``experiments.settings``), so a stored run counts while they are unchanged."""
    return resolved_settings(REPO, dataset, {})


def method_recipe(settings: RunSettings, method: str, num_items: int) -> dict[str, Any]:
    """Encoder, head, fine-tuning settings and spec of a grid method (the run-environment's,
    parsed) or of a ladder rung (CLUE-Zero trained as the CPU ladder trains it: the ladder's
    patience, at most its ``max_epochs``, so its GPU runs compare with the ladder's cells)."""
    if not method.startswith(RUNG):
        return {
            "encoder": settings.encoder(num_items),
            "head": settings.finetune.next_item,
            "train": settings.finetune_train(method),
            "spec": settings.method(method),
        }
    name = method.removeprefix(RUNG)
    rung = LADDER.recipe(name)
    train = {"patience": PATIENCE, "epochs": MAX_EPOCHS, **rung["train"]}
    return {
        "encoder": encoder_config(rung["encoder"], num_items, where=f"rung {name} encoder"),
        "head": NextItemHead(**{**rung["head"], "rows": rung["rows"]}),
        "train": replace(settings.finetune_train("clue_zero"), **train),
        "spec": MethodSpec("clue_zero", backbone=rung["encoder"]["kind"]),
    }


def run_one(dataset: str, method: str, seed: int, args: argparse.Namespace, device: str) -> None:
    """One (dataset, method, seed): pre-train (if the method starts from pre-trained weights),
    fine-tune, score the test items every epoch; the JSON is rewritten after every epoch."""
    started = time.perf_counter()
    settings = run_settings(dataset)
    data = read_prepared(args.data, dataset)
    recipe = method_recipe(settings, method, data.num_items)
    task = data.task(recipe["encoder"].max_len)
    head: NextItemHead = recipe["head"]
    record: dict[str, Any] = {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "users": data.num_users,
        "items": data.num_items,
        "status": "running",
        "curve": [],
        "recipe": {k: asdict(v) for k, v in recipe.items() if k != "spec"} | {"rows": head.rows},
    }
    path = args.out / "runs" / f"{dataset}_{method}_seed{seed}.json"
    pretrained = None
    if method in INIT:
        train = settings.pretrain_train(epochs=_epochs(args, settings)["pretrain"])
        start = INIT[method]
        job = PretrainJob(
            start,
            task.valid.tokens,
            recipe["encoder"],
            replace(train, seed=seed, device=device),
            settings.clue()
            if start == "clue"
            else MaskedItemSettings(settings.pretrain.masked_item.mask_ratio),
        )
        pretrained, pretrain_result = run_job(job)
        record["pretrain_s"] = time.perf_counter() - started
        record["pretrain_last_loss"] = pretrain_result.history[-1]["loss"]
    spec = recipe["spec"]
    rows, test, clock = task.training_rows(head.rows), task.test, {"epoch": time.perf_counter()}

    def on_validation(metrics: dict[str, float], model: NextItemModel) -> None:
        scored = evaluate_next_item(model, test)
        record["curve"].append(
            {
                "epoch": len(record["curve"]),
                "epoch_s": time.perf_counter() - clock["epoch"],
                "valid": {k: float(metrics[k]) for k in HEADLINE},
                "test": {k: float(scored[k]) for k in HEADLINE},
            }
        )
        _write(path, {**record, "best": _best(record["curve"])})
        clock["epoch"] = time.perf_counter()

    config = replace(recipe["train"], seed=seed, device=device)
    if args.finetune_epochs:  # a dry run caps every method and rung
        config = replace(config, epochs=args.finetune_epochs, min_epochs=0)
    finetune_next_item(
        rows,
        task.valid,
        make_encoder(recipe["encoder"], pretrained, spec),
        config,
        freeze_encoder=spec.freeze_encoder,
        on_validation=on_validation,
        head=head,
    )
    record.update(status="done", wall_s=time.perf_counter() - started, training_rows=rows.count)
    _write(path, {**record, "best": _best(record["curve"])})


def _epochs(args: argparse.Namespace, settings: RunSettings) -> dict[str, int]:
    """The settings' epochs, or fewer for a dry run (--pretrain-epochs, --finetune-epochs)."""
    return {
        "pretrain": args.pretrain_epochs or settings.pretrain.train.epochs,
        "finetune": args.finetune_epochs or settings.finetune_train().epochs,
    }


def _best(curve: list[dict]) -> dict | None:
    """The first epoch of highest validation NDCG@10 (the loop keeps that one too)."""
    if not curve:
        return None
    best = max(curve, key=lambda row: (row["valid"]["ndcg@10"], -row["epoch"]))
    return {"epoch": best["epoch"], "valid": best["valid"], "test": best["test"]}


def _write(path: Path, record: dict) -> None:
    """Whole file or nothing: a reader never sees half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=1))
    partial.replace(path)


def launch(args: argparse.Namespace) -> dict[str, Any]:
    """Every run as a child process, ``--parallel`` at once; stop them all at ``--budget-s``."""
    runs = [(d, m, s) for d in args.datasets for m in args.methods for s in args.seeds]
    threads = max(1, (os.cpu_count() or 2) // max(1, min(args.parallel, len(runs))))
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{REPO}", "PYTHONUNBUFFERED": "1"}
    pending, running = list(runs), []
    deadline = time.perf_counter() + args.budget_s
    while (pending or running) and time.perf_counter() < deadline:
        running = [p for p in running if p.poll() is None]
        while pending and len(running) < args.parallel:
            dataset, method, seed = pending.pop(0)
            command = [
                sys.executable,
                "-m",
                "benchmarks.gpu_quality",
                *("--child", f"{dataset},{method},{seed}", "--threads", str(threads)),
                *("--data", str(args.data), "--out", str(args.out), "--device", args.device),
                *("--pretrain-epochs", str(args.pretrain_epochs)),
                *("--finetune-epochs", str(args.finetune_epochs)),
            ]
            log = open(args.out / "runs" / f"{dataset}_{method}_seed{seed}.log", "w")  # noqa: SIM115
            running.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log))
        time.sleep(2)
    for process in running:
        if process.poll() is None:
            process.kill()
    return summarise(args, runs, threads)


def summarise(args: argparse.Namespace, runs: list[tuple], threads: int) -> dict[str, Any]:
    records = []
    for dataset, method, seed in runs:
        path = args.out / "runs" / f"{dataset}_{method}_seed{seed}.json"
        record = json.loads(path.read_text()) if path.exists() else None
        if record is not None and record["status"] != "done":
            record["status"] = "capped by --budget-s"
        records.append(record or {"dataset": dataset, "method": method, "seed": seed})
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    return {
        "benchmark": "gpu_quality",
        "command": " ".join(["python3 -m benchmarks.gpu_quality", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device_facts(device),
        "epochs": {d: _epochs(args, run_settings(d)) for d in args.datasets},
        "patience": {d: run_settings(d).finetune_train().patience for d in args.datasets},
        "parallel": args.parallel,
        "threads_per_run": threads,
        "budget_s": args.budget_s,
        "settings": {d: settings_of(d) for d in args.datasets},
        "runs": records,
    }


def markdown(summary: dict[str, Any]) -> str:
    device = summary["device"]
    lines = markdown_head("gpu_quality", summary["command"], summary["date"])
    lines += [
        f"- device: {device['name']}, torch {device['torch']}, Python {device['python']}",
        *(
            f"- {dataset}: epochs at most: pre-training {epochs['pretrain']}, fine-tuning "
            f"{epochs['finetune']} (patience {summary['patience'][dataset]})"
            for dataset, epochs in summary["epochs"].items()
        ),
        f"- {summary['parallel']} runs at once, {summary['threads_per_run']} CPU threads each, "
        f"budget {summary['budget_s']} s",
        "",
        "Test metrics at the best validation NDCG@10 epoch; all items ranked, history not "
        "excluded. Runs marked capped stopped at the budget, before early stopping.",
        "",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in summary["runs"]:
        groups.setdefault((record["dataset"], record["method"]), []).append(record)
    rows = []
    for (dataset, method), records in groups.items():
        scored = [r for r in records if r.get("best")]
        capped = sum(r.get("status") != "done" for r in scored)
        cells = [
            _mean_std([r["best"]["test"][k] for r in scored]) if scored else "not run"
            for k in HEADLINE
        ]
        epochs = ", ".join(str(r["best"]["epoch"]) for r in scored) or "-"
        rows.append((dataset, method, f"{len(scored) - capped} ({capped})", *cells, epochs))
    head = ("dataset", "method", "seeds done (capped)", "HR@10", "NDCG@10", "MRR@10")
    return "\n".join(lines + markdown_table((*head, "best epochs"), rows)) + "\n"


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO, help="project with the prepared data")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--methods", nargs="+", default=["clue", "clue_zero"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu", "auto"])
    parser.add_argument("--pretrain-epochs", type=int, default=0, help="0: the settings'")
    parser.add_argument("--finetune-epochs", type=int, default=0, help="0: the settings'")
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    known = [*METHODS, *(RUNG + name for name in LADDER.rungs)]
    unknown = sorted(set(args.methods) - set(known))
    if unknown:
        parser.error(f"--methods {unknown}: expected some of {known}")
    if args.parallel < 1 or args.budget_s <= 0:
        parser.error("--parallel must be >= 1 and --budget-s > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_quality: --device cuda but torch sees no CUDA device")
    if args.child:
        if args.threads:
            torch.set_num_threads(args.threads)
        dataset, method, seed = args.child.split(",")
        device = "cpu" if args.device == "cpu" else "cuda" if args.device == "cuda" else "auto"
        run_one(dataset, method, int(seed), args, device)
        return 0
    for name in args.datasets:
        read_prepared(args.data, name)  # fails early, saying how to prepare it
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    summary = launch(args)
    (args.out / "gpu_quality.json").write_text(json.dumps(summary, indent=1))
    (args.out / "gpu_quality.md").write_text(markdown(summary))
    print(markdown(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
