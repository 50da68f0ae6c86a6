"""Do nearest users mean something? On MovieLens-1M, the share of each user's 10 nearest users
that share the user's gender, age bracket or occupation, for CLUE's and CLUE-Zero's user
vectors, the TF-IDF bag of items and random users (clue_pipeline.experiments.neighbour_agreement).

    .venv/bin/python -m benchmarks.neighbour_agreement [--override finetune.train.epochs=40]

Trains with the project's nodes under data/<layer>/ml-1m-neighbours/ (the `ml-1m` folders stay
as they are); `--skip-training` measures what the last run there wrote."""

from __future__ import annotations

import argparse

import torch
import yaml

from benchmarks.common import REPO, write_results
from clue_pipeline.config.trees import nest
from clue_pipeline.experiments.neighbour_agreement import markdown, study


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--name", default="ml-1m-neighbours", help="scratch dataset_name")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.override)}
    payload = study(REPO, args.name, nest(overrides), args.threads, args.skip_training)
    payload["protocol"]["overrides"] = overrides
    print(write_results("neighbour_agreement", payload, markdown(payload, overrides)))


if __name__ == "__main__":
    main()
