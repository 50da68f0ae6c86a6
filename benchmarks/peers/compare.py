"""Side-by-side next-item training against RecBole 1.2.1's SASRec, epochs alternated in one run.

    bash benchmarks/peers/setup_recbole.sh            # once: RecBole's own venv
    .venv/bin/python -m benchmarks.peers.compare --dataset ml-100k
    .venv/bin/python -m benchmarks.peers.compare --dataset beauty --budget-s 2400

Speed on a shared machine drifts from minute to minute, so a speed claim here is a ratio of two
numbers measured side by side: both trainers run as child processes (ours in the project's venv,
RecBole in its own, see recbole_side.py / ours_side.py) and the parent lets them train in turns
(one RecBole epoch, then our epochs for about as long, and again), with the same thread count,
model size, sequence length, batch size, learning rate, dropout and the identical leave-one-out
split (to_atomic.py).
Before training, two checks: RecBole's dataloaders read back user by user give our split, and a
fixed score matrix gives the same HR/NDCG/MRR@10 through both metric codes.

Early stopping is the parent's, the same rule for both: stop after ``--patience`` epochs without
a strictly higher validation NDCG@10, or at ``--max-epochs``, or once a side's training plus
validation time passes ``--budget-s`` (RecBole is slow on CPU; a capped run says so in its
report). Patience and the epoch cap count RecBole epochs' worth of optimiser steps: our epoch
is one row per user, so it takes far fewer steps (ML-100K: 4 against RecBole's 150), and ten of
our epochs would stop ours after a few dozen updates (see ``epochs_per_recbole_epoch``).
``--recipe NAME`` trains our side with a recipe of ``benchmarks/rungs.py`` (its encoder, head,
rows and optimiser) instead of the shared SASRec shape, and ``--recbole-block default`` gives
RecBole its own SASRec defaults (FFN 256 GELU, 2 heads) instead of ours: each side trained as
its users would train it. Writes benchmarks/results/peers_<dataset>[_<name>].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks.common import REPO, write_results
from benchmarks.peers.ours_side import load_split
from benchmarks.peers.to_atomic import write_atomic
from benchmarks.rungs import RUNGS, recipe
from clue_pipeline.metrics import ranking_metrics_from_scores
from clue_pipeline.tasks.batching import flatten, window

PEERS = Path(__file__).resolve().parent
RECBOLE_PYTHON = PEERS / ".venv-recbole" / "bin" / "python"
# The targets: ours/RecBole time ratios at most these, at equal or better test NDCG@10.
TARGETS = {"epoch_ratio": 1 / 5, "eval_ratio": 1 / 4, "time_to_best_ratio": 1 / 3}
METRICS = ("hr@10", "ndcg@10", "mrr@10")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    settings = shared_settings(args)
    work = args.workdir / results_name(args)
    work.mkdir(parents=True, exist_ok=True)
    if args.from_raw:  # rewrite the results from a finished run's raw record
        return finish(json.loads((work / "raw.json").read_text()))
    split, num_items = load_split(args.dataset)
    ours_scale = epochs_per_recbole_epoch(split, settings["batch_size"], ours_rows_layout(settings))
    recbole_name = f"peer-{args.dataset}"  # RecBole treats the name "ml-100k" as its own copy
    write_atomic(split, num_items, work / "atomic", recbole_name)

    recbole = Worker(
        "recbole",
        [
            str(args.recbole_python),
            str(PEERS / "recbole_side.py"),
            "--atomic",
            str(work / "atomic"),
            "--dataset",
            recbole_name,
            "--workdir",
            str(work / "recbole"),
            "--threads",
            str(args.threads),
            "--settings",
            json.dumps(recbole_settings(settings)),
        ],
        work / "recbole.log",
    )
    ours = Worker(
        "ours",
        [
            sys.executable,
            "-m",
            "benchmarks.peers.ours_side",
            "--dataset",
            args.dataset,
            "--threads",
            str(args.threads),
            "--settings",
            json.dumps({**settings, "max_epochs": settings["max_epochs"] * ours_scale}),
        ],
        work / "ours.log",
    )
    checks = {
        "split": check_split(split, settings["max_len"], recbole, work / "recbole_split.npz"),
        "metrics": check_metrics(split, num_items, recbole, work, args.seed),
    }
    print(json.dumps(checks), flush=True)
    limits = Limits(
        args.patience, args.max_epochs, args.budget_s, args.wall_limit_s, {"ours": ours_scale}
    )
    runs = alternate({"recbole": recbole, "ours": ours}, limits, work / "progress.json")
    for name, worker in (("recbole", recbole), ("ours", ours)):
        runs[name].update(worker.request({"cmd": "test"}))
        runs[name].update(worker.request({"cmd": "quit"}))
        runs[name]["ready"] = worker.ready
        worker.close()
    raw = {
        "run_command": shlex.join(
            [".venv/bin/python", "-m", "benchmarks.peers.compare", *sys.argv[1:]]
        ),
        "dataset": args.dataset,
        "name": results_name(args),
        "users": len(split),
        "items": num_items,
        "settings": settings,
        "stopping": asdict(limits),
        "checks": checks,
        "runs": runs,
        "recbole_freeze": recbole_freeze(args.recbole_python),
    }
    (work / "raw.json").write_text(json.dumps(raw, indent=2) + "\n")
    return finish(raw)


def finish(raw: dict[str, Any]) -> int:
    payload = {**raw, "summary": summarise(raw["runs"])}
    write_results(f"peers_{raw.get('name', raw['dataset'])}", payload, markdown(payload))
    print(json.dumps(payload["summary"], indent=2))
    return 0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, help="an env with next_item_split built")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each side")
    parser.add_argument(
        "--patience", type=int, default=10, help="in RecBole epochs' worth of optimiser steps"
    )
    parser.add_argument(
        "--max-epochs", type=int, default=200, help="in RecBole epochs' worth of optimiser steps"
    )
    parser.add_argument("--budget-s", type=float, default=3600.0, help="per side, train + eval")
    parser.add_argument(
        "--wall-limit-s",
        type=float,
        default=None,
        help="whole run: no epoch starts that its side's last epoch says would end later",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument(
        "--recipe",
        choices=sorted(RUNGS),
        help="train our side with this recipe of benchmarks/rungs.py (default: the shared shape)",
    )
    parser.add_argument(
        "--recbole-block",
        choices=("matched", "default"),
        default="matched",
        help="RecBole's SASRec with our shared shape (matched) or its own defaults",
    )
    parser.add_argument("--name", help="results file suffix: peers_<dataset>_<name>")
    parser.add_argument("--recbole-python", type=Path, default=RECBOLE_PYTHON)
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / ".cache" / "peers")
    parser.add_argument(
        "--from-raw", action="store_true", help="only rewrite results from WORKDIR/DATASET/raw.json"
    )
    args = parser.parse_args(argv)
    if not args.recbole_python.exists():
        parser.error(
            f"--recbole-python {args.recbole_python}: not found; run "
            "`bash benchmarks/peers/setup_recbole.sh` first"
        )
    return args


def shared_settings(args: argparse.Namespace) -> dict[str, Any]:
    """One budget for both sides (RecBole's names are mapped in recbole_side.recbole_config)."""
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return {
        "max_len": 50,
        "hidden": 64,
        "blocks": 2,
        "heads": args.heads,
        "ffn_hidden": 64,  # ours: FFN width = d (SASRec); RecBole's inner_size set to match
        "activation": "relu",
        "dropout": 0.5,
        "lr": 1e-3,
        "batch_size": args.batch_size,
        "eval_batch_size": 4096,
        "seed": args.seed,
        "device": device,
        "max_epochs": args.max_epochs,
        "bucket_by_length": True,
        "recipe": None if args.recipe is None else {"name": args.recipe, **recipe(args.recipe)},
        "recbole_block": args.recbole_block,
    }


# RecBole 1.2.1's SASRec defaults (its sasrec.yaml) where they differ from the shared shape.
RECBOLE_SASREC_DEFAULTS = {"heads": 2, "ffn_hidden": 256, "activation": "gelu"}


def recbole_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """What RecBole's side trains: the shared shape, or its own SASRec defaults."""
    shared = {k: v for k, v in settings.items() if k not in ("recipe", "recbole_block")}
    if settings.get("recbole_block") == "default":
        return {**shared, **RECBOLE_SASREC_DEFAULTS}
    return shared


def ours_rows_layout(settings: dict[str, Any]) -> str:
    return "user" if settings.get("recipe") is None else settings["recipe"]["rows"]


def results_name(args: argparse.Namespace) -> str:
    return args.dataset if not args.name else f"{args.dataset}_{args.name}"


class Worker:
    """A child process speaking protocol.py: one JSON command in, one JSON reply out."""

    def __init__(self, name: str, command: list[str], log: Path) -> None:
        self.name = name
        self.log_path = log
        self._log = log.open("w")
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=_child_env(command),
        )
        self.ready = self._read()

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            tail = self.log_path.read_text()[-3000:]
            raise RuntimeError(
                f"{self.name} worker exited with code {self.process.returncode}; "
                f"end of {self.log_path}:\n{tail}"
            )
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name} worker: {reply['error']}")
        return reply

    def close(self) -> None:
        self.process.wait(timeout=60)
        self._log.close()


