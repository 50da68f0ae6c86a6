"""Entry point for a launcher of your own: ``torchrun --nnodes=N --nproc_per_node=P
--rdzv_backend=c10d --rdzv_endpoint=HOST:PORT -m clue_pipeline.training.torchrun_worker
--spec spec.json [--output result.pt]``.

``kedro run --pipelines=pretrain`` needs none of this (``pretrain.distributed.nnodes`` starts an
agent on each machine); this module serves schedulers that start ``torchrun`` themselves, with a
spec your code writes: ``spec.json`` is ``WorkerSpec.to_dict()``,
``{"builder": "module:function", "kwargs": {...}, "train": {TrainConfig fields}}``.

It runs the very worker function that the in-process launcher starts, so training is the same.
Each node's local rank 0 writes ``result.pt``, rank 0's result (read it with
``distributed.result_from_bytes``); errors name a lost node by its rendezvous ``GROUP_RANK``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from clue_pipeline.training.checkpoint import write_atomic
from clue_pipeline.training.distributed import BACKENDS, resolve_backend, worker


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    spec_path = Path(args.spec)
    try:
        spec = json.loads(spec_path.read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(
            f"{spec_path} line {error.lineno}, column {error.colno}: not valid JSON ({error.msg})"
        ) from error
    if not isinstance(spec, dict):
        raise SystemExit(f"{spec_path}: expected a JSON object, got {type(spec).__name__}")
    threads = args.threads or max(
        1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    )
    backend = resolve_backend(args.backend, spec.get("train", {}).get("device", "auto"))
    payload = worker(spec, backend, threads)
    if payload is not None and args.output:
        write_atomic(args.output, lambda stream: stream.write(payload))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON file: builder, kwargs, train")
    parser.add_argument("--output", help="where rank 0 writes the serialised TrainResult")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
