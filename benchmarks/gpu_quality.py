"""Next-item quality of every grid method on the Amazon S3-Rec files, run on a GPU machine.

    PYTHONPATH=src python3 -m benchmarks.gpu_quality --data DIR --out OUT \\
        [--datasets beauty sports] [--methods clue clue_zero mip gru cnn ...] [--seeds 0 1 2] \\
        [--parallel 8] [--budget-s 420] [--device cuda|cpu|auto]

Why: on 2 CPU cores a Beauty cell of the quality grid (``benchmarks/quality.py``) takes about
an hour, so its three seeds per method and Sports take days. A lent GPU machine has PyTorch
but not Kedro, so this runs the steps of those cells without it, with the run-environments'
settings (``SETTINGS``, checked against ``conf/beauty`` and ``conf/sports`` by the tests):

- the split is the one the run-environment prepared (``kedro run --env <dataset> --pipelines
  ingest,sequences`` where Kedro runs; ``--data`` is the project folder holding it, as for
  ``benchmarks/gpu_check.py``);
- CLUE (SimSiam over dropout views) and masked item prediction pre-train through
  ``tasks.pretraining.run_job``, for the methods that start from them (``INIT``);
- every method (``SETTINGS["methods"]``: CLUE, CLUE-Zero, masked-item, GRU, CNN and Caser backbones,
  the frozen-encoder probes) fine-tunes through ``tasks.finetuning.finetune_next_item`` on one
  row per prefix (``finetune.next_item_rows: prefix``), early stopping on validation NDCG@10;
- every epoch also scores the test items (all items ranked, history not excluded), so a run
  cut by ``--budget-s`` still reports the test metrics at its best validation epoch so far,
  marked as capped.

``--methods rung-<name>`` trains CLUE-Zero with a rung of the recipe ladder instead
(``conf/recipes/ladder.yml``: its encoder, read-out, rows and optimiser settings, the
ladder's patience), so the rungs the CPU ladder has not reached can run in parallel on a lent GPU:
``--methods rung-rb_li_smoothing rung-rb_li_contrast rung-filter_backbone ...``.

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a bare copy of the repository, not installed
    sys.path.insert(0, str(REPO / "src"))

from benchmarks.gpu_check import device_facts  # noqa: E402
from clue_pipeline.augment import validate_view_policy  # noqa: E402
from clue_pipeline.experiments.prepared import read_prepared  # noqa: E402
from clue_pipeline.experiments.recipes import load_ladder  # noqa: E402
from clue_pipeline.models.encoders import EncoderConfig  # noqa: E402
from clue_pipeline.models.heads import NextItemModel  # noqa: E402
from clue_pipeline.models.objectives import ObjectiveConfig  # noqa: E402
from clue_pipeline.tasks.finetuning import (  # noqa: E402
    MethodSpec,
    NextItemHead,
    evaluate_next_item,
    finetune_next_item,
    make_encoder,
)
from clue_pipeline.tasks.pretraining import (  # noqa: E402
    ClueSettings,
    MaskedItemSettings,
    PretrainJob,
    SimSiamConfig,
    run_job,
)
from clue_pipeline.training.loop import TrainConfig  # noqa: E402

DATASETS = ("beauty", "sports")
LADDER = load_ladder()  # conf/recipes/ladder.yml
PATIENCE, MAX_EPOCHS = LADDER.patience, LADDER.max_epochs
# conf/base merged with conf/beauty and conf/sports (the same for both); see the tests.
SETTINGS: dict[str, Any] = {
    "min_seq_len": 5,
    "encoder": {
        "max_len": 50,
        "hidden": 64,
        "blocks": 2,
        "heads": 2,
        "dropout": 0.5,
        # the recipe ladder's best block on Beauty (benchmarks/results/recipe_ladder.md)
        "norm": "post",
        "embedding_norm": True,
        "attn_output_dropout": True,
        "ffn_hidden": 256,
        "activation": "gelu",
        "linear_init_std": 0.02,
    },
    "next_item": {"readout": "last_item", "label_smoothing": 0.0, "softmax_matmul": "float32"},
    "views": ["dropout"],
    "simsiam": {"proj_dim": 256, "pred_dim": 64},
    # pretrain.objective: the default (SimSiam + 1.0 x next items), so a GPU `clue` cell is
    # the grid's `clue`, not the paper's SimSiam alone (`clue_simsiam`)
    "objective": {"name": "simsiam", "next_item_weight": 1.0, "masked_item_weight": 0.0},
    "pretrain": {"epochs": 20, "batch_size": 256, "lr": 1e-3, "grad_clip": 5.0},
    "finetune": {
        "epochs": 100,
        "batch_size": 256,
        "lr": 1e-3,
        "grad_clip": 5.0,
        "patience": 10,
        "monitor": "ndcg@10",
    },
    "next_item_rows": "prefix",
    # finetune.methods, finetune.overrides and pretrain.masked_item of conf/base
    "methods": {
        "clue": {"backbone": "transformer", "freeze_encoder": False},
        "clue_zero": {"backbone": "transformer", "freeze_encoder": False},
        "mip": {"backbone": "transformer", "freeze_encoder": False},
        "gru": {"backbone": "gru", "freeze_encoder": False},
        "cnn": {"backbone": "cnn", "freeze_encoder": False},
        "caser": {"backbone": "caser", "freeze_encoder": False},
        "clue_probe": {"backbone": "transformer", "freeze_encoder": True},
        "mip_probe": {"backbone": "transformer", "freeze_encoder": True},
    },
    "overrides": {"clue_probe": {"lr": 0.01}, "mip_probe": {"lr": 0.01}},
    "mask_ratio": 0.2,
}
# method -> the pre-training it starts from (clue_pipeline.experiments.cells.INIT)
INIT = {"clue": "clue", "clue_probe": "clue", "mip": "mip", "mip_probe": "mip"}
HEADLINE = ("recall@10", "ndcg@10", "mrr@10")
RUNG = (
    "rung-"  # --methods rung-<name>: CLUE-Zero with a recipe-ladder rung (conf/recipes/ladder.yml)
)


def method_recipe(method: str) -> dict[str, Any]:
    """Encoder, head, training rows and fine-tuning settings of a grid method or a ladder rung.

    A rung trains as the CPU ladder does (the ladder's patience, at most its ``max_epochs``), so its GPU runs compare with the ladder's cells.
    """
    if not method.startswith(RUNG):
        return {
            "encoder": SETTINGS["encoder"],
            "head": SETTINGS["next_item"],
            "rows": SETTINGS["next_item_rows"],
            "train": {**SETTINGS["finetune"], **SETTINGS["overrides"].get(method, {})},
            "spec": MethodSpec(method, **SETTINGS["methods"][method]),
        }
    rung = LADDER.recipe(method.removeprefix(RUNG))
    return {
        "encoder": {k: v for k, v in rung["encoder"].items() if k != "kind"},
        "head": rung["head"],
        "rows": rung["rows"],
        "train": {
            **SETTINGS["finetune"],
            "patience": PATIENCE,
            "epochs": MAX_EPOCHS,
            **rung["train"],
        },
        "spec": MethodSpec("clue_zero", backbone=rung["encoder"]["kind"]),
    }


def run_one(dataset: str, method: str, seed: int, args: argparse.Namespace, device: str) -> None:
    """One (dataset, method, seed): pre-train (if the method starts from pre-trained weights),
    fine-tune, score the test items every epoch; the JSON is rewritten after every epoch."""
    started = time.perf_counter()
    out, epochs = args.out, _epochs(args)
    settings = method_recipe(method)
    data = read_prepared(args.data, dataset)
    task = data.task(settings["encoder"]["max_len"])
    encoder = EncoderConfig(num_items=data.num_items, **settings["encoder"])
    record: dict[str, Any] = {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "users": data.num_users,
        "items": data.num_items,
        "status": "running",
        "curve": [],
        "recipe": {k: v for k, v in settings.items() if k != "spec"},
    }
    path = out / "runs" / f"{dataset}_{method}_seed{seed}.json"
    pretrained = None
    if method in INIT:
        job = PretrainJob(
            method=INIT[method],
            tokens=task.valid.tokens,
            encoder=encoder,
            train=TrainConfig(
                **{**SETTINGS["pretrain"], "epochs": epochs["pretrain"]},
                seed=seed,
                device=device,
                bucket_by_length=True,
            ),
            settings=ClueSettings(
                validate_view_policy({"strategies": SETTINGS["views"]}),
                SimSiamConfig(**SETTINGS["simsiam"]),
                ObjectiveConfig(**SETTINGS["objective"]),
            )
            if INIT[method] == "clue"
            else MaskedItemSettings(SETTINGS["mask_ratio"]),
        )
        pretrained, pretrain_result = run_job(job)
        record["pretrain_s"] = time.perf_counter() - started
        record["pretrain_last_loss"] = pretrain_result.history[-1]["loss"]
    spec = settings["spec"]
    model_encoder = make_encoder(encoder, pretrained, spec)
    rows = task.training_rows(settings["rows"])
    valid, test = task.valid, task.test
    clock = {"epoch": time.perf_counter()}

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

    train = dict(settings["train"])
    if args.finetune_epochs:  # a dry run caps every method and rung
        train["epochs"] = args.finetune_epochs
    config = TrainConfig(**train, seed=seed, device=device, bucket_by_length=True)
    finetune_next_item(
        rows,
        valid,
        model_encoder,
        config,
        freeze_encoder=spec.freeze_encoder,
        on_validation=on_validation,
        head=NextItemHead(**settings["head"]),
    )
    record.update(status="done", wall_s=time.perf_counter() - started, training_rows=rows.count)
    _write(path, {**record, "best": _best(record["curve"])})


def _epochs(args: argparse.Namespace) -> dict[str, int]:
    """The settings' epochs, or fewer for a dry run (--pretrain-epochs, --finetune-epochs)."""
    return {
        "pretrain": args.pretrain_epochs or SETTINGS["pretrain"]["epochs"],
        "finetune": args.finetune_epochs or SETTINGS["finetune"]["epochs"],
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
        "epochs": _epochs(args),
        "parallel": args.parallel,
        "threads_per_run": threads,
        "budget_s": args.budget_s,
        "settings": SETTINGS,
        "runs": records,
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# gpu_quality",
        "",
        f"- command: `{summary['command']}`",
        f"- date: {summary['date']}",
        f"- device: {summary['device']['name']}, torch {summary['device']['torch']}, "
        f"Python {summary['device']['python']}",
        f"- epochs at most: pre-training {summary['epochs']['pretrain']}, fine-tuning "
        f"{summary['epochs']['finetune']} (patience {SETTINGS['finetune']['patience']})",
        f"- {summary['parallel']} runs at once, {summary['threads_per_run']} CPU threads each, "
        f"budget {summary['budget_s']} s",
        "",
        "Test metrics at the best validation NDCG@10 epoch; all items ranked, history not "
        "excluded. Runs marked capped stopped at the budget, before early stopping.",
        "",
        "| dataset | method | seeds done (capped) | HR@10 | NDCG@10 | MRR@10 | best epochs |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in summary["runs"]:
        groups.setdefault((record["dataset"], record["method"]), []).append(record)
    for (dataset, method), records in groups.items():
        scored = [r for r in records if r.get("best")]
        capped = sum(r.get("status") != "done" for r in scored)
        cells = [
            _mean_std([r["best"]["test"][k] for r in scored]) if scored else "not run"
            for k in HEADLINE
        ]
        epochs = ", ".join(str(r["best"]["epoch"]) for r in scored) or "-"
        lines.append(
            f"| {dataset} | {method} | {len(scored) - capped} ({capped}) | "
            + " | ".join(cells)
            + f" | {epochs} |"
        )
    return "\n".join(lines) + "\n"


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
    known = [*SETTINGS["methods"], *(RUNG + name for name in LADDER.rungs)]
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