def _child_env(command: list[str]) -> dict[str, str]:
    threads = command[command.index("--threads") + 1]
    return {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "CLUE_NUM_THREADS": threads,
        "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1",
    }


def epochs_per_recbole_epoch(split: pd.DataFrame, batch_size: int, rows: str = "user") -> int:
    """How many of our epochs take as many optimiser steps as one RecBole epoch.

    RecBole trains one row per (prefix, next item); ours with user rows one row per user with a
    target at every position: the same targets, but ``~mean length`` times fewer, larger
    steps. Prefix rows are RecBole's own rows: one epoch each.
    """
    if rows == "prefix":
        return 1
    lengths = split["train"].map(len).to_numpy()
    recbole_steps = math.ceil(int(np.maximum(lengths - 1, 0).sum()) / batch_size)
    ours_steps = math.ceil(len(split) / batch_size)
    return max(1, round(recbole_steps / ours_steps))


@dataclass
class Limits:
    """The stopping rule both sides share; patience and max_epochs count RecBole epochs, and a
    side named in ``epochs_per_unit`` gets that many of its own epochs per RecBole epoch."""

    patience: int
    max_epochs: int
    budget_s: float
    wall_limit_s: float | None = None
    epochs_per_unit: dict[str, int] = field(default_factory=dict)

    def for_side(self, name: str) -> tuple[int, int]:
        """(patience, max_epochs) in the side's own epochs."""
        scale = self.epochs_per_unit.get(name, 1)
        return self.patience * scale, self.max_epochs * scale


