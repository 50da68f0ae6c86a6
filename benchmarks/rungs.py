"""The next-item recipes of the ladder: ``today``'s, and each rung as its parent plus one change.

Plain data and two small functions, no data stack, so that both ``benchmarks/recipe_ladder.py``
(CPU, through the project's data pipeline) and ``benchmarks/gpu_quality.py --methods
rung-<name>`` (a GPU machine without pandas) train the same recipes.
"""

from __future__ import annotations

import json
from typing import Any

PATIENCE = 5  # epochs without a better validation NDCG@10 before a rung stops
MAX_EPOCHS = 200

# The pipeline's next-item recipe on Amazon data before this ladder (conf/base + conf/beauty).
TODAY: dict[str, Any] = {
    "encoder": {
        "kind": "transformer",
        "max_len": 50,
        "hidden": 64,
        "blocks": 2,
        "heads": 4,
        "dropout": 0.5,
        "norm": "pre",
        "ffn_hidden": None,
        "activation": "relu",
        "attn_output_dropout": False,
        "embedding_norm": False,
        "linear_init_std": None,
    },
    "head": {"readout": "ur", "label_smoothing": 0.0},
    "rows": "prefix",
    "train": {"batch_size": 256, "lr": 1e-3, "grad_clip": 5.0, "weight_decay": 0.0},
}
RECBOLE_BLOCK = {
    "norm": "post",
    "embedding_norm": True,
    "attn_output_dropout": True,
    "ffn_hidden": 256,
    "activation": "gelu",
    "heads": 2,
    "linear_init_std": 0.02,
}

