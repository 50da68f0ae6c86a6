"""Fine-tuning jobs (next-item, classification) and their evaluation, on the one training loop.

Next-item: the whole encoder trained with softmax cross-entropy over all items at every position
of the training part; validation and test by full ranking of the [UR] vector against the item
embedding table. Classification (profiling, cold-start): [UR] vector -> linear softmax; cold-start
ranks the target-domain items by that softmax's logits. The same code serves CLUE, CLUE-Zero,
masked-item pre-training, other backbones, the frozen linear probe, and the bag-of-items baselines.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from clue_pipeline.config.finetuning import DEFAULT_READOUT, NextItemHead
from clue_pipeline.metrics import (
    DEFAULT_KS,
    classification_metrics,
    metrics_from_ranks,
    ranking_metrics,
)
from clue_pipeline.models.bag_of_items import BagOfItemsModel
from clue_pipeline.models.baselines import BASELINES, BaselineConfig
from clue_pipeline.models.encoders import (
    EncoderConfig,
    build_encoder,
    encoder_from_checkpoint,
    encoder_to_checkpoint,
)
from clue_pipeline.models.heads import (
    ClassifierModel,
    NextItemModel,
)
from clue_pipeline.models.popularity import PopularityModel
from clue_pipeline.tasks.batching import prefix_batch, prefix_row_bounds
from clue_pipeline.training.length_batching import by_length, trim_padding
from clue_pipeline.training.loop import StepFn, TrainConfig, TrainResult, fit

NEXT_ITEM_LAYOUTS = ("user", "prefix")
# The two ranking protocols (docs/quality-grid.md, "Ranking protocols"), by ``exclude_history``
PROTOCOLS = {False: "history_kept", True: "history_excluded"}
# What a ranking reports beside its scores: left out of the other protocol's validation keys
NOT_SCORES = ("history_excluded", "n_users")
POPULARITY = "pop"  # the most-popular baseline's backbone: counted, not trained
BAG_OF_ITEMS = "bag"  # the linear floor's backbone: a logistic regression over the item bag


@dataclass
class MethodSpec:
    """How a method builds its model: which backbone, from which weights, frozen or not."""

    name: str
    # encoder kind, a baseline name ("nfm", "deepfm"), "pop" or "bag" (the linear floor)
    backbone: str = "transformer"
    freeze_encoder: bool = False

    @property
    def is_baseline(self) -> bool:
        return self.backbone in BASELINES

    @property
    def is_popularity(self) -> bool:
        return self.backbone == POPULARITY

    @property
    def is_linear(self) -> bool:
        return self.backbone == BAG_OF_ITEMS


@dataclass
class RankingData:
    """Inputs (U, L+1) and 0-based target indices (U,) of one ranking evaluation."""

    tokens: np.ndarray
    targets: np.ndarray
    history: list[np.ndarray] | None = None


def make_encoder(
    config: EncoderConfig, checkpoint: dict | None, method: MethodSpec
) -> torch.nn.Module:
    """A fresh encoder (CLUE-Zero, other backbones) or the pre-trained one."""
    if checkpoint is None:
        return build_encoder(EncoderConfig(**{**config.__dict__, "kind": method.backbone}))
    encoder = encoder_from_checkpoint(checkpoint)
    if encoder.config.num_items != config.num_items:
        raise ValueError(
            f"pre-trained encoder knows {encoder.config.num_items} items but the fine-tuning data "
            f"has {config.num_items}: pre-train and fine-tune on the same item index"
        )
    return encoder


# ---------------------------------------------------------------- next-item recommendation


@dataclass
class NextItemRows:
    """What next-item fine-tuning iterates over, and the step that turns a batch into a loss.

    Two layouts (``finetune.next_item_rows``):

    - ``user``: one row per user, every position supervised (SASRec's layout). Cheap epochs,
      but the [UR] state, the one scored at evaluation, is supervised once per user and epoch.
    - ``prefix``: one row per (prefix, next item), supervised at [UR] only (RecBole's layout).
      One row per interaction, so epochs cost more, but [UR] learns from every prefix; on
      Amazon Beauty it reaches a higher validation NDCG@10 in fewer epochs
      (benchmarks/results/prefix_rows_beauty.md). Rows are two flat bounds each, cut into
      windows per batch, so the layout stays small on ML-25M-sized data.
    """

    dataset: tuple[torch.Tensor, ...]
    step: StepFn
    lengths: torch.Tensor | None = None  # for bucket_by_length when rows are not token matrices
    layout: str = "user"

    @property
    def count(self) -> int:
        return len(self.dataset[0])


def user_rows(tokens: np.ndarray, targets: np.ndarray) -> NextItemRows:
    return NextItemRows((torch.as_tensor(tokens), torch.as_tensor(targets)), next_item_step)


def prefix_rows(
    flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int, user_token: int
) -> NextItemRows:
    """Every prefix of each user's ``flat[start:end]``, predicting the item after it."""
    row_starts, row_ends = prefix_row_bounds(starts, ends)
    lengths = np.minimum(row_ends - row_starts, max_len)
    return NextItemRows(
        (torch.as_tensor(row_starts), torch.as_tensor(row_ends)),
        PrefixStep(torch.tensor(flat, dtype=torch.int64), max_len, user_token),  # a copy
        torch.as_tensor(lengths),
        layout="prefix",
    )


class PrefixStep:
    """Step over prefix rows: cuts the batch's windows from the flat item array, then the loss.

    The flat array moves to the batch's device once, not per step.
    """

    def __init__(self, flat: torch.Tensor, max_len: int, user_token: int) -> None:
        self.flat, self.max_len, self.user_token = flat, max_len, user_token

    def __call__(self, model: NextItemModel, batch, generator):
        row_starts, row_ends = batch
        if self.flat.device != row_ends.device:
            self.flat = self.flat.to(row_ends.device)
        tokens, targets = prefix_batch(
            self.flat, row_starts, row_ends, self.max_len, self.user_token
        )
        return model(tokens, targets, generator), {}


def finetune_next_item(
    train: NextItemRows,
    valid: RankingData,
    encoder: torch.nn.Module,
    config: TrainConfig,
    freeze_encoder: bool = False,
    exclude_history: bool = False,
    on_validation=None,
    head: NextItemHead | None = None,
    select_other_protocol: bool = False,
) -> tuple[NextItemModel, TrainResult]:
    """``on_validation(metrics, model)`` sees every epoch's validation metrics and the model in
    eval mode (e.g. an Optuna pruner, or a benchmark scoring the test items per epoch).

    The model is selected (and early-stopped) on ``config.monitor`` under ``exclude_history``'s
    protocol. ``select_other_protocol``: validation also ranks under the other protocol, from
    the same encoder pass, as ``<protocol>/<metric>`` keys (``protocol_key``), and the result
    keeps that protocol's own best epoch and weights (``TrainResult.also_*``).
    """
    if train.layout == "user" and encoder.config.sees_future:
        raise ValueError(
            f"encoder kind '{encoder.config.kind}' (causal: {encoder.config.causal}) lets a state "
            "see later items, so user rows would train it on the items it must predict; set "
            "finetune.next_item.rows: prefix"
        )
    torch.manual_seed(config.seed)
    model = next_item_model(encoder, head or NextItemHead(), freeze_encoder)

    other = not exclude_history
    also_monitor = None
    if select_other_protocol and config.monitor is not None:
        also_monitor = protocol_key(config.monitor, other)

    def validate(m: NextItemModel) -> dict[str, float]:
        if select_other_protocol:
            chosen, theirs = rank_next_items(m, valid, (exclude_history, other))
            metrics = {**chosen, **other_protocol_metrics(theirs, other)}
        else:
            metrics = evaluate_next_item(m, valid, exclude_history=exclude_history)
        if on_validation is not None:
            on_validation(metrics, m)
        return metrics

    result = fit(
        model,
        train.dataset,
        train.step,
        config,
        validate_fn=validate,
        lengths=train.lengths,
        also_monitor=also_monitor,
    )
    model.load_state_dict(result.best_state)
    return model, result


def protocol_key(metric: str, exclude_history: bool) -> str:
    """``history_excluded/ndcg@10``: a validation metric under a protocol other than the
    selected one (MLflow shows it as ``valid/history_excluded/ndcg_at_10``)."""
    return f"{PROTOCOLS[exclude_history]}/{metric}"


def other_protocol_metrics(metrics: dict, exclude_history: bool) -> dict[str, float]:
    """A ranking's scores under ``protocol_key`` names, without the facts beside them."""
    return {
        protocol_key(name, exclude_history): value
        for name, value in metrics.items()
        if name not in NOT_SCORES
    }


def selection_complete(result: TrainResult, config: TrainConfig) -> bool:
    """Whether the second selection (``TrainResult.also_*``) saw its curve as far as early
    stopping sees the main one's: every epoch from the first, and either the run went on to
    ``config.epochs`` or at least ``patience`` epochs past its best. Otherwise the main
    monitor's early stop may have cut it before a later, better epoch."""
    if result.also_best_state is None or result.also_since_epoch > 0:
        return False
    last = int(result.history[-1]["epoch"]) if result.history else -1
    ran_out = last + 1 >= config.epochs
    return ran_out or config.patience is None or last - result.also_best_epoch >= config.patience


def next_item_model(
    encoder: torch.nn.Module, head: NextItemHead, freeze_encoder: bool = False
) -> NextItemModel:
    """The next-item model of ``encoder`` with ``finetune.next_item``'s head settings."""
    return NextItemModel(
        encoder,
        freeze_encoder=freeze_encoder,
        readout=head.readout,
        label_smoothing=head.label_smoothing,
        contrastive_weight=head.contrastive_weight,
        contrastive_temperature=head.contrastive_temperature,
        softmax_matmul=head.softmax_matmul,
        position_share=head.position_share,
    )


def next_item_step(model: NextItemModel, batch, generator):
    tokens, targets = trim_padding(*batch)
    return model(tokens, targets, generator), {}


@torch.no_grad()
def evaluate_next_item(
    model: NextItemModel, data: RankingData, exclude_history: bool = False, batch_size: int = 1024
) -> dict[str, float]:
    """Full ranking of all items for every user (never sampled negatives)."""
    (metrics,) = rank_next_items(model, data, (exclude_history,), batch_size)
    return metrics


@torch.no_grad()
def rank_next_items(
    model: NextItemModel,
    data: RankingData,
    exclusions: tuple[bool, ...] = (False, True),
    batch_size: int = 1024,
) -> list[dict[str, float]]:
    """The full ranking once per history exclusion, from one encoder pass over the users."""
    model.eval()
    vectors = by_length(
        model.query_vectors, data.tokens, batch_size, next(model.parameters()).device
    )
    item_matrix = model.item_matrix().detach()
    targets = torch.as_tensor(data.targets)
    return [
        ranking_metrics(vectors, item_matrix, targets, exclude=data.history if exclude else None)
        for exclude in exclusions
    ]


# ---------------------------------------------------------------- classification heads


def build_classifier(
    method: MethodSpec,
    encoder_config: EncoderConfig,
    checkpoint: dict | None,
    num_classes: int,
    baseline_params: dict | None = None,
    readout: str = "ur",
) -> torch.nn.Module:
    """The classifier of ``method``; ``readout`` picks the user vector of encoder methods."""
    if method.is_baseline:
        config = BaselineConfig(
            num_items=encoder_config.num_items,
            num_classes=num_classes,
            **(baseline_params or {}),
        )
        return BASELINES[method.backbone](config)
    encoder = make_encoder(encoder_config, checkpoint, method)
    return ClassifierModel(
        encoder, num_classes, freeze_encoder=method.freeze_encoder, readout=readout
    )


def finetune_classifier(
    model: torch.nn.Module,
    train_tokens: np.ndarray,
    train_labels: np.ndarray,
    validate_fn,
    config: TrainConfig,
) -> tuple[torch.nn.Module, TrainResult]:
    torch.manual_seed(config.seed)
    dataset = (torch.as_tensor(train_tokens), torch.tensor(train_labels))  # labels: a copy
    result = fit(model, dataset, _classifier_step, config, validate_fn=validate_fn)
    model.load_state_dict(result.best_state)
    return model, result


def _classifier_step(model, batch, generator):
    (tokens,) = trim_padding(batch[0])
    return model(tokens, batch[1]), {}


@torch.no_grad()
def predict_logits(model: torch.nn.Module, tokens: np.ndarray, batch_size: int = 1024):
    model.eval()
    return by_length(model.logits, tokens, batch_size, next(model.parameters()).device)


def evaluate_profiling(model, tokens: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    predictions = predict_logits(model, tokens).argmax(dim=1).numpy()
    return classification_metrics(labels, predictions, num_classes)


@torch.no_grad()
def evaluate_coldstart(
    model,
    tokens: np.ndarray,
    targets: np.ndarray,
    num_classes: int | None = None,
    batch_size: int = 1024,
) -> dict:
    """Rank all target-domain items by the classifier's logits, one instance per (user, item).

    Ties count against the target (the metrics module's pessimistic convention).
    """
    model.eval()

    def target_ranks(batch: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = model.logits(batch)
        own = logits.gather(1, target[:, None])
        return (logits >= own).sum(dim=1) - 1

    device = next(model.parameters()).device
    targets = np.asarray(targets, dtype=np.int64)
    ranks = by_length(target_ranks, tokens, batch_size, device, targets)
    return {**metrics_from_ranks(ranks, DEFAULT_KS), "history_excluded": False}


# ---------------------------------------------------------------- shared helpers


def export_checkpoint(model: torch.nn.Module, method: MethodSpec, **extra) -> dict:
    """A fine-tuned model as plain tensors and config (``torch.load(weights_only=True)``)."""
    state = {
        "method": method.name,
        "backbone": method.backbone,
        "freeze_encoder": method.freeze_encoder,
        **extra,
    }
    if method.is_baseline:
        state["baseline_config"] = asdict(model.config)
    elif hasattr(model, "encoder"):
        state["encoder"] = encoder_to_checkpoint(model.encoder)
    if method.is_linear:
        state["items_end"] = model.items_end
    if isinstance(model, ClassifierModel):
        state["readout"] = model.readout
    state["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return state


def restore_model(checkpoint: dict, state_dict: dict | None = None) -> torch.nn.Module:
    """The fine-tuned model of ``export_checkpoint``, rebuilt and loaded, in eval mode.

    ``state_dict``: other weights of the same model to load instead, e.g. a next-item
    checkpoint's selection under the other ranking protocol (``other_selection``).
    """
    frozen = bool(checkpoint.get("freeze_encoder", False))
    if checkpoint.get("backbone") == POPULARITY:
        return PopularityModel(checkpoint["state_dict"]["counts"]).eval()
    if checkpoint.get("backbone") == BAG_OF_ITEMS:
        state = checkpoint["state_dict"]
        return BagOfItemsModel(
            state["idf"], state["weight"], state["bias"], int(checkpoint["items_end"])
        ).eval()
    if checkpoint.get("task") == "next_item":
        model = NextItemModel(
            encoder_from_checkpoint(checkpoint["encoder"]),
            freeze_encoder=frozen,
            readout=checkpoint.get("readout", DEFAULT_READOUT),
        )
    elif checkpoint["backbone"] in BASELINES:
        config = BaselineConfig(**checkpoint["baseline_config"])
        model = BASELINES[checkpoint["backbone"]](config)
    else:
        model = ClassifierModel(
            encoder_from_checkpoint(checkpoint["encoder"]),
            int(checkpoint["num_classes"]),
            freeze_encoder=frozen,
            readout=checkpoint.get("readout", "ur"),
        )
    model.load_state_dict(checkpoint["state_dict"] if state_dict is None else state_dict)
    return model.eval()
