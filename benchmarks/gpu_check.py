"""The GPU path end to end on Amazon Beauty: CLUE pre-training, next-item fine-tuning and one
full-ranking evaluation, each for a fixed number of steps, timed on the given device.

    bash benchmarks/gpu_check.sh [--device cuda|cpu|auto] [--steps N] [--data PATH] OUT_DIR

(the shell script sets ``PYTHONPATH=src`` and runs ``python -m benchmarks.gpu_check``). Writes
``OUT_DIR/gpu_check.json`` and ``OUT_DIR/gpu_check.md``: the card and library versions, the
settings, sequences/s of each phase, peak GPU memory, the test metrics and wall times.

Why a script of its own: a GPU machine often has PyTorch and numpy but not the pipeline's data
stack (pandas, pyarrow, Kedro). So this module imports only the torch-side modules of the
project (``models``, ``augment``, ``tasks``, ``training.loop``, ``metrics``), which need torch, numpy and
tqdm, and reads the S3-Rec file and builds the model inputs with numpy. The preprocessing is
the pipeline's for ``--env beauty`` (users with fewer than ``min_seq_len`` items dropped, items
numbered by popularity, the last ``max_len + 2`` items kept, leave-one-out split); the tests
check that its arrays equal those of ``clue_pipeline.data`` + ``clue_pipeline.tasks``.

Training goes through the project's one loop (``training.loop.fit``) with the Beauty
run-environment's settings: batch 256, Adam lr 1e-3, grad-clip 5, batches bucketed by length,
SimSiam 256/64 over dropout views; bf16 autocast on CUDA, fp32 on CPU. Each phase runs
``--warmup-steps`` untimed steps on a throw-away copy of its model first, so sequences/s is the
steady rate, not CUDA's start-up. Evaluation scores in fp32 (bf16 scores tie, see
benchmarks/results/eval_speed.md), all items ranked, history not excluded, ties pessimistic.
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
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:  # run from a bare copy of the repository, not installed
    sys.path.insert(0, str(REPO / "src"))

from clue_pipeline.augment import validate_view_policy  # noqa: E402
from clue_pipeline.data.tokens import special_tokens  # noqa: E402
from clue_pipeline.metrics import DEFAULT_KS, ranking_metrics  # noqa: E402
from clue_pipeline.models.encoders import EncoderConfig, build_encoder  # noqa: E402
from clue_pipeline.models.heads import NextItemModel  # noqa: E402
from clue_pipeline.models.objectives import ObjectiveConfig, SequencePretrainer  # noqa: E402
from clue_pipeline.tasks.batching import trim_padding, window  # noqa: E402
from clue_pipeline.tasks.finetuning import next_item_step  # noqa: E402
from clue_pipeline.tasks.pretraining import clue_step  # noqa: E402
from clue_pipeline.training.loop import TrainConfig, fit, take  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "s3rec"
BEAUTY_FILE = "Beauty.txt"
RESULT_NAME = "gpu_check"
HELD_OUT = 2  # leave-one-out: the validation item and the test item
ALLOWED_BYTES = b"0123456789 \t\r\n"
MIB = 2**20
MAX_WARMUP_STEPS = 20


@dataclass
class CheckConfig:
    """Settings of one check; defaults are the Beauty run-environment's (conf/beauty)."""

    device: str = "cuda"
    steps: int = 2000
    warmup_steps: int | None = None  # None: a tenth of ``steps``, at most MAX_WARMUP_STEPS
    batch_size: int = 256
    eval_batch_size: int = 1024
    precision: str = "bf16"  # bf16 autocast on CUDA; CPU always trains in fp32
    max_len: int = 50
    min_seq_len: int = 5
    hidden: int = 64
    blocks: int = 2
    heads: int = 4
    dropout: float = 0.5
    lr: float = 1e-3
    grad_clip: float = 5.0
    proj_dim: int = 256
    pred_dim: int = 64
    bucket_by_length: bool = True
    seed: int = 42

    def __post_init__(self) -> None:
        _require(self.device in ("cuda", "cpu", "auto"), "--device", self.device, "cuda|cpu|auto")
        _require(self.steps >= 1, "--steps", self.steps, "an integer >= 1")
        _require(
            self.warmup_steps is None or self.warmup_steps >= 0,
            "--warmup-steps",
            self.warmup_steps,
            "an integer >= 0",
        )
        _require(self.batch_size >= 2, "--batch-size", self.batch_size, "an integer >= 2")
        _require(self.precision in ("bf16", "fp32"), "--precision", self.precision, "bf16|fp32")
        _require(self.min_seq_len >= 3, "--min-seq-len", self.min_seq_len, "an integer >= 3")

    @property
    def warmup(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(MAX_WARMUP_STEPS, self.steps // 10)


@dataclass
class CheckData:
    """Model inputs of Beauty (or any S3-Rec file), as the pipeline builds them."""

    num_users: int
    num_items: int
    num_interactions: int
    pretrain_tokens: np.ndarray  # (U, max_len + 1): training part, left-padded, then [UR]
    train_tokens: np.ndarray  # (U, max_len + 1): next-item inputs
    train_targets: np.ndarray  # (U, max_len + 1): next token per position, 0 = none
    test_tokens: np.ndarray  # (U, max_len + 1): training part + validation item, then [UR]
    test_targets: np.ndarray  # (U,): 0-based index of the test item
    items: np.ndarray  # flat item tokens; user u keeps items[starts[u]:ends[u]]
    starts: np.ndarray
    ends: np.ndarray  # the last two kept items are the validation and the test item

    @property
    def valid_targets(self) -> np.ndarray:
        """(U,): 0-based index of the validation item (its input is ``pretrain_tokens``)."""
        return self.items[self.ends - HELD_OUT] - 1


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    config = CheckConfig(
        **{k: v for k, v in vars(args).items() if k not in ("out", "data", "threads")}
    )
    device = _device(config.device)
    threads = args.threads or int(os.environ.get("CLUE_NUM_THREADS", "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    path = locate_data(args.data)
    started = time.perf_counter()
    data = prepare(path, config.max_len, config.min_seq_len)
    prepare_s = time.perf_counter() - started
    print(
        f"{path}: {data.num_users} users, {data.num_items} items, "
        f"{data.num_interactions} interactions; device {device}",
        flush=True,
    )
    record = run_check(data, config, device)
    record["data"] = {
        "file": path.name,
        "users": data.num_users,
        "items": data.num_items,
        "interactions": data.num_interactions,
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


def locate_data(path: Path | None) -> Path:
    """The Beauty file: ``path`` itself, or ``Beauty.txt`` inside the folder ``path``."""
    candidate = DEFAULT_DATA if path is None else path
    if candidate.is_dir():
        candidate = candidate / BEAUTY_FILE
    if not candidate.is_file():
        raise SystemExit(
            f"gpu_check: Beauty not found at {candidate}. Pass --data PATH: the S3-Rec file "
            f"'{BEAUTY_FILE}' (lines 'user item item ...') or the folder holding it. On a machine "
            "without ../shared, copy the file into a git-ignored folder of the repository "
            "(e.g. benchmarks/.cache/) that travels with the working tree."
        )
    return candidate


def read_s3rec(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user per line, items flat, offsets)`` of an S3-Rec file, in file (= time) order.

    Vectorised over bytes: token boundaries from a digit mask, each token's line from the count
    of newlines before it. Anything but digits and whitespace, a line with a user and no item,
    or a user on two lines is an error naming the line (and column).
    """
    raw = np.fromfile(path, dtype=np.uint8)
    allowed = np.zeros(256, dtype=bool)
    allowed[np.frombuffer(ALLOWED_BYTES, dtype=np.uint8)] = True
    newline = raw == ord("\n")
    bad = np.flatnonzero(~allowed[raw])
    if bad.size:
        at = int(bad[0])
        line = int(newline[:at].sum()) + 1
        column = at - (int(np.flatnonzero(newline[:at])[-1]) + 1 if line > 1 else 0) + 1
        raise ValueError(
            f"{path} line {line}, column {column}: unexpected character {chr(raw[at])!r}; "
            "expected 'user item item ...' with integer ids separated by spaces"
        )
    digit = (raw >= ord("0")) & (raw <= ord("9"))
    starts = np.flatnonzero(digit & ~np.concatenate(([False], digit[:-1])))
    if starts.size == 0:
        raise ValueError(f"{path}: no users; expected lines 'user item item ...'")
    values = np.array(raw.tobytes().split(), dtype=np.bytes_).astype(np.int64)
    line_of = np.cumsum(newline)[starts]  # 0-based line of each token
    first = np.concatenate(([True], line_of[1:] != line_of[:-1]))
    line_starts = np.flatnonzero(first)
    counts = np.diff(np.concatenate((line_starts, [len(values)])))
    if (empty := np.flatnonzero(counts < 2)).size:
        raise ValueError(
            f"{path} line {int(line_of[line_starts[empty[0]]]) + 1}: a user without items; "
            "expected 'user item [item ...]' separated by spaces"
        )
    users = values[first]
    _, first_seen, seen = np.unique(users, return_index=True, return_counts=True)
    if (repeated := np.flatnonzero(seen > 1)).size:
        user = users[first_seen[repeated[0]]]
        lines = line_of[line_starts[users == user]] + 1
        raise ValueError(
            f"{path} lines {', '.join(map(str, lines[:3]))}: user {user} appears more than "
            "once; expected one line per user"
        )
    offsets = np.concatenate(([0], np.cumsum(counts - 1)))
    return users, values[~first], offsets


def prepare(path: Path, max_len: int, min_seq_len: int) -> CheckData:
    """The pipeline's next-item preprocessing of an S3-Rec file (see the module docstring)."""
    users, items, offsets = read_s3rec(path)
    items, offsets = by_user_id(users, items, offsets)
    lengths = np.diff(offsets)
    keep = lengths >= min_seq_len
    if not keep.any():
        raise ValueError(
            f"{path}: no user has at least {min_seq_len} items (--min-seq-len); expected a "
            "next-item dataset"
        )
    items = items[np.repeat(keep, lengths)]
    lengths = lengths[keep]
    uniques, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
    token_of = np.empty(len(uniques), dtype=np.int64)
    token_of[np.lexsort((uniques, -counts))] = np.arange(1, len(uniques) + 1)
    tokens = token_of[inverse]
    num_items = len(uniques)

    ends = np.cumsum(lengths)
    kept = np.minimum(lengths, max_len + HELD_OUT)
    starts = ends - kept  # the most recent max_len + 2 items of each user
    user_token = special_tokens(num_items).user
    train_inputs = window(tokens, starts, ends - HELD_OUT - 1, max_len)
    train_targets = window(tokens, starts + 1, ends - HELD_OUT, max_len)
    last_train = tokens[ends - HELD_OUT - 1][:, None]
    return CheckData(
        num_users=len(lengths),
        num_items=num_items,
        num_interactions=int(lengths.sum()),
        pretrain_tokens=_with_user(window(tokens, starts, ends - HELD_OUT, max_len), user_token),
        train_tokens=_with_user(train_inputs, user_token),
        train_targets=np.concatenate([train_targets, last_train], axis=1),
        test_tokens=_with_user(window(tokens, starts, ends - 1, max_len), user_token),
        test_targets=tokens[ends - 1] - 1,
        items=tokens,
        starts=starts,
        ends=ends,
    )


def by_user_id(
    users: np.ndarray, items: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Lines reordered by user id, as the pipeline orders its rows (whatever the file's order)."""
    order = np.argsort(users, kind="stable")
    lengths = np.diff(offsets)[order]
    new_offsets = np.concatenate(([0], np.cumsum(lengths)))
    shift = np.repeat(offsets[:-1][order] - new_offsets[:-1], lengths)
    return items[np.arange(len(items)) + shift], new_offsets


def _with_user(items: np.ndarray, user_token: int) -> np.ndarray:
    return np.concatenate([items, np.full((len(items), 1), user_token, dtype=np.int64)], axis=1)


# ---------------------------------------------------------------- the check


def run_check(data: CheckData, config: CheckConfig, device: torch.device) -> dict[str, Any]:
    """Pre-train, fine-tune and evaluate; every phase timed and its peak memory taken."""
    torch.manual_seed(config.seed)
    encoder_config = EncoderConfig(
        num_items=data.num_items,
        max_len=config.max_len,
        hidden=config.hidden,
        blocks=config.blocks,
        heads=config.heads,
        dropout=config.dropout,
    )
    encoder = build_encoder(encoder_config)
    policy = validate_view_policy({"strategies": ["dropout"]})
    simsiam = SequencePretrainer(
        encoder, ObjectiveConfig(), proj_dim=config.proj_dim, pred_dim=config.pred_dim
    )
    clue = partial(clue_step, policy=policy, mask_token=encoder_config.tokens.mask)
    pretrain = train_phase(simsiam, (torch.as_tensor(data.pretrain_tokens),), clue, config, device)
    model = NextItemModel(simsiam.encoder)
    finetune_data = (torch.as_tensor(data.train_tokens), torch.as_tensor(data.train_targets))
    finetune = train_phase(model, finetune_data, next_item_step, config, device)
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
        "settings": asdict(config),
        "phases": {"pretrain": pretrain, "finetune": finetune, "evaluate": evaluate},
        "peak_gpu_memory_mib": _max_peak([pretrain, finetune, evaluate]),
        "metrics": metrics,
    }


def train_phase(
    model: torch.nn.Module,
    dataset: tuple[torch.Tensor, ...],
    step_fn: Callable,
    config: CheckConfig,
    device: torch.device,
) -> dict[str, Any]:
    """``config.steps`` optimiser steps through ``fit``, after untimed warm-up steps on a copy."""
    train = TrainConfig(
        epochs=1,
        batch_size=config.batch_size,
        lr=config.lr,
        grad_clip=config.grad_clip,
        seed=config.seed,
        device=device.type,
        bf16=config.precision == "bf16",
        bucket_by_length=config.bucket_by_length,
    )
    if config.warmup:
        fit(copy.deepcopy(model), _steps_of(dataset, config.warmup, config), step_fn, train)
    rows = _steps_of(dataset, config.steps, config)
    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    result = fit(model, rows, step_fn, train)
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
    dataset: tuple[torch.Tensor, ...], steps: int, config: CheckConfig
) -> tuple[torch.Tensor, ...]:
    """Exactly ``steps`` batches of rows: seeded passes over the users, one after another.

    ``fit`` trains whole epochs; an epoch over this many rows is the fixed number of steps.
    """
    rows = steps * config.batch_size
    users = len(dataset[0])
    generator = torch.Generator().manual_seed(config.seed)
    passes = [torch.randperm(users, generator=generator) for _ in range(math.ceil(rows / users))]
    return take(dataset, torch.cat(passes)[:rows])


@torch.no_grad()
def evaluate_phase(
    model: NextItemModel, data: CheckData, batch_size: int, device: torch.device
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Full ranking of all items for every user's test item, from fp32 [UR] vectors.

    Users go through the encoder sorted by length, each batch cut to its longest row (the
    pipeline's evaluation does the same), then back in their order.
    """
    model.eval()
    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    tokens = torch.as_tensor(data.test_tokens)
    order = torch.argsort((tokens != 0).sum(dim=1), stable=True)
    vectors = torch.empty((len(tokens), model.encoder.config.hidden), device=device)
    for part in torch.split(order, batch_size):
        (batch,) = trim_padding(tokens[part].to(device))
        vectors[part.to(device)] = model.user_vectors(batch).float()
    metrics = ranking_metrics(
        vectors, model.item_matrix().detach().float(), torch.as_tensor(data.test_targets)
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
    lines = [
        f"# {RESULT_NAME}",
        "",
        f"- command: `{record['command']}`",
        f"- date: {record['date']}",
        f"- device: {device['name']}; torch {device['torch']}, CUDA {device['cuda']}, "
        f"{device['cpu_threads']} CPU threads; {record['precision']}",
        f"- data: {data['file']}, {data['users']} users, {data['items']} items, "
        f"{data['interactions']} interactions",
        f"- {record['steps']} steps per training phase (after {record['warmup_steps']} untimed "
        f"warm-up steps), batch {record['batch_size']}; total wall time "
        f"{record['total_wall_s']:.1f} s; peak GPU memory {_mib(record['peak_gpu_memory_mib'])}",
        "",
        "| phase | wall (s) | sequences/s | peak GPU memory | loss first -> last |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in ("pretrain", "finetune"):
        phase = record["phases"][name]
        lines.append(
            f"| {name} | {phase['wall_s']:.1f} | {phase['sequences_per_s']:.0f} | "
            f"{_mib(phase['peak_gpu_memory_mib'])} | "
            f"{phase['first_loss']:.4f} -> {phase['last_loss']:.4f} |"
        )
    evaluate = record["phases"]["evaluate"]
    lines += [
        f"| evaluate ({evaluate['users']} users) | {evaluate['wall_s']:.2f} | "
        f"{evaluate['users_per_s']:.0f} | {_mib(evaluate['peak_gpu_memory_mib'])} | |",
        "",
        f"Test metrics (leave-one-out, all {data['items']} items ranked, history not excluded, "
        "ties pessimistic):",
        "",
        "| k | Recall | NDCG | MRR |",
        "| --- | --- | --- | --- |",
    ]
    for k in metrics["ks"]:
        lines.append(
            f"| {k} | {metrics[f'recall@{k}']:.4f} | {metrics[f'ndcg@{k}']:.4f} | "
            f"{metrics[f'mrr@{k}']:.4f} |"
        )
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
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Beauty.txt or its folder")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="training batch")
    p.add_argument(
        "--eval-batch-size", type=int, default=defaults.eval_batch_size, help="users per pass"
    )
    p.add_argument("--precision", default=defaults.precision, help="bf16 (CUDA autocast) or fp32")
    p.add_argument("--max-len", type=int, default=defaults.max_len, help="items per sequence")
    p.add_argument(
        "--min-seq-len", type=int, default=defaults.min_seq_len, help="shorter users dropped"
    )
    p.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate")
    p.add_argument("--seed", type=int, default=defaults.seed, help="weights and batch order")
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0: CLUE_NUM_THREADS")
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main())
