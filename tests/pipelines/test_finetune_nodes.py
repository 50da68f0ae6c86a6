"""The fine-tuning and evaluation nodes of every task on small real-shaped tables, with the
project's own parameters and a one-epoch budget: each method trains and is scored."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader

from clue_pipeline.pipelines.evaluate import nodes as evaluate
from clue_pipeline.pipelines.finetune import nodes as finetune
from tests.conftest import REPO_ROOT

NUM_ITEMS = 40


@pytest.fixture(scope="module")
def params() -> dict:
    loader = OmegaConfigLoader(
        str(REPO_ROOT / "conf"), base_env="base", default_run_env="base", merge_strategy={}
    )
    values = loader["parameters"]
    values["finetune"]["train"].update(
        {"epochs": 1, "batch_size": 16, "checkpoint_dir": None, "progress": False}
    )
    values["encoder"].update({"max_len": 10, "hidden": 16, "heads": 2})
    return values


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(0)
    users = np.arange(1, 121)
    items = [
        rng.integers(1, NUM_ITEMS + 1, size=rng.integers(4, 15)).astype(np.int32) for _ in users
    ]
    splits = np.array(["train"] * 96 + ["valid"] * 6 + ["test"] * 18, dtype=object)
    item_index = pd.DataFrame(
        {"item_id": np.arange(1, NUM_ITEMS + 1) * 10, "token": np.arange(1, NUM_ITEMS + 1)}
    )
    profile = pd.DataFrame(
        {
            "user_id": users,
            "items": items,
            "task": "gender",
            "label": rng.integers(0, 2, size=len(users)),
            "split": splits,
        }
    )
    targets = pd.DataFrame(
        {"user_id": users, "target": rng.integers(0, 8, size=len(users)), "split": splits}
    )
    source = pd.DataFrame({"user_id": users, "items": items})
    split = pd.DataFrame(
        {
            "user_id": users,
            "train": [s[:-2] for s in items],
            "valid_target": [s[-2] for s in items],
            "test_target": [s[-1] for s in items],
        }
    )
    return item_index, profile, targets, source, split


@pytest.mark.parametrize("method", ["clue_zero", "clue_probe", "nfm", "deepfm", "pop"])
def test_profiling_trains_and_scores_each_attribute(params, tables, method):
    item_index, profile, _, _, _ = tables
    spec = params["finetune"]["methods"][method]
    models, histories = finetune.finetune_profiling(
        profile, {"gender": ["F", "M"]}, item_index, params["encoder"], params["finetune"], spec
    )
    assert set(models) == {"gender"} and len(histories["gender"]) == 1
    record = evaluate.evaluate_profiling(
        models, profile, {"gender": ["F", "M"]}, item_index, params["evaluate"], "toy"
    )
    result = record["metrics"]["gender"]
    assert result["n"] == 18 and 0.0 <= result["accuracy"] <= 1.0
    parts = profile["split"].value_counts()
    counts = f"gender {parts['train']}/{parts.get('valid', 0)}/{parts['test']}"
    assert record["split"].endswith(counts)  # the split it read, not a fixed 80/5/15


def _clue_zero_profiling(params, tables, classifier: dict):
    """CLUE-Zero fine-tuned for gender with ``finetune.classifier`` set to ``classifier``."""
    item_index, profile, _, _, _ = tables
    return finetune.finetune_profiling(
        profile,
        {"gender": ["F", "M"]},
        item_index,
        params["encoder"],
        {**params["finetune"], "classifier": classifier},
        params["finetune"]["methods"]["clue_zero"],
    )


@pytest.mark.parametrize("readout", ["ur", "mean_items", "ur_and_mean_items"])
def test_profiling_readout_is_a_parameter_and_travels_with_the_model(params, tables, readout):
    item_index, profile, _, _, _ = tables
    models, _ = _clue_zero_profiling(params, tables, {"readout": readout})
    assert models["gender"]["readout"] == readout
    record = evaluate.evaluate_profiling(
        models, profile, {"gender": ["F", "M"]}, item_index, params["evaluate"], "toy"
    )
    assert record["readout"] == readout and record["metrics"]["gender"]["n"] == 18
    with pytest.raises(ValueError, match="finetune.classifier.readout"):
        _clue_zero_profiling(params, tables, {"readout": "mean"})


def test_lp_ft_fits_the_probe_then_trains_everything(params, tables, caplog):
    with caplog.at_level(logging.INFO):
        _, histories = _clue_zero_profiling(params, tables, {"head_init": "logistic_probe"})
    assert "logistic probe C=" in caplog.text  # the head started from the probe
    assert len(histories["gender"]) >= 1 and "epoch" in histories["gender"][0]  # then epochs
    with pytest.raises(ValueError, match="finetune.classifier.head_init"):
        _clue_zero_profiling(params, tables, {"head_init": "probe"})


def test_class_weights_balanced_weigh_the_loss_by_the_training_labels(params, tables, monkeypatch):
    from clue_pipeline.models.heads import ClassifierModel, balanced_class_weights

    weighed = []
    original = ClassifierModel.weigh_classes
    monkeypatch.setattr(
        ClassifierModel,
        "weigh_classes",
        lambda model, weight: weighed.append(weight) or original(model, weight),
    )
    _clue_zero_profiling(params, tables, {"class_weights": "none"})
    assert weighed == []
    models, _ = _clue_zero_profiling(params, tables, {"class_weights": "balanced"})
    _, profile, _, _, _ = tables
    train = profile.loc[profile["split"] == "train", "label"].to_numpy()
    assert len(weighed) == 1
    assert weighed[0].tolist() == balanced_class_weights(train, 2).tolist()
    assert "class_weight" not in models["gender"]["state_dict"]  # not saved: scores ignore it
    with pytest.raises(ValueError, match="finetune.classifier.class_weights"):
        _clue_zero_profiling(params, tables, {"class_weights": "inverse"})


def test_a_frozen_probe_can_be_fitted_by_logistic_regression(params, tables):
    item_index, profile, _, _, _ = tables
    classifier = {"readout": "mean_items", "probe": "logistic_regression", "probe_c_grid": [0.1, 1]}
    models, histories = finetune.finetune_profiling(
        profile,
        {"gender": ["F", "M"]},
        item_index,
        params["encoder"],
        {**params["finetune"], "classifier": classifier},
        params["finetune"]["methods"]["clue_probe"],
    )
    assert [row["C"] for row in histories["gender"]] == [0.1, 1.0]
    record = evaluate.evaluate_profiling(
        models, profile, {"gender": ["F", "M"]}, item_index, params["evaluate"], "toy"
    )
    assert record["readout"] == "mean_items" and record["metrics"]["gender"]["n"] == 18


@pytest.mark.parametrize("method", ["clue_zero", "deepfm", "pop"])
def test_coldstart_trains_and_ranks_target_items(params, tables, method):
    item_index, _, targets, source, _ = tables
    target_index = pd.DataFrame({"item_id": np.arange(8), "target": np.arange(8)})
    spec = params["finetune"]["methods"][method]
    model, history = finetune.finetune_coldstart(
        source, targets, target_index, item_index, params["encoder"], params["finetune"], spec
    )
    record = evaluate.evaluate_coldstart(
        model, source, targets, item_index, params["evaluate"], "toy"
    )
    assert record["metrics"]["n_users"] == 18
    assert record["metrics"]["recall@5"] <= record["metrics"]["recall@10"] == 1.0  # 8 classes


@pytest.mark.parametrize("layout", ["user", "prefix"])
@pytest.mark.parametrize("method", ["clue_zero", "gru", "caser", "mip_probe", "pop"])
def test_next_item_trains_and_ranks_all_items(params, tables, method, layout):
    item_index, _, _, _, split = tables
    spec = params["finetune"]["methods"][method]
    pretrained = None
    if method == "mip_probe":
        from clue_pipeline.config import encoder_config
        from clue_pipeline.models.encoders import build_encoder, encoder_to_checkpoint

        pretrained = encoder_to_checkpoint(
            build_encoder(encoder_config(params["encoder"], NUM_ITEMS))
        )
    settings = {**params["finetune"], "next_item": {"rows": layout}}
    model, history = finetune.finetune_next_item(
        split, item_index, params["encoder"], settings, spec, pretrained
    )
    assert len(history) == 1 and "ndcg@10" in history[0]
    assert method == "pop" or np.isfinite(history[0]["loss"])  # pop counts, trains nothing
    record = evaluate.evaluate_next_item(model, split, item_index, params["evaluate"], "toy")
    assert record["metrics"]["n_users"] == 120 and record["history_excluded"] is False
    assert record["training_rows"] == layout
    kept, excluded = record["protocols"]["history_kept"], record["protocols"]["history_excluded"]
    assert record["metrics"] == kept and excluded["history_excluded"] is True
    # Every test item that is not among the user's history ranks at least as high without it.
    assert excluded["mrr@10"] >= kept["mrr@10"] - 0.02


@pytest.mark.parametrize("readout", ["ur", "last_item"])
def test_next_item_readout_is_a_parameter_and_travels_with_the_model(params, tables, readout):
    item_index, _, _, _, split = tables
    settings = {**params["finetune"], "next_item": {"readout": readout, "label_smoothing": 0.1}}
    model, _ = finetune.finetune_next_item(
        split, item_index, params["encoder"], settings, params["finetune"]["methods"]["clue_zero"]
    )
    assert model["readout"] == readout
    record = evaluate.evaluate_next_item(model, split, item_index, params["evaluate"], "toy")
    assert record["readout"] == readout and record["metrics"]["n_users"] == 120
    bad = {**params["finetune"], "next_item": {"readout": "first"}}
    with pytest.raises(ValueError, match=r"finetune.next_item.readout = 'first'"):
        finetune.finetune_next_item(
            split, item_index, params["encoder"], bad, params["finetune"]["methods"]["clue_zero"]
        )


def test_next_item_rows_of_unknown_layout_name_the_parameter(params, tables):
    item_index, _, _, _, split = tables
    settings = {**params["finetune"], "next_item": {"rows": "session"}}
    with pytest.raises(ValueError, match=r"finetune.next_item.rows = 'session'"):
        finetune.finetune_next_item(
            split, item_index, params["encoder"], settings, params["finetune"]["methods"]["clue"]
        )


def test_pop_scores_items_by_training_count_and_labels_by_majority(params, tables):
    item_index, profile, targets, source, split = tables
    spec = params["finetune"]["methods"]["pop"]
    model, _ = finetune.finetune_next_item(
        split, item_index, params["encoder"], params["finetune"], spec
    )
    training = np.concatenate(split["train"].to_list())
    expected = np.bincount(training, minlength=NUM_ITEMS + 1)[1:]
    assert model["state_dict"]["counts"].numpy().tolist() == expected.tolist()
    record = evaluate.evaluate_next_item(model, split, item_index, params["evaluate"], "toy")
    assert record["method"] == "pop" and 0.0 < record["metrics"]["recall@20"] <= 1.0

    models, _ = finetune.finetune_profiling(
        profile, {"gender": ["F", "M"]}, item_index, params["encoder"], params["finetune"], spec
    )
    record = evaluate.evaluate_profiling(
        models, profile, {"gender": ["F", "M"]}, item_index, params["evaluate"], "toy"
    )
    gender = record["metrics"]["gender"]
    train_labels = profile.loc[profile["split"] == "train", "label"]
    majority = int(np.bincount(train_labels).argmax())
    test_labels = profile.loc[profile["split"] == "test", "label"]
    assert gender["accuracy"] == pytest.approx(float((test_labels == majority).mean()))


@pytest.mark.parametrize("method", ["clue_zero", "deepfm"])
def test_initial_weights_follow_the_seed_not_what_ran_before(params, tables, method):
    """A node's model is the same whether it runs first in a process or after others that
    drew random numbers (a `kedro run` of the whole chain, or one cell's `--nodes`)."""
    import torch

    item_index, _, targets, source, _ = tables
    target_index = pd.DataFrame({"item_id": np.arange(8), "target": np.arange(8)})
    spec = params["finetune"]["methods"][method]
    states = []
    for noise in (0, 1):
        torch.manual_seed(noise)
        torch.rand(noise * 7 + 1)
        model, _ = finetune.finetune_coldstart(
            source, targets, target_index, item_index, params["encoder"], params["finetune"], spec
        )
        states.append(model["state_dict"])
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key


# Validation NDCG@10 per epoch and protocol: kept peaks at epoch 1 and early-stops the run at 4
# (patience 3); excluded peaks at 3, one epoch before that stop, so its curve is cut short.
SCRIPTED = {False: [0.1, 0.3, 0.2, 0.2, 0.2, 0.2], True: [0.1, 0.2, 0.3, 0.4, 0.35, 0.3]}


def test_each_protocol_is_tested_with_the_model_selected_under_it(params, tables, monkeypatch):
    from clue_pipeline.tasks import finetuning as tasks

    item_index, _, _, _, split = tables
    calls = {False: 0, True: 0}

    def scripted(model, data, exclusions=(False, True), batch_size=1024):
        rankings = []
        for exclude in exclusions:
            score = SCRIPTED[exclude][calls[exclude]]
            calls[exclude] += 1
            rankings.append({"ndcg@10": score, "n_users": 6, "history_excluded": exclude})
        return rankings

    monkeypatch.setattr(tasks, "rank_next_items", scripted)  # validation only
    settings = {**params["finetune"], "train": {**params["finetune"]["train"], "epochs": 6}}
    spec = params["finetune"]["methods"]["clue_zero"]
    checkpoint, history = finetune.finetune_next_item(
        split, item_index, params["encoder"], settings, spec
    )
    assert [entry["history_excluded/ndcg@10"] for entry in history] == SCRIPTED[True][:5]
    assert "history_excluded/n_users" not in history[0]
    other = checkpoint["other_selection"]
    assert (checkpoint["selected_under"], checkpoint["best_epoch"]) == ("history_kept", 1)
    assert (other["protocol"], other["best_epoch"]) == ("history_excluded", 3)
    assert other["selection_complete"] is False  # stopped 1 epoch past its best, not 3

    record = evaluate.evaluate_next_item(checkpoint, split, item_index, params["evaluate"], "toy")
    assert record["selection"] == {
        "history_kept": {
            "selected_epoch": 1,
            "selected_under": "history_kept",
            "selection_complete": True,
        },
        "history_excluded": {
            "selected_epoch": 3,
            "selected_under": "history_excluded",
            "selection_complete": False,
        },
    }
    max_len = int(checkpoint["max_len"])
    data = evaluate.next_item_data(evaluate.downstream_rows(split), max_len, len(item_index))
    selected = tasks.restore_model(checkpoint, other["state_dict"])
    (excluded,) = evaluate.rank_next_items(selected, data.test, (True,))
    (kept,) = evaluate.rank_next_items(tasks.restore_model(checkpoint), data.test, (False,))
    assert record["protocols"] == {"history_kept": kept, "history_excluded": excluded}
    assert record["metrics"] == kept

    new_keys = ("other_selection", "selected_under", "best_epoch")
    before = {k: v for k, v in checkpoint.items() if k not in new_keys}  # an older checkpoint
    old = evaluate.evaluate_next_item(before, split, item_index, params["evaluate"], "toy")
    assert old["protocols"]["history_kept"] == kept  # one model for both protocols
    assert old["protocols"]["history_excluded"] != excluded
    assert old["selection"]["history_excluded"]["selected_epoch"] is None
    assert old["selection"]["history_excluded"]["selected_under"] is None
    assert "no selection per protocol" in old["selection"]["history_excluded"]["note"]
