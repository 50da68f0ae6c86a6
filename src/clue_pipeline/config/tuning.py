"""``tune``: the study's settings and its search space, parsed and checked once.

A search space is checked before the first trial trains, so an absurd range (``low > high``,
a negative learning rate, a knob the backbone does not have) stops the run with the parameter
named instead of surfacing as a failed trial minutes later. Torch-free.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from clue_pipeline.config.blocks import (
    PrunerConfig,
    SearchSpace,
    TuneBudget,
    TuneSettings,
)
from clue_pipeline.config.parse import to_dataclass

PRUNERS = ("median", "halving")
# knob -> the parameter it sets (``augment.views.*_ratio``: the three ratios at once)
KNOB_PARAMETERS = {
    "dropout": "encoder.dropout",
    "pretrain_lr": "pretrain.train.lr",
    "finetune_lr": "finetune.train.lr",
    "weight_decay": "finetune.train.weight_decay",
    "blocks": "encoder.blocks",
    "heads": "encoder.heads",
    "ffn_hidden": "encoder.ffn_hidden",
    "frequency_mix": "encoder.frequency_mix",
    "frequency_cutoff": "encoder.frequency_cutoff",
    "max_len": "encoder.max_len",
    "strategies": "augment.views.strategies",
    "ratio": "augment.views.*_ratio",
}
# the knobs that are an encoder field, and the encoder kinds that read it
ENCODER_KNOBS = {
    "dropout": None,  # every kind
    "max_len": None,
    "blocks": ("transformer", "gru", "cnn", "filter", "wearec", "tvrec"),
    "heads": ("transformer", "wearec"),
    "ffn_hidden": ("transformer", "filter", "wearec", "tvrec"),
    "frequency_mix": ("transformer",),
    "frequency_cutoff": ("transformer",),
}
LOG_SCALE = ("pretrain_lr", "finetune_lr")  # and weight_decay when its low bound is > 0
CHOICES = ("heads", "ffn_hidden", "strategies")
INTEGERS = ("blocks", "frequency_cutoff", "max_len")
# knob -> (smallest low, largest high, whether the bounds themselves are allowed)
_BOUNDS = {
    "dropout": (0.0, 1.0, "[0, 1)"),
    "ratio": (0.0, 1.0, "[0, 1)"),
    "frequency_mix": (0.0, 1.0, "(0, 1]"),
    "pretrain_lr": (0.0, 10.0, "(0, 10)"),
    "finetune_lr": (0.0, 10.0, "(0, 10)"),
    "weight_decay": (0.0, float("inf"), "[0, inf)"),
}


def parse_tune(params: dict[str, Any] | TuneSettings) -> TuneSettings:
    """``params:tune`` -> :class:`TuneSettings`, every range and budget checked by name."""
    if isinstance(params, TuneSettings):
        return params
    params = dict(params or {})
    space = to_dataclass(
        SearchSpace, params.pop("search_space", None), "tune.search_space", check_ranges=False
    )
    pruner = to_dataclass(PrunerConfig, params.pop("pruner", None), "tune.pruner")
    budget = to_dataclass(TuneBudget, params.pop("budget", None), "tune.budget")
    settings = to_dataclass(
        TuneSettings, params, "tune", search_space=space, pruner=pruner, budget=budget
    )
    check_search_space(space)
    _check_study(settings)
    return settings


def check_search_space(space: SearchSpace) -> None:
    """Each searched knob's range or choices; at least one knob searched."""
    searched = searched_knobs(space)
    if not searched:
        raise ValueError(
            f"tune.search_space: no knob searched; give at least one of {list(KNOB_PARAMETERS)} "
            "a range"
        )
    for name, value in searched.items():
        where = f"tune.search_space.{name}"
        if name in CHOICES:
            _check_choices(where, name, value)
        else:
            _check_range(where, name, value)


