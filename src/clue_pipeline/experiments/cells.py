"""A cell = one run of the project's own nodes: (dataset, task, method, seed, share of training
users) plus parameter overrides (views, dropout, ablation switches, budget).

Cells without overrides are the quality grid's cells (``benchmarks/quality.py``) and keep its
path ``<dataset>/<task>/<method>/seed{s}_users{pct}.json``; cells with overrides live beside
them under a name carrying a short stable hash of the sorted overrides.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clue_pipeline.config.renames import renamed
from clue_pipeline.config.trees import flatten, nest

FINETUNE_TASKS = ("next_item", "profiling", "coldstart")
# A pre-training-only cell: per-epoch history and a summary of the user vectors, no fine-tuning.
PRETRAIN_TASK = "pretrain"
# Pre-training corpus of each task (profiling reuses the next-item corpus, as `finetune` does).
CORPUS = {"next_item": "next_item", "profiling": "next_item", "coldstart": "coldstart"}
# Fine-tuning method -> the pre-trained encoder it starts from.
INIT = {"clue": "clue", "clue_probe": "clue", "mip": "mip", "mip_probe": "mip", "s3rec": "s3rec"}
PRETRAIN_NODE = {
    "clue": "pretrain_clue",
    "mip": "pretrain_masked_item_prediction",
    "s3rec": "pretrain_s3rec",
}
# The `augment` node that writes `view_policy`: run inside every CLUE cell so that the policy
# a cell pre-trains with is the one its own parameters say.
VIEW_POLICY_NODE = "learn.augment.validate_view_policy"
# The `pretrain` node that writes `item_attributes`: run inside every S3-Rec cell, likewise.
ATTRIBUTES_NODE = "learn.pretrain.item_attributes"
HASH_LENGTH = 8


@dataclass(frozen=True)
class Cell:
    dataset: str
    task: str
    method: str
    seed: int
    fraction: float = 1.0
    overrides: str = ""  # canonical JSON of the flat {dotted.key: value} overrides; "" = none

    @classmethod
    def create(
        cls,
        dataset: str,
        task: str,
        method: str,
        seed: int,
        fraction: float = 1.0,
        overrides: dict[str, Any] | None = None,
    ) -> Cell:
        """A cell whose overrides (nested or dotted keys) are stored in one canonical form."""
        if task not in (*FINETUNE_TASKS, PRETRAIN_TASK):
            raise ValueError(
                f"cell task {task!r}: expected one of {[*FINETUNE_TASKS, PRETRAIN_TASK]}"
            )
        if task == PRETRAIN_TASK and method not in PRETRAIN_NODE:
            raise ValueError(
                f"pre-training cell method {method!r}: expected one of {sorted(PRETRAIN_NODE)}"
            )
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"cell fraction {fraction!r}: expected a share in (0, 1]")
        flat = flatten(overrides or {})
        text = json.dumps(flat, sort_keys=True) if flat else ""
        return cls(dataset, task, method, int(seed), float(fraction), text)

    @property
    def override_dict(self) -> dict[str, Any]:
        return json.loads(self.overrides) if self.overrides else {}

    @property
    def override_hash(self) -> str:
        """Stable across runs and machines: sha256 of the canonical JSON."""
        if not self.overrides:
            return ""
        return hashlib.sha256(self.overrides.encode()).hexdigest()[:HASH_LENGTH]

    @property
    def relative_path(self) -> Path:
        suffix = f"_{self.override_hash}" if self.overrides else ""
        name = f"seed{self.seed}_users{int(self.fraction * 100)}{suffix}.json"
        return Path(self.dataset) / self.task / self.method / name

    def as_dict(self) -> dict[str, Any]:
        """The cell as stored in its JSON; without overrides exactly the quality grid's form."""
        record = {
            "dataset": self.dataset,
            "task": self.task,
            "method": self.method,
            "seed": self.seed,
            "fraction": self.fraction,
        }
        if self.overrides:
            record["overrides"] = self.override_dict
        return record

    def label(self) -> str:
        extra = f" / {self.overrides}" if self.overrides else ""
        return (
            f"{self.dataset} / {self.task} / {self.method} / seed {self.seed} / "
            f"{int(self.fraction * 100)} % users{extra}"
        )


def kedro_nodes(cell: Cell) -> list[str]:
    """The project's nodes that compute a cell, in run order (names carry the phase, see
    ``pipeline_registry.PHASES``)."""
    if cell.task == PRETRAIN_TASK:
        nodes = [f"learn.pretrain.next_item.{PRETRAIN_NODE[cell.method]}"]
        return [*_inputs_node(cell.method), *nodes]
    nodes = [
        f"learn.finetune.{cell.task}.finetune_{cell.task}_{cell.method}",
        f"learn.evaluate.{cell.task}.evaluate_{cell.task}_{cell.method}",
    ]
    init = INIT.get(cell.method)
    if init is None:
        return nodes
    return [
        *_inputs_node(init),
        f"learn.pretrain.{CORPUS[cell.task]}.{PRETRAIN_NODE[init]}",
        *nodes,
    ]


def _inputs_node(method: str) -> list[str]:
    """The node writing what a pre-training method reads besides the corpus, if any."""
    return {"clue": [VIEW_POLICY_NODE], "s3rec": [ATTRIBUTES_NODE]}.get(method, [])


def kedro_params(cell: Cell) -> dict[str, Any]:
    """Runtime parameters of a cell, nested as `kedro run --config` takes them.

    The seed drives pre-training and fine-tuning (the user splits keep `sequences.seed`). A
    profile's budget is part of the cell's overrides, so a changed budget is a new cell.
    """
    flat = {
        "pretrain.train.seed": cell.seed,
        "finetune.train.seed": cell.seed,
        "finetune.train_user_fraction": cell.fraction,
        **renamed(cell.override_dict),  # a cell named by an old key runs today's
    }
    return nest(flat)


# Overrides that change what the sequences stage writes (its own block, and the one
# sequence length it keeps): a cell with one rebuilds that stage with its parameters first.
SEQUENCE_KEYS = ("sequences.", "encoder.max_len")


def reshapes_sequences(cell: Cell) -> bool:
    """Whether the cell's data differ from the dataset's prepared tables (a k-fold split, the
    inductive protocol, a longer history), so the sequences stage must run inside it."""
    return any(key.startswith(SEQUENCE_KEYS) for key in cell.override_dict)


def uses_views(cell: Cell) -> bool:
    """Whether the cell changes the view policy (which must be restored after it)."""
    return any(key.startswith("augment.") for key in cell.override_dict)
