"""Nodes of the `finetune` pipeline: one function per downstream task, any method."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from clue_pipeline.config import FinetuneSettings, encoder_config, parse_finetune, to_dataclass
from clue_pipeline.data.tokens import special_tokens
from clue_pipeline.data.transfer import downstream_rows
from clue_pipeline.models.bag_of_items import fit_bag_of_items
from clue_pipeline.models.heads import ClassifierModel, balanced_class_weights
from clue_pipeline.models.popularity import PopularityModel, counts_of
from clue_pipeline.pipelines.finetune.linear_probe import fit_logistic_probe
from clue_pipeline.tasks.finetuning import (
    PROTOCOLS,
    MethodSpec,
    build_classifier,
    evaluate_coldstart,
    evaluate_next_item,
    evaluate_profiling,
    export_checkpoint,
    finetune_classifier,
    make_encoder,
    selection_complete,
)
from clue_pipeline.tasks.finetuning import finetune_next_item as train_next_item
from clue_pipeline.tasks.fingerprint import fingerprint, job_checkpoint_dir
from clue_pipeline.tasks.task_data import (
    classification_data,
    keep_training_users,
    next_item_data,
)
from clue_pipeline.training.loop import TrainResult, announce_part

logger = logging.getLogger(__name__)


def finetune_next_item(
    split: pd.DataFrame,
    item_index: pd.DataFrame,
    encoder_params: dict,
    finetune_params: dict | FinetuneSettings,
    method_params: dict,
    pretrained: dict | None = None,
    exclude_history: bool = False,
) -> tuple[dict, list[dict]]:
    """Whole-network fine-tuning for next-item recommendation; early stopping on validation.

    ``finetune.next_item.rows`` picks the training rows: one per user (``user``) or one per
    prefix (``prefix``); see :class:`clue_pipeline.tasks.finetuning.NextItemRows`. Models are
    selected on the ranking protocol the test uses (``evaluate.exclude_history``), which also
    decides early stopping; the same run keeps the other protocol's best epoch too, so each
    protocol's test is that of the model selected under it (``_selections``).
    """
    settings = parse_finetune(finetune_params)
    method = _method(method_params)
    encoder_cfg = encoder_config(encoder_params, num_items=len(item_index))
    split = downstream_rows(split)  # the inductive protocol's downstream users only
    data = _sparsify(next_item_data(split, encoder_cfg.max_len, encoder_cfg.num_items), settings)
    head = settings.next_item
    layout = head.rows
    if method.is_popularity:
        model = PopularityModel(counts_of(_training_items(data), encoder_cfg.num_items, offset=1))
        history = [{"epoch": 0, **evaluate_next_item(model, data.valid, exclude_history)}]
        checkpoint = export_checkpoint(
            model, method, task="next_item", max_len=encoder_cfg.max_len, training_rows=layout
        )
        return checkpoint, history
    rows = data.training_rows(layout)
    config = _train_config(
        settings,
        "next_item",
        method,
        data.train_tokens,
        layout,
        encoder_cfg,
        head,
        _weights_id(pretrained),
        f"selected under {PROTOCOLS[exclude_history]}",  # another protocol: another run
    )
    logger.info("next-item %s: %d training rows (%s layout)", method.name, rows.count, layout)
    torch.manual_seed(config.seed)  # the initial weights follow the seed, not what ran before
    model, result = train_next_item(
        rows,
        data.valid,
        make_encoder(encoder_cfg, pretrained, method),
        config,
        freeze_encoder=method.freeze_encoder,
        exclude_history=exclude_history,
        head=head,
        select_other_protocol=True,
    )
    logger.info("next-item %s: best epoch %s of %d", method.name, result.best_epoch, config.epochs)
    return (
        export_checkpoint(
            model,
            method,
            task="next_item",
            max_len=encoder_cfg.max_len,
            training_rows=layout,
            readout=head.readout,
            **_selections(result, config, exclude_history),
        ),
        result.history,
    )


def _selections(result: TrainResult, config, exclude_history: bool) -> dict:
    """What the next-item checkpoint says of its model selection: the protocol and epoch of
    its weights, and the other protocol's own best epoch and weights from the same run, with
    whether early stopping (driven by the first) left that curve complete."""
    selections = {"selected_under": PROTOCOLS[exclude_history], "best_epoch": result.best_epoch}
    if result.also_best_state is None:
        return selections
    complete = selection_complete(result, config)
    other = PROTOCOLS[not exclude_history]
    logger.info(
        "next-item: best epoch under %s %d%s",
        other,
        result.also_best_epoch,
        "" if complete else " (its curve was cut short by the early stop)",
    )
    selections["other_selection"] = {
        "protocol": other,
        "monitor": result.also_monitor,
        "best_epoch": result.also_best_epoch,
        "selection_complete": complete,
        "state_dict": result.also_best_state,
    }
    return selections


def finetune_profiling(
    profile_split: pd.DataFrame,
    profile_classes: dict,
    item_index: pd.DataFrame,
    encoder_params: dict,
    finetune_params: dict | FinetuneSettings,
    method_params: dict,
    pretrained: dict | None = None,
) -> tuple[dict, dict]:
    """One classifier per profile attribute (gender, age, ...), each fine-tuned separately."""
    settings = parse_finetune(finetune_params)
    method = _method(method_params)
    if profile_split.empty:
        reason = "profiling skipped: this dataset has no user attributes (profile_split is empty)"
        logger.warning("%s (%s)", reason, method.name)
        return {"skipped": reason}, {"skipped": reason}
    encoder_cfg = encoder_config(encoder_params, num_items=len(item_index))
    profile_split = downstream_rows(profile_split)
    sequences = profile_split.drop_duplicates("user_id")[["user_id", "items"]]
    max_len = _longest(sequences) if method.is_linear else encoder_cfg.max_len
    models, histories = {}, {}
    for task, classes in profile_classes.items():
        instances = profile_split[profile_split["task"] == task]
        data = _sparsify(
            classification_data(
                sequences, instances, "label", max_len, encoder_cfg.num_items, len(classes)
            ),
            settings,
        )
        announce_part(task)
        model, result = _fit_classifier(
            data, encoder_cfg, pretrained, method, settings, "profiling", evaluate_profiling
        )
        models[task] = export_checkpoint(
            model, method, task=task, num_classes=len(classes), max_len=max_len
        )
        histories[task] = result.history
    return models, histories


def finetune_coldstart(
    coldstart_source: pd.DataFrame,
    coldstart_targets: pd.DataFrame,
    target_index: pd.DataFrame,
    item_index: pd.DataFrame,
    encoder_params: dict,
    finetune_params: dict | FinetuneSettings,
    method_params: dict,
    pretrained: dict | None = None,
) -> tuple[dict, list[dict]]:
    """Source-domain user vector -> softmax over target-domain items; one instance per pair."""
    settings = parse_finetune(finetune_params)
    method = _method(method_params)
    encoder_cfg = encoder_config(encoder_params, num_items=len(item_index))
    coldstart_source = downstream_rows(coldstart_source)
    max_len = _longest(coldstart_source) if method.is_linear else encoder_cfg.max_len
    data = _sparsify(
        classification_data(
            coldstart_source,
            coldstart_targets,
            "target",
            max_len,
            encoder_cfg.num_items,
            num_classes=len(target_index),
        ),
        settings,
    )
    model, result = _fit_classifier(
        data, encoder_cfg, pretrained, method, settings, "coldstart", evaluate_coldstart
    )
    checkpoint = export_checkpoint(
        model, method, task="coldstart", num_classes=data.num_classes, max_len=max_len
    )
    return checkpoint, result.history


def _fit_classifier(data, encoder_cfg, pretrained, method, settings, task, evaluate):
    if method.is_linear:
        return _fit_linear(data, encoder_cfg, settings, task, evaluate)
    if method.is_popularity:
        model = PopularityModel(counts_of(data.labels["train"], data.num_classes))
        metrics = evaluate(model, data.tokens["valid"], data.labels["valid"], data.num_classes)
        return model, TrainResult(
            best_state=None, history=[{"epoch": 0, **metrics}], best_epoch=0, steps=0
        )
    config = _train_config(
        settings,
        task,
        method,
        data.tokens["train"],
        data.labels["train"],
        encoder_cfg,
        _weights_id(pretrained),
        settings.classifier,
    )
    torch.manual_seed(config.seed)  # the initial weights follow the seed, not what ran before
    model = build_classifier(
        method,
        encoder_cfg,
        pretrained,
        data.num_classes,
        baseline_params=settings.baselines.get(method.backbone),
        readout=settings.classifier.readout,
    )
    _weigh_classes(model, method.name, settings.classifier.class_weights, data)

    def validate(m):
        return evaluate(m, data.tokens["valid"], data.labels["valid"], data.num_classes)

    def probe(fine_tuned: bool):
        return fit_logistic_probe(
            model,
            data.tokens["train"],
            data.labels["train"],
            settings.classifier.probe_c_grid,
            validate,
            config.monitor,
            seed=config.seed,
            then_fine_tuned=fine_tuned,
        )

    if method.freeze_encoder and settings.classifier.probe == "logistic_regression":
        model, history = probe(fine_tuned=False)
        return model, _fitted_without_epochs(history, config.monitor)
    if settings.classifier.head_init == "logistic_probe" and not method.freeze_encoder:
        if isinstance(model, ClassifierModel):
            model, _ = probe(fine_tuned=True)  # LP, then FT below
        else:
            logger.info("finetune.classifier.head_init: %s has no vector head", method.name)
    return finetune_classifier(model, data.tokens["train"], data.labels["train"], validate, config)


def _weigh_classes(model, method: str, weighting: str, data) -> None:
    """``finetune.classifier.class_weights``: the training loop's loss weighs rare classes up
    (the logistic probe and the floor fit unweighted)."""
    if weighting == "none":
        return
    if not isinstance(model, ClassifierModel):
        logger.info("finetune.classifier.class_weights: %s has no vector head to weigh", method)
        return
    model.weigh_classes(balanced_class_weights(data.labels["train"], data.num_classes))


def _fit_linear(data, encoder_cfg, settings: FinetuneSettings, task: str, evaluate):
    """The bag-of-items floor: one logistic regression per ``C``, chosen on validation by the
    task's monitored metric (the checkpoint's history holds one row per ``C``)."""
    monitor = settings.train_for(task, "linear").monitor

    def validate(model):
        return evaluate(model, data.tokens["valid"], data.labels["valid"], data.num_classes)

    model, history = fit_bag_of_items(
        data.tokens,
        data.labels,
        special_tokens(encoder_cfg.num_items).items_end,
        data.num_classes,
        settings.linear,
        validate,
        monitor,
        seed=settings.seed,
    )
    return model, _fitted_without_epochs(history, monitor)


def _fitted_without_epochs(history: list[dict], monitor: str) -> TrainResult:
    """The result of a fit tried once per setting (one history row each, e.g. per C): the best
    row on ``monitor`` stands for the best epoch; its weights are the model's own."""
    best = max(range(len(history)), key=lambda i: history[i][monitor])
    return TrainResult(best_state=None, history=history, best_epoch=best, steps=0)