def check_space_fits_encoder(space: SearchSpace, encoder: dict[str, Any]) -> None:
    """The knobs the study's backbone (``encoder.kind``) has, within what its data allows.

    ``max_len`` searches at most ``encoder.max_len``: `sequences` kept each user's most
    recent ``encoder.max_len + 2`` items, so a longer window would see nothing more.
    """
    kind = encoder.get("kind", "transformer")
    searched = searched_knobs(space)
    for name, kinds in ENCODER_KNOBS.items():
        if name in searched and kinds is not None and kind not in kinds:
            raise ValueError(
                f"tune.search_space.{name} = {searched[name]!r}: encoder.kind {kind!r} has no "
                f"{name} (it is a knob of {' / '.join(kinds)}); set it to null"
            )
    hidden = int(encoder.get("hidden", 64))
    for heads in searched.get("heads") or ():
        if hidden % heads:
            raise ValueError(
                f"tune.search_space.heads = {searched['heads']!r}: {heads} does not divide "
                f"encoder.hidden = {hidden}"
            )
    if searched.get("frequency_mix") and encoder.get("norm") != "post":
        raise ValueError(
            f"tune.search_space.frequency_mix = {searched['frequency_mix']!r}: BSARec's block "
            f"needs encoder.norm post (it is {encoder.get('norm')!r})"
        )
    max_len = int(encoder.get("max_len", 50))
    if searched.get("max_len") and searched["max_len"][1] > max_len:
        raise ValueError(
            f"tune.search_space.max_len = {searched['max_len']!r}: high must be at most "
            f"encoder.max_len = {max_len}, the length `sequences` kept; raise encoder.max_len "
            "and run `--pipelines=ingest,sequences` again to search longer windows"
        )
    shortest = searched["max_len"][0] if searched.get("max_len") else max_len
    frequencies = (shortest + 1) // 2 + 1
    if searched.get("frequency_cutoff") and searched["frequency_cutoff"][1] > frequencies:
        raise ValueError(
            f"tune.search_space.frequency_cutoff = {searched['frequency_cutoff']!r}: high "
            f"must be at most {frequencies}, the frequencies of a {shortest}-item window"
        )


def searched_knobs(space: SearchSpace) -> dict[str, Any]:
    """The knobs given a range or choices, in the order of :class:`SearchSpace`."""
    values = {f.name: getattr(space, f.name) for f in fields(space)}
    return {name: value for name, value in values.items() if value is not None}


def _check_range(where: str, name: str, bounds: Any) -> None:
    integers = name in INTEGERS
    kind = "integers" if integers else "numbers"
    if (
        not isinstance(bounds, list | tuple)
        or len(bounds) != 2
        or not all(_is_number(b, integers) for b in bounds)
    ):
        raise ValueError(f"{where} = {bounds!r}: expected [low, high], two {kind}, or null")
    low, high = bounds
    if not low < high:
        raise ValueError(f"{where} = {list(bounds)!r}: expected [low, high] with low < high")
    if integers and low < 1:
        raise ValueError(f"{where} = {list(bounds)!r}: expected positive integers")
    if name not in _BOUNDS:
        return
    smallest, largest, text = _BOUNDS[name]
    low_ok = low > smallest if text.startswith("(") else low >= smallest
    high_ok = high <= largest if text.endswith("]") else high < largest
    if not (low_ok and high_ok):
        raise ValueError(f"{where} = {list(bounds)!r}: expected bounds within {text}")


def _check_choices(where: str, name: str, choices: Any) -> None:
    if not isinstance(choices, list | tuple) or not choices:
        raise ValueError(f"{where} = {choices!r}: expected a non-empty list of choices, or null")
    if name == "strategies":
        if not all(isinstance(c, list | tuple) and c for c in choices):
            raise ValueError(f"{where} = {choices!r}: expected a list of strategy lists")
        return
    if not all(_is_number(c, integers=True) and c >= 1 for c in choices):
        raise ValueError(f"{where} = {choices!r}: expected positive integers")


def _is_number(value: Any, integers: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integers else isinstance(value, int | float)


def _check_study(settings: TuneSettings) -> None:
    checks = {
        "tune.n_trials": (settings.n_trials, _is_number(settings.n_trials, True)),
        "tune.budget.pretrain_epochs": (
            settings.budget.pretrain_epochs,
            _is_number(settings.budget.pretrain_epochs, True),
        ),
        "tune.budget.finetune_epochs": (
            settings.budget.finetune_epochs,
            _is_number(settings.budget.finetune_epochs, True),
        ),
    }
    for where, (value, is_integer) in checks.items():
        if not is_integer or value < 1:
            raise ValueError(f"{where} = {value!r}: expected a positive integer")
    if settings.pruner.kind not in PRUNERS:
        raise ValueError(f"tune.pruner.kind = {settings.pruner.kind!r}: expected one of {PRUNERS}")
    if settings.timeout_s is not None and not settings.timeout_s > 0:
        raise ValueError(f"tune.timeout_s = {settings.timeout_s!r}: expected seconds > 0, or null")
