"""Parameters (plain dicts from conf/) to the dataclasses the torch code takes.

This is the boundary where a typo or an absurd value in ``conf/`` is caught: the error names
the parameter path and the accepted form, before any training starts.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from clue_pipeline.config.training import TrainConfig

if TYPE_CHECKING:  # the model side imports torch; this package does not
    from clue_pipeline.models.encoders import EncoderConfig

T = TypeVar("T")

_POSITIVE = {"epochs", "batch_size", "max_len", "hidden", "blocks", "heads", "proj_dim", "pred_dim"}
_PROBABILITIES = {"dropout", "mask_ratio", "label_smoothing"}


def to_dataclass(
    cls: type[T], params: dict[str, Any], where: str, check_ranges: bool = True, **fixed: Any
) -> T:
    """``cls(**params)`` with unknown keys and out-of-range values reported by name.

    ``check_ranges=False`` for blocks whose keys hold ranges, not values (search spaces).
    """
    if isinstance(params, cls):
        return params
    params = dict(params or {})
    known = {f.name for f in fields(cls)} - set(fixed)  # a fixed field is set elsewhere
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{where}: unknown parameter(s) {unknown}; accepted: {sorted(known)}")
    for key, value in params.items() if check_ranges else ():
        _check_range(f"{where}.{key}", key, value)
    try:
        return cls(**{**params, **fixed})
    except (TypeError, ValueError) as error:  # the dataclass's own checks: add the path
        raise ValueError(f"{where}: {error}") from error


def _check_range(path: str, key: str, value: Any) -> None:
    if key in _POSITIVE and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{path} = {value!r}: expected a positive integer")
    if key in _PROBABILITIES and not (isinstance(value, int | float) and 0.0 <= value < 1.0):
        raise ValueError(f"{path} = {value!r}: expected a probability in [0, 1)")
    if key == "lr" and not (isinstance(value, int | float) and 0.0 < value < 10.0):
        raise ValueError(f"{path} = {value!r}: expected a learning rate in (0, 10)")


def encoder_config(
    params: dict[str, Any] | EncoderConfig, num_items: int, where: str = "encoder"
) -> EncoderConfig:
    """``params:encoder`` and the item count -> the encoder's shape, checked by name.

    ``kind`` is the method's backbone where a fine-tuning method names one
    (``finetune.methods.<m>.backbone``): see :func:`method_encoder`.
    """
    from clue_pipeline.models.encoders import ENCODERS, EncoderConfig

    if is_dataclass(params):
        params = {f.name: getattr(params, f.name) for f in fields(params) if f.name != "num_items"}
    config = to_dataclass(EncoderConfig, params, where, num_items=int(num_items))
    if config.kind not in ENCODERS:
        raise ValueError(f"{where}.kind = {config.kind!r}: expected one of {sorted(ENCODERS)}")
    if config.kind == "transformer" and config.hidden % config.heads:
        raise ValueError(
            f"{where}: hidden ({config.hidden}) must be divisible by heads ({config.heads})"
        )
    return config


def train_config(params: dict[str, Any], where: str, **fixed: Any) -> TrainConfig:
    """A ``train`` block (or a merge of them) -> :class:`TrainConfig`, checked by name."""
    return to_dataclass(TrainConfig, params, where, **fixed)