def _longest(sequences: pd.DataFrame) -> int:
    """The longest row's length: the linear floor reads each user's whole stored history."""
    lengths = sequences["items"].map(len)
    return max(int(lengths.max()) if len(lengths) else 1, 1)


def _train_config(settings: FinetuneSettings, task: str, method: MethodSpec, *parts):
    """Shared training knobs, then the task's, then the method's overrides.

    ``parts`` (data arrays, initial weights) go into the checkpoint folder's fingerprint.
    """
    config = settings.train_for(task, method.name)
    base_dir = config.checkpoint_dir
    return replace(
        config,
        checkpoint_dir=job_checkpoint_dir(base_dir, f"{task}/{method.name}", config, *parts),
    )


def _method(method_params: dict) -> MethodSpec:
    """``finetune.methods.<m>``: its ``backbone`` is the encoder kind for that method (it
    replaces ``encoder.kind``, by design: a GRU method trains a GRU whatever the default)."""
    return to_dataclass(MethodSpec, method_params, "finetune.methods")


def _training_items(data) -> np.ndarray:
    """The items of the (kept) training users' training parts, one entry per interaction."""
    parts = [data.train_flat[a:b] for a, b in zip(data.train_starts, data.train_ends, strict=True)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _weights_id(checkpoint: dict | None) -> str:
    """Identity of the initial weights: a pre-trained encoder's fingerprint, or 'random'."""
    if checkpoint is None:
        return "random"
    state = checkpoint["state_dict"]
    return fingerprint(*(state[k].float().numpy() for k in sorted(state)))


def _sparsify(data, settings: FinetuneSettings):
    return keep_training_users(data, settings.train_user_fraction, settings.seed)
