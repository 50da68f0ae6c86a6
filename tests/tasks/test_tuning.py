"""A tuning trial trains what `kedro run` would: the configured pre-training objective and the
configured next-item head, not the defaults."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import optuna

from clue_pipeline.models.encoders import EncoderConfig
from clue_pipeline.models.objectives import ObjectiveConfig
from clue_pipeline.tasks import tuning
from clue_pipeline.tasks.finetuning import NextItemHead
from clue_pipeline.tasks.pretraining import SimSiamConfig
from clue_pipeline.training.loop import TrainConfig


class _Rows:
    valid = None

    def training_rows(self, layout: str) -> str:
        return f"{layout} rows"


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
    trial_value = tuning.make_objective(
        data=_Rows(),
        pretrain_tokens=np.zeros((4, 6), dtype=np.int64),
        encoder=EncoderConfig(num_items=10, max_len=5),
        view_params={"strategies": ["dropout"]},
        pretrain=TrainConfig(epochs=1, batch_size=2),
        finetune=TrainConfig(epochs=1, batch_size=2, monitor="ndcg@10"),
        simsiam=SimSiamConfig(),
        space=tuning.SearchSpace(dropout=(0.2, 0.3)),
        parent_run_id=None,
        layout="prefix",
        objective=ObjectiveConfig(name="vicreg"),
        head=NextItemHead(readout="last_item"),
        exclude_history=True,
    )
    study = optuna.create_study(direction="maximize")
    study.optimize(trial_value, n_trials=1)

    assert study.best_value == 0.25
    assert seen["objective"] == "vicreg"
    assert seen["head"].readout == "last_item"
    assert seen["exclude_history"] is True  # validated on the protocol the test uses
    assert seen["rows"] == "prefix rows"
    assert 0.2 <= seen["dropout"] <= 0.3
