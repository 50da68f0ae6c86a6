"""Parameters renamed or merged since cells were stored: old dotted key -> today's key.

A stored cell recorded its settings under the names of its day; the cell store reads them
through this map (``experiments.settings``), and ``--params`` with an old name is refused
naming the new one (``config.strict``).
"""

from __future__ import annotations

from typing import Any

RENAMED_KEYS = {
    # one rows switch, under the next-item head's block
    "finetune.next_item_rows": "finetune.next_item.rows",
    # one ranking protocol for model selection and the test
    "finetune.exclude_history": "evaluate.exclude_history",
    # one mask ratio for every masked-item term
    "pretrain.objective.masked_item_ratio": "pretrain.masked_item.mask_ratio",
    # one sequence length
    "sequences.max_len": "encoder.max_len",
    "augment.samples.max_len": "encoder.max_len",
    # the tuned learning rates, one per stage
    "tune.search_space.lr": "tune.search_space.pretrain_lr",
}


def renamed(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` ({dotted.key: value}) under today's names; a key that today's name also holds
    keeps today's entry."""
    out = {key: value for key, value in flat.items() if key not in RENAMED_KEYS}
    for old, new in RENAMED_KEYS.items():
        if old in flat:
            out.setdefault(new, flat[old])
    return out