# name -> (parent, change, what it tries). Changes are nested dicts merged over the parent.
RUNGS: dict[str, tuple[str | None, dict[str, Any], str]] = {
    "today": (None, {}, "the pipeline's recipe before the ladder: pre-LN, FFN 64 ReLU, 4 heads"),
    "last_item": (
        "today",
        {"head": {"readout": "last_item"}},
        "score from the last item's state instead of [UR]",
    ),
    "recbole_block": (
        "today",
        {"encoder": RECBOLE_BLOCK},
        "RecBole's block as a group: post-LN, LN on embeddings, attention-output dropout, "
        "FFN 256 GELU, 2 heads, normal(0, 0.02) Linear init",
    ),
    "recbole_block_last_item": (
        "recbole_block",
        {"head": {"readout": "last_item"}},
        "RecBole's block, scored from the last item's state",
    ),
    "rb_li_pre_ln": ("recbole_block_last_item", {"encoder": {"norm": "pre"}}, "pre-LN"),
    "rb_li_ffn64_relu": (
        "recbole_block_last_item",
        {"encoder": {"ffn_hidden": None, "activation": "relu"}},
        "FFN 64 with ReLU",
    ),
    "rb_li_heads4": ("recbole_block_last_item", {"encoder": {"heads": 4}}, "4 heads"),
    "rb_li_heads1": (
        "recbole_block_last_item",
        {"encoder": {"heads": 1}},
        "1 head (BSARec's and FMLP-Rec's setting on Beauty)",
    ),
    "bsarec": (
        "recbole_block_last_item",
        {
            "encoder": {"frequency_mix": 0.7, "frequency_cutoff": 3, "heads": 1},
            "train": {"lr": 5e-4},
        },
        "BSARec's block and Beauty settings as a group: 0.7 x a frequency sub-layer (3 low "
        "frequencies kept, its c = 5) + 0.3 x attention, 1 head, lr 5e-4",
    ),
    "bsarec_causal": (
        "bsarec",
        {"encoder": {"frequency_causal": True}},
        "the frequency sub-layer causal (each position filters itself and earlier ones), so "
        "the block suits the joint objective's next-item term",
    ),
    "rb_li_lr5e4": (
        "recbole_block_last_item",
        {"train": {"lr": 5e-4}},
        "Adam lr 5e-4 (BSARec's setting on Beauty)",
    ),
    "rb_li_default_init": (
        "recbole_block_last_item",
        {"encoder": {"linear_init_std": None}},
        "PyTorch's default Linear init",
    ),
    "rb_li_no_attn_out_dropout": (
        "recbole_block_last_item",
        {"encoder": {"attn_output_dropout": False}},
        "no dropout on the attention output",
    ),
    "rb_li_no_emb_norm": (
        "recbole_block_last_item",
        {"encoder": {"embedding_norm": False}},
        "no LayerNorm on the input embeddings",
    ),
    "rb_li_smoothing": (
        "recbole_block_last_item",
        {"head": {"label_smoothing": 0.1}},
        "label smoothing 0.1",
    ),
    "rb_li_user_rows": (
        "recbole_block_last_item",
        {"rows": "user"},
        "one row per user, every position supervised (SASRec's own rows)",
    ),
    "rb_li_no_clip": ("recbole_block_last_item", {"train": {"grad_clip": None}}, "no grad clip"),
    "rb_li_dropout03": ("recbole_block_last_item", {"encoder": {"dropout": 0.3}}, "dropout 0.3"),
    "rb_li_batch128": ("recbole_block_last_item", {"train": {"batch_size": 128}}, "batch 128"),
    "rb_li_contrast": (
        "recbole_block_last_item",
        {"head": {"contrastive_weight": 0.1, "contrastive_temperature": 1.0}},
        "0.1 x InfoNCE between two dropout passes (DuoRec / CL4SRec-style auxiliary loss)",
    ),
    "filter_backbone": (
        "recbole_block_last_item",
        {"encoder": {"kind": "filter"}},
        "FMLP-Rec's frequency-domain filter blocks instead of self-attention",
    ),
    "rb_li_bf16_softmax": (
        "recbole_block_last_item",
        {"head": {"softmax_matmul": "bfloat16"}},
        "the item softmax's products in bf16 (a speed change: quality must not move)",
    ),
    "rb_li_bf16": (
        "rb_li_bf16_softmax",
        {"train": {"bf16": True, "bf16_cpu": True}},
        "mixed precision: the encoder under bf16 autocast too (weights, Adam and the softmax "
        "sums stay fp32; a speed change on CPUs with bf16 matrix units)",
    ),
    "rb_li_cosine": (
        "recbole_block_last_item",
        {"train": {"lr_schedule": "cosine", "warmup_epochs": 1, "epochs": 40, "min_epochs": 40}},
        "1 warm-up epoch, then cosine decay to 0 over 40 epochs, all of them (a schedule's gain "
        "comes at its end, which early stopping would cut off)",
    ),
    # Caser (method `caser`): the paper's settings, then one knob at a time, to pick its
    # settings on validation (fresh weights, the same head, rows and loop as every rung)
    "caser": (
        "today",
        {
            "encoder": {
                "kind": "caser",
                "window": 5,
                "horizontal_filters": 16,
                "vertical_filters": 4,
            }
        },
        "Caser, the paper's settings: L 5, 16 horizontal filters per height, 4 vertical, "
        "dropout 0.5",
    ),
    "caser_L3": ("caser", {"encoder": {"window": 3}}, "Caser with L 3"),
    "caser_L10": ("caser", {"encoder": {"window": 10}}, "Caser with L 10"),
    "caser_dropout02": ("caser", {"encoder": {"dropout": 0.2}}, "Caser with dropout 0.2"),
    "caser_lr3e3": ("caser", {"train": {"lr": 3e-3}}, "Caser with lr 3e-3"),
}


def recipe(name: str) -> dict[str, Any]:
    """A rung's full settings: the chain of changes from ``today`` down to it."""
    parent, change, _ = RUNGS[name]
    return _merge(TODAY if parent is None else recipe(parent), change)


def _merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = json.loads(json.dumps(base))
    for key, value in change.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) else value
    return merged
