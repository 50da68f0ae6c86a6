"""The logistic-regression probe: scikit-learn's fit on the frozen vectors, folded into the
classifier's own linear layer, so restoring and scoring the model gives sklearn's answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from clue_pipeline.models.encoders import EncoderConfig, build_encoder
from clue_pipeline.models.heads import ClassifierModel
from clue_pipeline.pipelines.finetune.linear_probe import fit_logistic_probe, frozen_vectors

NUM_ITEMS, MAX_LEN = 30, 8


def _tokens(rng: np.random.Generator, users: int) -> np.ndarray:
    tokens = np.zeros((users, MAX_LEN + 1), dtype=np.int64)
    for row in range(users):  # fixture only
        n = rng.integers(2, MAX_LEN + 1)
        tokens[row, MAX_LEN + 1 - n - 1 : MAX_LEN] = rng.integers(1, NUM_ITEMS + 1, n)
    tokens[:, -1] = NUM_ITEMS + 2
    return tokens


def _model(classes: int, readout: str = "ur") -> ClassifierModel:
    torch.manual_seed(0)
    config = EncoderConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=16, heads=2)
    return ClassifierModel(build_encoder(config), classes, freeze_encoder=True, readout=readout)


@pytest.mark.parametrize(
    ("classes", "readout"), [(2, "ur"), (4, "mean_items"), (3, "ur_and_mean_items")]
)
def test_the_probe_scores_as_sklearn_on_the_standardised_vectors(classes, readout):
    rng = np.random.default_rng(0)
    tokens, labels = _tokens(rng, 120), rng.integers(0, classes, 120)
    model = _model(classes, readout)
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    tried = []

    def score(m):
        tried.append(m.logits(torch.as_tensor(tokens)).argmax(1).numpy())
        return {"accuracy": float((tried[-1] == labels).mean())}

    model, history = fit_logistic_probe(model, tokens, labels, (0.1, 1.0), score, "accuracy")
    assert [row["C"] for row in history] == [0.1, 1.0]
    best = max(history, key=lambda row: row["accuracy"])
    vectors = frozen_vectors(model, tokens)
    scaled = (vectors - vectors.mean(0)) / (vectors.std(0) + 1e-6)
    reference = LogisticRegression(C=best["C"], max_iter=2000, random_state=0).fit(scaled, labels)
    ours = model.logits(torch.as_tensor(tokens)).argmax(1).numpy()
    assert (ours == reference.predict(scaled)).mean() >= 0.99
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key


def test_a_class_no_training_user_has_is_never_predicted():
    rng = np.random.default_rng(1)
    tokens, labels = _tokens(rng, 60), rng.integers(0, 2, 60) * 2  # classes 0 and 2 of 3
    model, _ = fit_logistic_probe(
        _model(3), tokens, labels, (1.0,), lambda m: {"accuracy": 0.5}, "accuracy"
    )
    assert not (model.logits(torch.as_tensor(tokens)).argmax(1) == 1).any()


def test_an_unfrozen_encoder_is_refused_unless_the_probe_only_starts_its_head():
    model = _model(2)
    model.freeze_encoder = False
    with pytest.raises(ValueError, match="head_init"):
        fit_logistic_probe(model, np.zeros((2, 9), np.int64), [0, 1], (1.0,), dict, "accuracy")
    rng = np.random.default_rng(2)
    tokens, labels = _tokens(rng, 80), rng.integers(0, 2, 80)
    head_before = model.classifier.weight.detach().clone()
    model, history = fit_logistic_probe(
        model, tokens, labels, (1.0,), lambda m: {"accuracy": 0.5}, "accuracy", then_fine_tuned=True
    )
    assert len(history) == 1 and not torch.equal(model.classifier.weight, head_before)
