"""A tuning trial trains what `kedro run` would: the configured pre-training objective and the
configured next-item head, not the defaults, with its sampled knobs set where they belong."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from clue_pipeline.config import SearchSpace
from clue_pipeline.models.encoders import EncoderConfig
from clue_pipeline.models.objectives import ObjectiveConfig
from clue_pipeline.tasks import tuning
from clue_pipeline.tasks.finetuning import NextItemHead
from clue_pipeline.tasks.pretraining import SimSiamConfig
from clue_pipeline.training.loop import TrainConfig


def _base(**changes) -> tuning.TrialRecipe:
    return tuning.TrialRecipe(
        encoder=EncoderConfig(num_items=10, max_len=8, norm="post"),
        views={"strategies": ["dropout"]},
        pretrain=TrainConfig(epochs=1, batch_size=2),
        finetune=TrainConfig(epochs=1, batch_size=2, monitor="ndcg@10"),
        simsiam=SimSiamConfig(),
        **changes,
    )


def test_trial_pretrains_with_the_configured_objective_and_finetunes_with_the_head(monkeypatch):
    seen: dict = {}

    def fake_pretrain(job):
        seen["objective"] = job.settings.objective.name
        seen["dropout"] = job.encoder.dropout
        return {}, []

    def fake_finetune(
        rows, valid, encoder, config, on_validation=None, head=None, exclude_history=False
    ):
        seen["rows"], seen["head"], seen["exclude_history"] = rows, head, exclude_history
        on_validation({"ndcg@10": 0.25})
        return None, SimpleNamespace(history=[{"ndcg@10": 0.25}])

    monkeypatch.setattr(tuning, "run_job", fake_pretrain)
    monkeypatch.setattr(tuning, "make_encoder", lambda *args: None)
    monkeypatch.setattr(tuning, "train_next_item", fake_finetune)
    inputs = tuning.TrialInputs(np.zeros((4, 9), dtype=np.int64), "prefix rows", None)
    trial_value = tuning.make_objective(
        inputs_for=lambda max_len: inputs,
        base=_base(
            objective=ObjectiveConfig(name="vicreg"),
            head=NextItemHead(readout="last_item"),
            exclude_history=True,
        ),
        space=SearchSpace(dropout=(0.2, 0.3)),
        parent_run_id=None,
    )
    study = optuna.create_study(direction="maximize")
    study.optimize(trial_value, n_trials=1)

    assert study.best_value == 0.25
    assert seen["objective"] == "vicreg"
    assert seen["head"].readout == "last_item"
    assert seen["exclude_history"] is True  # validated on the protocol the test uses
    assert seen["rows"] == "prefix rows"
    assert 0.2 <= seen["dropout"] <= 0.3


def test_each_knob_is_sampled_in_its_range_and_set_on_its_setting():
    space = SearchSpace(
        dropout=(0.2, 0.3),
        pretrain_lr=(1e-4, 1e-2),
        finetune_lr=(1e-4, 1e-2),
        weight_decay=(0.0, 1e-3),
        blocks=(1, 3),
        heads=[1, 2],
        ffn_hidden=[32, 128],
        frequency_mix=(0.3, 0.9),
        frequency_cutoff=(1, 4),
        max_len=(6, 8),
        ratio=(0.1, 0.5),
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        knobs = tuning.sample_knobs(trial, space)
        recipe = tuning.trial_recipe(_base(), knobs)
        study.tell(trial, 0.0)
        assert (
            set(knobs)
            == set(trial.params)
            == {n for n in SearchSpace.__dataclass_fields__ if getattr(space, n)}
        )
        assert isinstance(knobs["blocks"], int) and 1 <= knobs["blocks"] <= 3
        assert 6 <= recipe.encoder.max_len <= 8 and recipe.encoder.heads in (1, 2)
        assert recipe.encoder.frequency_cutoff == knobs["frequency_cutoff"]
        assert recipe.encoder.ffn_hidden == knobs["ffn_hidden"]
        assert recipe.pretrain.lr == knobs["pretrain_lr"]
        assert recipe.finetune.lr == knobs["finetune_lr"]
        assert recipe.finetune.weight_decay == knobs["weight_decay"]
        assert recipe.views["crop_ratio"] == recipe.views["mask_ratio"] == knobs["ratio"]


@pytest.mark.parametrize("kind", ["median", "halving"])
def test_the_pruner_is_the_configured_one(kind):
    from clue_pipeline.config.blocks import PrunerConfig

    pruner = tuning.make_pruner(PrunerConfig(kind=kind))
    expected = {
        "median": optuna.pruners.MedianPruner,
        "halving": optuna.pruners.SuccessiveHalvingPruner,
    }
    assert isinstance(pruner, expected[kind])
