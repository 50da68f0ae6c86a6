"""The GPU path end to end on Amazon Beauty: CLUE pre-training, next-item fine-tuning and one
full-ranking evaluation, each for a fixed number of steps, timed on the given device.

    bash benchmarks/gpu_check.sh [--device cuda|cpu|auto] [--steps N] [--data PROJECT]
        [--dataset beauty] OUT_DIR

Writes ``OUT_DIR/gpu_check.{json,md}`` (docs/performance.md, "GPU check"). A GPU machine often
lacks the pipelines' packages (MLflow, Optuna...), so this imports only the torch-side modules,
reads the run-environment's parameters with Kedro's config loader (no session) and the dataset
as that environment prepared it (``clue_pipeline.experiments.prepared``; bring
``data/03_primary/<dataset>/`` and ``data/05_model_input/<dataset>/`` along). Training goes
through the project's one loop with the run-environment's settings; the check sets only the
steps, batch, seed, device and precision. Each phase first runs untimed warm-up steps on a copy
of its model, so sequences/s is the steady rate. Evaluation scores in fp32 (bf16 scores tie,
benchmarks/results/eval_speed.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a bare copy of the repository, not installed
    sys.path.insert(0, str(REPO / "src"))

from benchmarks.common import RunSettings, markdown_head, markdown_table, run_settings  # noqa: E402
from clue_pipeline.config import NextItemHead, TrainConfig  # noqa: E402
from clue_pipeline.experiments.prepared import read_prepared  # noqa: E402
from clue_pipeline.metrics import DEFAULT_KS, ranking_metrics  # noqa: E402
from clue_pipeline.models.heads import NextItemModel  # noqa: E402
from clue_pipeline.tasks.finetuning import next_item_model  # noqa: E402
from clue_pipeline.tasks.pretraining import (  # noqa: E402
    PretrainJob,
    build_pretraining,
    heads_present,
    mixed_batches,
)
from clue_pipeline.tasks.task_data import NextItemData  # noqa: E402
from clue_pipeline.training.length_batching import trim_padding  # noqa: E402
from clue_pipeline.training.loop import fit, take  # noqa: E402

RESULT_NAME = "gpu_check"
MIB = 2**20
MAX_WARMUP_STEPS = 20


@dataclass
class CheckConfig:
    """The check's own knobs; everything else is the run-environment's (``conf/<dataset>``)."""

    device: str = "cuda"
    steps: int = 2000
    warmup_steps: int | None = None  # None: a tenth of ``steps``, at most MAX_WARMUP_STEPS
    batch_size: int = 256
    eval_batch_size: int = 1024
    precision: str = "bf16"  # bf16 autocast on CUDA; CPU always trains in fp32
    max_len: int | None = None  # None: the run-environment's
    lr: float | None = None  # None: the run-environment's
    seed: int = 42

    def __post_init__(self) -> None:
        _require(self.device in ("cuda", "cpu", "auto"), "--device", self.device, "cuda|cpu|auto")
        _require(self.steps >= 1, "--steps", self.steps, "an integer >= 1")
        _require((self.warmup_steps or 0) >= 0, "--warmup-steps", self.warmup_steps, ">= 0")
        _require(self.batch_size >= 2, "--batch-size", self.batch_size, "an integer >= 2")
        _require(self.precision in ("bf16", "fp32"), "--precision", self.precision, "bf16|fp32")

    @property
    def warmup(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(MAX_WARMUP_STEPS, self.steps // 10)

    def changes(self, device: torch.device) -> dict[str, Any]:
        """The training fields this check sets: one pass over its fixed steps."""
        changes = {"epochs": 1, "batch_size": self.batch_size, "seed": self.seed}
        changes.update(device=device.type, bf16=self.precision == "bf16")
        changes.update(patience=None, monitor=None)  # no validation: a fixed number of steps
        return {**changes, **({"lr": self.lr} if self.lr else {})}


@dataclass
class CheckData:
    """The prepared dataset's model inputs, as the pipeline builds them."""

    num_users: int
    num_items: int
    task: NextItemData  # fine-tuning rows, validation and test inputs


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    config = CheckConfig(
        **{k: v for k, v in vars(args).items() if k not in ("out", "data", "dataset", "threads")}
    )
    device = _device(config.device)
    threads = args.threads or int(os.environ.get("CLUE_NUM_THREADS", "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    settings = run_settings(args.dataset)
    data = prepare(args.data, args.dataset, config.max_len or settings.params["encoder"]["max_len"])
    prepare_s = time.perf_counter() - started
    print(f"{args.dataset}: {data.num_users} users, {data.num_items} items; device {device}")
    record = run_check(data, settings, config, device)
    record["data"] = {
        "dataset": args.dataset,
        "users": data.num_users,
        "items": data.num_items,
        "prepare_s": prepare_s,
    }
    record["total_wall_s"] = time.perf_counter() - started
    record["command"] = os.environ.get("CLUE_GPU_CHECK_COMMAND") or _command(argv)
    json_path, md_path = write_outputs(args.out, record)
    print(f"wrote {json_path} and {md_path}", flush=True)
    failures = problems(record)
    for failure in failures:
        print(f"gpu_check: {failure}", file=sys.stderr)
    return 1 if failures else 0


# ---------------------------------------------------------------- data


def prepare(project: Path, dataset: str, max_len: int) -> CheckData:
    """The dataset's split and item index as its run-environment prepared them, as model inputs
    (``clue_pipeline.experiments.prepared``); a missing preparation says how to make it."""
    try:
        data = read_prepared(project, dataset)
    except FileNotFoundError as error:
        raise SystemExit(
            f"gpu_check: {error}. On a machine without Kedro, prepare it where Kedro runs and "
            "bring data/03_primary/<dataset>/ and data/05_model_input/<dataset>/ along "
            "(git-ignored folders that travel with the working tree), then pass --data there."
        ) from error
    return CheckData(data.num_users, data.num_items, data.task(max_len))


# ---------------------------------------------------------------- the check


def run_check(
    data: CheckData, settings: RunSettings, config: CheckConfig, device: torch.device
) -> dict[str, Any]:
    """Pre-train, fine-tune and evaluate; every phase timed and its peak memory taken."""
    encoder = settings.encoder(data.num_items, max_len=data.task.max_len)
    pretrain_train = settings.pretrain_train(**config.changes(device))
    tokens = data.task.valid.tokens  # (U, max_len + 1): each user's training part, then [UR]
    job = PretrainJob("clue", tokens, encoder, pretrain_train, settings.clue())
    job = mixed_batches(heads_present(job))  # as run_job trains CLUE
    clue = build_pretraining(job)  # seeded; the encoder is built first
    pretrain = train_phase(clue.model, clue.dataset, clue.step_fn, job.train, device, config)
    head: NextItemHead = settings.finetune.next_item
    model = next_item_model(clue.model.encoder, head)
    rows = data.task.training_rows(head.rows)
    finetune_train = settings.finetune_train(**config.changes(device))
    finetune = train_phase(
        model, rows.dataset, rows.step, finetune_train, device, config, rows.lengths
    )
    metrics, evaluate = evaluate_phase(model, data, config.eval_batch_size, device)
    autocast = config.precision == "bf16" and device.type == "cuda"
    return {
        "check": RESULT_NAME,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device_facts(device),
        "precision": "bf16 autocast" if autocast else "fp32",
        "steps": config.steps,
        "warmup_steps": config.warmup,
        "batch_size": config.batch_size,
        "settings": {
            "check": asdict(config),
            "encoder": asdict(encoder),
            "pretrain": {"train": asdict(job.train), **asdict(job.settings)},
            "finetune": {"train": asdict(finetune_train), "next_item": asdict(head)},
        },
        "phases": {"pretrain": pretrain, "finetune": finetune, "evaluate": evaluate},
        "peak_gpu_memory_mib": _max_peak([pretrain, finetune, evaluate]),
        "metrics": metrics,
    }


def train_phase(
    model: torch.nn.Module,
    dataset: tuple[torch.Tensor, ...],
    step_fn: Callable,
    train: TrainConfig,
    device: torch.device,
    config: CheckConfig,
    lengths: torch.Tensor | None = None,
) -> dict[str, Any]:
    """``config.steps`` optimiser steps through ``fit``, after untimed warm-up steps on a copy;
    ``lengths`` (prefix rows) bucket rows that are not token matrices."""
    if config.warmup:
        warm, warm_lengths = _steps_of(dataset, lengths, config.warmup, config)
        fit(copy.deepcopy(model), warm, step_fn, train, lengths=warm_lengths)
    rows_of_steps, lengths_of_steps = _steps_of(dataset, lengths, config.steps, config)
    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    result = fit(model, rows_of_steps, step_fn, train, lengths=lengths_of_steps)
    _sync(device)
    seconds = time.perf_counter() - start
    losses = result.step_losses
    return {
        "steps": result.steps,
        "wall_s": seconds,
        "sequences_per_s": result.steps * config.batch_size / seconds,
        "steps_per_s": result.steps / seconds,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "peak_gpu_memory_mib": _peak(device),
    }


def _steps_of(
    dataset: tuple[torch.Tensor, ...], lengths: torch.Tensor | None, steps: int, config: CheckConfig
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
    """Exactly ``steps`` batches of rows (and their lengths): seeded passes over the rows, one
    after another. ``fit`` trains whole epochs; an epoch over this many rows is the fixed
    number of steps."""
    rows = steps * config.batch_size
    count = len(dataset[0])
    generator = torch.Generator().manual_seed(config.seed)
    passes = [torch.randperm(count, generator=generator) for _ in range(math.ceil(rows / count))]
    index = torch.cat(passes)[:rows]
    return take(dataset, index), None if lengths is None else lengths[index]


@torch.no_grad()
def evaluate_phase(
    model: NextItemModel, data: CheckData, batch_size: int, device: torch.device
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Full ranking of all items for every user's test item, from fp32 query vectors (the
    head's read-out: [UR] or the last item's state).

    Users go through the encoder sorted by length, each batch cut to its longest row (the
    pipeline's evaluation does the same), then back in their order.
    """
    model.eval()
    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    tokens = torch.as_tensor(data.task.test.tokens)
    order = torch.argsort((tokens != 0).sum(dim=1), stable=True)
    vectors = torch.empty((len(tokens), model.encoder.config.hidden), device=device)
    for part in torch.split(order, batch_size):
        (batch,) = trim_padding(tokens[part].to(device))
        vectors[part.to(device)] = model.query_vectors(batch).float()
    metrics = ranking_metrics(
        vectors, model.item_matrix().detach().float(), torch.as_tensor(data.task.test.targets)
    )
    _sync(device)
    seconds = time.perf_counter() - start
    phase = {
        "users": len(tokens),
        "wall_s": seconds,
        "users_per_s": len(tokens) / seconds,
        "peak_gpu_memory_mib": _peak(device),
    }
    return {**metrics, "ties": "pessimistic", "ks": list(DEFAULT_KS)}, phase


# ---------------------------------------------------------------- device facts


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "gpu_check: --device cuda but torch sees no CUDA device "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "pass --device cpu for a dry run"
        )
    return torch.device(name)


def device_facts(device: torch.device) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(
            name=torch.cuda.get_device_name(device),
            memory_gib=props.total_memory / 2**30,
            multiprocessors=props.multi_processor_count,
            cudnn=torch.backends.cudnn.version(),
        )
    else:
        facts["name"] = f"CPU ({platform.machine()})"
    return facts


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | str:
    """Peak memory PyTorch allocated on the GPU since the last reset; "n/a" on CPU."""
    if device.type != "cuda":
        return "n/a"
    return torch.cuda.max_memory_allocated(device) / MIB


def _max_peak(phases: list[dict[str, Any]]) -> float | str:
    peaks = [p["peak_gpu_memory_mib"] for p in phases if p["peak_gpu_memory_mib"] != "n/a"]
    return max(peaks) if peaks else "n/a"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- outputs


def problems(record: dict[str, Any]) -> list[str]:
    """What makes a run a failed check: non-finite losses, metrics outside [0, 1]."""
    found = []
    for name in ("pretrain", "finetune"):
        phase = record["phases"][name]
        for key in ("first_loss", "last_loss"):
            if not math.isfinite(phase[key]):
                found.append(f"{name} {key} = {phase[key]} is not finite")
    for key, value in record["metrics"].items():
        if key.split("@")[0] in ("recall", "ndcg", "mrr") and not 0.0 <= value <= 1.0:
            found.append(f"metric {key} = {value} is outside [0, 1]")
    return found


def write_outputs(out: Path, record: dict[str, Any]) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{RESULT_NAME}.json", out / f"{RESULT_NAME}.md"
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    md_path.write_text(markdown(record))
    return json_path, md_path


def markdown(record: dict[str, Any]) -> str:
    device, data, metrics = record["device"], record["data"], record["metrics"]
    lines = markdown_head(RESULT_NAME, record["command"], record["date"])
    lines += [
        f"- device: {device['name']}; torch {device['torch']}, CUDA {device['cuda']}, "
        f"{device['cpu_threads']} CPU threads; {record['precision']}",
        f"- data: {data['dataset']} as its run-environment prepares it, {data['users']} users, "
        f"{data['items']} items",
        f"- {record['steps']} steps per training phase (after {record['warmup_steps']} untimed "
        f"warm-up steps), batch {record['batch_size']}; total wall time "
        f"{record['total_wall_s']:.1f} s; peak GPU memory {_mib(record['peak_gpu_memory_mib'])}",
        "",
    ]
    phases = [
        (
            name,
            f"{phase['wall_s']:.1f}",
            f"{phase['sequences_per_s']:.0f}",
            _mib(phase["peak_gpu_memory_mib"]),
            f"{phase['first_loss']:.4f} -> {phase['last_loss']:.4f}",
        )
        for name, phase in ((n, record["phases"][n]) for n in ("pretrain", "finetune"))
    ]
    evaluate = record["phases"]["evaluate"]
    phases.append(
        (
            f"evaluate ({evaluate['users']} users)",
            f"{evaluate['wall_s']:.2f}",
            f"{evaluate['users_per_s']:.0f}",
            _mib(evaluate["peak_gpu_memory_mib"]),
            "",
        )
    )
    head = ("phase", "wall (s)", "sequences/s", "peak GPU memory", "loss first -> last")
    lines += markdown_table(head, phases)
    lines += [
        "",
        f"Test metrics (leave-one-out, all {data['items']} items ranked, history not excluded, "
        "ties pessimistic):",
        "",
    ]
    scores = [
        (k, *(f"{metrics[f'{name}@{k}']:.4f}" for name in ("recall", "ndcg", "mrr")))
        for k in metrics["ks"]
    ]
    lines += markdown_table(("k", "Recall", "NDCG", "MRR"), scores)
    return "\n".join(lines) + "\n"


def _mib(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.0f} MiB"


def _command(argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return " ".join(shlex.quote(a) for a in ["python", "-m", "benchmarks.gpu_check", *args])


def _require(ok: bool, flag: str, value: Any, expected: str) -> None:
    if not ok:
        raise SystemExit(f"gpu_check: {flag} {value!r} is invalid; expected {expected}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    defaults = CheckConfig()
    p = argparse.ArgumentParser(
        prog="benchmarks/gpu_check.sh",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("out", type=Path, metavar="OUT_DIR", help="where gpu_check.json/.md go")
    p.add_argument("--device", default=defaults.device, help="cuda, cpu (a dry run) or auto")
    p.add_argument("--steps", type=int, default=defaults.steps, help="steps per training phase")
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help=f"untimed steps before each phase; default steps/10, at most {MAX_WARMUP_STEPS}",
    )
    p.add_argument(
        "--data", type=Path, default=REPO, help="project folder whose data/ holds the prepared set"
    )
    p.add_argument("--dataset", default="beauty", help="run-environment that prepared it")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="training batch")
    p.add_argument(
        "--eval-batch-size", type=int, default=defaults.eval_batch_size, help="users per pass"
    )
    p.add_argument("--precision", default=defaults.precision, help="bf16 (CUDA autocast) or fp32")
    own = "; default: the run-environment's"
    p.add_argument("--max-len", type=int, default=None, help="items per sequence" + own)
    p.add_argument("--lr", type=float, default=None, help="learning rate" + own)
    p.add_argument("--seed", type=int, default=defaults.seed, help="weights and batch order")
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0: CLUE_NUM_THREADS")
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