def alternate(
    workers: dict[str, Worker], limits: Limits, progress: Path
) -> dict[str, dict[str, Any]]:
    """The sides take turns until each stops by the same rule.

    A turn is at least one epoch and goes on while the turn is shorter than the other side's
    last epoch: the slow side trains one epoch, then the fast side trains for about as long.
    Both thus see the machine's load over the same stretches of time, and the fast side is
    not held to the slow side's number of epochs. ``progress`` gets the epochs after each one.
    """
    runs = {name: {"epochs": [], "stopped_by": None} for name in workers}
    active = list(workers)
    started = time.perf_counter()
    while active:
        for name in list(active):
            others = [runs[o]["epochs"][-1] for o in workers if o != name and runs[o]["epochs"]]
            turn_target = max((_epoch_s(e) for e in others), default=0.0)
            turn = 0.0
            while name in active and (turn == 0.0 or turn < turn_target):
                reason = _stop(runs[name]["epochs"], limits, name, time.perf_counter() - started)
                if reason is None:
                    reply = workers[name].request({"cmd": "go"})
                    reason = "max_epochs" if reply.get("finished") else None
                else:
                    workers[name].request({"cmd": "stop"})
                if reason is not None:
                    runs[name]["stopped_by"] = reason
                    active.remove(name)
                    break
                runs[name]["epochs"].append(reply)
                turn += _epoch_s(reply)
                progress.write_text(json.dumps(runs, indent=1) + "\n")
                print(
                    f"{name} epoch {reply['epoch']}: train {reply['train_s']:.1f} s, eval "
                    f"{reply['eval_s']:.2f} s, valid ndcg@10 {reply['valid']['ndcg@10']:.4f}",
                    flush=True,
                )
    return runs


def _epoch_s(epoch: dict) -> float:
    return epoch["train_s"] + epoch["eval_s"]


def _stop(epochs: list[dict], limits: Limits, side: str, elapsed: float) -> str | None:
    patience, max_epochs = limits.for_side(side)
    reason = stop_reason(epochs, patience, max_epochs, limits.budget_s)
    wall = limits.wall_limit_s
    if reason is None and wall is not None and epochs and elapsed + _epoch_s(epochs[-1]) > wall:
        return "wall_limit"
    return reason


def stop_reason(epochs: list[dict], patience: int, max_epochs: int, budget_s: float) -> str | None:
    """The shared early-stopping rule; None = train another epoch."""
    if len(epochs) >= max_epochs:
        return "max_epochs"
    if sum(e["train_s"] + e["eval_s"] for e in epochs) >= budget_s:
        return "budget"
    values = [e["valid"]["ndcg@10"] for e in epochs]
    if values and len(values) - 1 - int(np.argmax(values)) >= patience:
        return "patience"
    return None


def check_split(split: pd.DataFrame, max_len: int, recbole: Worker, path: Path) -> dict:
    """RecBole's train/valid/test rows, read back from its dataloaders, against our split."""
    recbole.request({"cmd": "dump_split", "path": str(path)})
    dump = dict(np.load(path))
    return compare_split(split, dump, max_len)


def compare_split(split: pd.DataFrame, dump: dict[str, np.ndarray], max_len: int) -> dict:
    """User by user: targets and the last ``max_len`` history items of every row, per phase.

    Ours: valid = (train[-max_len:], valid_target), test = ((train + [valid])[-max_len:],
    test_target), train rows = every prefix of ``train`` with the item after it.
    """
    split = split.sort_values("user_id", kind="stable").reset_index(drop=True)
    users = split["user_id"].to_numpy(np.int64)
    flat, offsets = flatten(split["train"])
    starts, ends = offsets[:-1], offsets[1:]
    valid = split["valid_target"].to_numpy(np.int64)
    with_valid = np.insert(flat, ends, valid)
    valid_offsets = offsets + np.arange(len(offsets))
    ours = {
        "valid": (users, valid, window(flat, starts, ends, max_len)),
        "test": (
            users,
            split["test_target"].to_numpy(np.int64),
            window(with_valid, valid_offsets[:-1], valid_offsets[1:], max_len),
        ),
    }
    lengths = ends - starts
    rows = lengths - 1  # prefixes of length 1..len-1, each predicting the next item
    row_user = np.repeat(np.arange(len(users)), rows)
    row_end = (
        np.repeat(starts, rows)
        + (np.arange(rows.sum()) - np.repeat(np.cumsum(rows) - rows, rows))
        + 1
    )
    ours["train"] = (
        users[row_user],
        flat[row_end],
        window(flat, starts[row_user], row_end, max_len),
    )
    report = {}
    for phase, (our_users, our_targets, our_history) in ours.items():
        order = np.argsort(dump[f"{phase}_user"], kind="stable")
        length = dump[f"{phase}_length"]
        h_off = np.concatenate([[0], np.cumsum(length)])
        their_history = window(dump[f"{phase}_history"], h_off[:-1], h_off[1:], max_len)[order]
        same_rows = len(order) == len(our_users)
        if not same_rows:
            report[phase] = {
                "rows_ours": len(our_users),
                "rows_recbole": len(order),
                "equal": False,
            }
            continue
        user_ok = dump[f"{phase}_user"][order] == our_users
        target_ok = dump[f"{phase}_target"][order] == our_targets
        history_ok = (their_history == our_history).all(axis=1)
        report[phase] = {
            "rows": len(our_users),
            "users_differ": int((~user_ok).sum()),
            "targets_differ": int((~target_ok).sum()),
            "histories_differ": int((~history_ok).sum()),
            "equal": bool(user_ok.all() and target_ok.all() and history_ok.all()),
        }
    report["equal"] = all(r["equal"] for r in report.values())
    return report


def check_metrics(
    split: pd.DataFrame, num_items: int, recbole: Worker, work: Path, seed: int, users: int = 1000
) -> dict:
    """The same fixed scores through our metric code and RecBole's collector + evaluator.

    Random scores with a random boost on each target, so target ranks spread over 0..N-1 and
    a good share lands in the top 10 (pure noise would test almost nothing).
    """
    scores, targets = fixed_scores(split, num_items, seed, users)
    np.save(work / "check_scores.npy", scores)
    np.save(work / "check_targets.npy", targets)
    theirs = recbole.request(
        {
            "cmd": "metric_check",
            "scores": str(work / "check_scores.npy"),
            "targets": str(work / "check_targets.npy"),
        }
    )["metrics"]
    ours = project_scores_metrics(scores, targets)
    diff = max(abs(ours[m] - theirs[m]) for m in METRICS)
    return {"users": len(targets), "ours": ours, "recbole": theirs, "max_abs_diff": diff}


def fixed_scores(
    split: pd.DataFrame, num_items: int, seed: int, users: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = split["valid_target"].to_numpy(np.int64)[:users] - 1
    scores = rng.standard_normal((len(targets), num_items)).astype(np.float32)
    scores[np.arange(len(targets)), targets] += rng.uniform(0, 5, len(targets)).astype(np.float32)
    return scores, targets


def project_scores_metrics(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    m = ranking_metrics_from_scores(torch.from_numpy(scores), torch.from_numpy(targets), ks=(10,))
    return {"hr@10": m["recall@10"], "ndcg@10": m["ndcg@10"], "mrr@10": m["mrr@10"]}


def summarise(runs: dict[str, dict]) -> dict[str, Any]:
    """Medians, bests, tests, ratios ours/RecBole and the time to RecBole's best validation."""
    side = {}
    for name, run in runs.items():
        epochs = run["epochs"]
        best = max(range(len(epochs)), key=lambda i: (epochs[i]["valid"]["ndcg@10"], -i))
        side[name] = {
            "epochs_run": len(epochs),
            "stopped_by": run["stopped_by"],
            "median_epoch_train_s": statistics.median(e["train_s"] for e in epochs),
            "median_eval_s": statistics.median(e["eval_s"] for e in epochs),
            "test_eval_s": run["test_eval_s"],
            "total_train_eval_s": sum(e["train_s"] + e["eval_s"] for e in epochs),
            "peak_rss_gib": run["peak_rss_gib"],
            "best_epoch": best,
            "best_valid": epochs[best]["valid"],
            "test": run["test"],
        }
    target = side["recbole"]["best_valid"]["ndcg@10"]
    for name, run in runs.items():
        side[name]["time_to_recbole_best_s"] = time_to_reach(run["epochs"], target)
    ours, theirs = side["ours"], side["recbole"]
    ratios = {
        "epoch_ratio": ours["median_epoch_train_s"] / theirs["median_epoch_train_s"],
        "eval_ratio": ours["median_eval_s"] / theirs["median_eval_s"],
        "time_to_best_ratio": (
            None
            if ours["time_to_recbole_best_s"] is None
            else ours["time_to_recbole_best_s"] / theirs["time_to_recbole_best_s"]
        ),
        "test_ndcg_ratio": ours["test"]["ndcg@10"] / max(theirs["test"]["ndcg@10"], 1e-12),
    }
    quality_ok = ours["test"]["ndcg@10"] >= theirs["test"]["ndcg@10"]
    met = {
        key: (ratios[key] is not None and ratios[key] <= limit and quality_ok)
        for key, limit in TARGETS.items()
    }
    return {
        "recbole_best_valid_ndcg@10": target,
        "sides": side,
        "ratios_ours_over_recbole": ratios,
        "targets": TARGETS,
        "test_ndcg_ours_ge_recbole": quality_ok,
        "targets_met": met,
    }


def time_to_reach(epochs: list[dict], value: float) -> float | None:
    """Wall seconds of training + validation until validation NDCG@10 first reaches ``value``."""
    elapsed = np.cumsum([e["train_s"] + e["eval_s"] for e in epochs])
    reached = [e["valid"]["ndcg@10"] >= value for e in epochs]
    return float(elapsed[reached.index(True)]) if any(reached) else None


def recbole_freeze(python: Path) -> list[str]:
    result = subprocess.run(
        [str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=False
    )
    return result.stdout.split()


def markdown(payload: dict[str, Any]) -> str:
    s = payload["summary"]
    ours, theirs = s["sides"]["ours"], s["sides"]["recbole"]
    r = s["ratios_ours_over_recbole"]
    st = payload["settings"]
    metric_check = payload["checks"]["metrics"]
    versions = {
        line.split("==")[0]: line.split("==")[1]
        for line in payload["recbole_freeze"]
        if "==" in line and line.split("==")[0] in ("recbole", "torch", "numpy", "pandas")
    }

    def fmt(x, spec=".1f"):
        return "not reached" if x is None else format(x, spec)

    lines = [
        f"Measured by `{payload.get('run_command', '?')}` (the command above may only have "
        "rewritten this page from that run's raw record).",
        "",
        f"Dataset `{payload['dataset']}`: {payload['users']} users, {payload['items']} items, "
        "the project's leave-one-out split (train = items[:-2], valid = items[-2], test = "
        "items[-1]) given to RecBole as atomic files (benchmarks/peers/to_atomic.py).",
        "",
        *_sides_text(payload, versions),
        "",
        f"Stopping (same rule both sides): {payload['stopping']['patience']} epochs without a "
        f"higher validation NDCG@10, at most {payload['stopping']['max_epochs']} epochs, "
        f"{_scale_note(payload['stopping'])}a "
        f"training + validation budget of {payload['stopping']['budget_s']:.0f} s per side, or "
        "no new epoch where the side's last epoch says it would end after the run's wall limit "
        f"of {payload['stopping']['wall_limit_s'] or 'none'} s. "
        f"RecBole stopped by `{theirs['stopped_by']}` after {theirs['epochs_run']} epochs; ours "
        f"by `{ours['stopped_by']}` after {ours['epochs_run']} epochs.",
    ]
    if theirs["stopped_by"] != "patience":
        lines += [
            "",
            f"**RecBole's run was capped ({theirs['stopped_by']}), not converged**: its best "
            "below is the best within the cap (see its validation curve), not RecBole's "
            "converged quality.",
        ]
    lines += [
        "",
        "## Checks before training",
        "",
        f"- split: RecBole's train/valid/test rows read back from its dataloaders equal ours "
        f"user by user (targets and last {st['max_len']} history items): "
        f"**{payload['checks']['split']['equal']}** "
        + ", ".join(
            f"{p}: {payload['checks']['split'][p].get('rows', '?')} rows"
            for p in ("train", "valid", "test")
        ),
        f"- metrics: one fixed score matrix ({metric_check['users']} users x all "
        "items) through both metric codes: max |difference| of HR/NDCG/MRR@10 = "
        f"{metric_check['max_abs_diff']:.2e} (HR / NDCG / MRR@10: ours "
        f"{_m(metric_check['ours'])}; RecBole {_m(metric_check['recbole'])})",
        "",
        "## Results",
        "",
        "| | RecBole SASRec | ours | ours / RecBole | target |",
        "| --- | --- | --- | --- | --- |",
        f"| median training epoch (s) | {theirs['median_epoch_train_s']:.1f} | "
        f"{ours['median_epoch_train_s']:.1f} | {r['epoch_ratio']:.3f} | <= 0.2 |",
        f"| median full-ranking validation (s) | {theirs['median_eval_s']:.2f} | "
        f"{ours['median_eval_s']:.2f} | {r['eval_ratio']:.3f} | <= 0.25 |",
        f"| test evaluation (s) | {theirs['test_eval_s']:.2f} | {ours['test_eval_s']:.2f} | "
        f"{ours['test_eval_s'] / theirs['test_eval_s']:.3f} | |",
        f"| time to RecBole's best valid NDCG@10 ({s['recbole_best_valid_ndcg@10']:.4f}) (s) | "
        f"{fmt(theirs['time_to_recbole_best_s'])} | {fmt(ours['time_to_recbole_best_s'])} | "
        f"{fmt(r['time_to_best_ratio'], '.3f')} | <= 0.333 |",
        f"| peak RSS (GiB) | {theirs['peak_rss_gib']:.2f} | {ours['peak_rss_gib']:.2f} | "
        f"{ours['peak_rss_gib'] / theirs['peak_rss_gib']:.2f} | |",
        f"| best epoch | {theirs['best_epoch']} | {ours['best_epoch']} | | |",
        f"| best valid HR@10 / NDCG@10 | {_hn(theirs['best_valid'])} | {_hn(ours['best_valid'])} "
        "| | |",
        f"| test HR@10 / NDCG@10 / MRR@10 | {_m(theirs['test'])} | {_m(ours['test'])} | "
        f"{r['test_ndcg_ratio']:.3f} (NDCG) | >= 1 |",
        "",
        "Targets met (ratio within target and test NDCG@10 at least RecBole's): "
        + ", ".join(f"{k} **{v}**" for k, v in s["targets_met"].items()),
        "",
        "## Validation curves (alternating epochs)",
        "",
        "| epoch | RecBole train s | RecBole eval s | RecBole NDCG@10 | ours train s | "
        "ours eval s | ours NDCG@10 | load average (1 min) at RecBole / ours epoch start |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    re, oe = payload["runs"]["recbole"]["epochs"], payload["runs"]["ours"]["epochs"]
    for i in range(max(len(re), len(oe))):
        a = re[i] if i < len(re) else None
        b = oe[i] if i < len(oe) else None
        lines.append(
            f"| {i} | {_cell(a, 'train_s')} | {_cell(a, 'eval_s', '.2f')} | {_ndcg(a)} | "
            f"{_cell(b, 'train_s')} | {_cell(b, 'eval_s', '.2f')} | {_ndcg(b)} | "
            f"{a['load_average'][0] if a else ''} / {b['load_average'][0] if b else ''} |"
        )
    return "\n".join(lines)


def _sides_text(payload: dict[str, Any], versions: dict[str, str]) -> list[str]:
    """What each side trained and what an epoch is on each: the shared SASRec shape, or our
    ladder recipe against RecBole's matched or default block."""
    st = payload["settings"]
    recbole = recbole_settings(st)
    threads = payload["runs"]["ours"]["ready"]["threads"]
    common = (
        f"Adam, CE over all items, seed {st['seed']}, device {st['device']}, {threads} torch "
        "thread(s) each; full-ranking evaluation without history exclusion (RecBole does not "
        "exclude history for sequential models either). The sides take turns in one run: one "
        "RecBole epoch, then our epochs for about as long, and again. Ours trains from fresh "
        "weights (CLUE-Zero). "
        f"RecBole {versions.get('recbole', '?')}, torch {versions.get('torch', '?')}, numpy "
        f"{versions.get('numpy', '?')}, pandas {versions.get('pandas', '?')} in its own venv."
    )
    shape = (
        f"len {recbole['max_len']}, d={recbole['hidden']}, {recbole['blocks']} blocks, "
        f"{recbole['heads']} heads, FFN {recbole['ffn_hidden']} {recbole.get('activation', 'relu')}, "
        f"dropout {recbole['dropout']} (hidden and attention), lr {recbole['lr']}, batch "
        f"{recbole['batch_size']}"
    )
    rows = (
        f"RecBole runs one row per target ({theirs_rows(payload)} rows, each padded to len "
        f"{st['max_len']})"
    )
    ours_recipe = st.get("recipe")
    if ours_recipe is None:
        return [
            f"Both sides: {shape}; {common}",
            "",
            f"An epoch covers the same (prefix, next item) targets on both sides, but not the "
            f"same work: {rows}; ours one row per user ({ours_rows(payload)} rows) with a target "
            "at every position, in batches of similar length. Ours thus takes fewer, larger "
            "optimiser steps per epoch and needs more epochs; the time to RecBole's best "
            "validation NDCG@10 is the measure that does not depend on what an epoch is.",
        ]
    block = "its own SASRec defaults" if st["recbole_block"] == "default" else "our shared shape"
    return [
        f"RecBole's SASRec with {block}: {shape}. Ours: the recipe `{ours_recipe['name']}` of "
        f"`benchmarks/rungs.py` (encoder {json.dumps(ours_recipe['encoder'])}, head "
        f"{json.dumps(ours_recipe['head'])}, optimiser {json.dumps(ours_recipe['train'])}). "
        + common,
        "",
        f"An epoch: {rows}; ours {ours_recipe['rows']} rows ({ours_rows(payload)}), in "
        "batches of similar length.",
    ]


def _scale_note(stopping: dict) -> str:
    """Records made before the rule counted optimiser steps have no ``epochs_per_unit``."""
    scale = stopping.get("epochs_per_unit", {}).get("ours", 1)
    if scale == 1:
        return ""
    return (
        f"where an epoch means one RecBole epoch's worth of optimiser steps ({scale} of our "
        f"epochs, so ours stops after {stopping['patience'] * scale} epochs without a gain), "
    )


def theirs_rows(payload: dict) -> int:
    return payload["runs"]["recbole"]["ready"]["train_rows"]


def ours_rows(payload: dict) -> int:
    return payload["runs"]["ours"]["ready"]["train_rows"]


def _m(metrics: dict) -> str:
    return " / ".join(f"{metrics[k]:.4f}" for k in METRICS)


def _hn(metrics: dict) -> str:
    return f"{metrics['hr@10']:.4f} / {metrics['ndcg@10']:.4f}"


def _cell(epoch: dict | None, key: str, spec: str = ".1f") -> str:
    return "" if epoch is None else format(epoch[key], spec)


def _ndcg(epoch: dict | None) -> str:
    return "" if epoch is None else f"{epoch['valid']['ndcg@10']:.4f}"


if __name__ == "__main__":
    sys.exit(main())
