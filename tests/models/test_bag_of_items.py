"""The linear floor: a bag of items into logistic regression, C chosen on validation users."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clue_pipeline.config import LinearFloorConfig, parse_finetune
from clue_pipeline.models.bag_of_items import bag_matrix, fit_bag_of_items

ITEMS_END = 41  # items 1..40; 41 = [MASK], 42 = [UR]


def _users(rng, n, classes):
    """Class k users read mostly items of block k; rows padded with 0 and ended by [UR]."""
    labels = rng.integers(0, classes, n)
    tokens = np.zeros((n, 13), dtype=np.int64)
    for row, label in enumerate(labels):
        own = rng.integers(1 + 10 * label, 11 + 10 * label, 8)
        noise = rng.integers(1, ITEMS_END, 4)
        tokens[row, :12] = rng.permutation(np.concatenate([own, noise]))
    tokens[:, -1] = 42
    return tokens, labels


def _accuracy(model, tokens, labels):
    with torch.no_grad():
        predicted = model.logits(torch.as_tensor(tokens)).argmax(dim=1).numpy()
    return {"accuracy": float((predicted == labels).mean())}


@pytest.mark.parametrize("classes", [2, 4])
@pytest.mark.parametrize("weighting", ["tfidf", "binary"])
def test_the_floor_learns_what_the_bag_says_and_picks_c_on_validation(classes, weighting):
    rng = np.random.default_rng(0)
    split = {s: _users(rng, n, classes) for s, n in (("train", 300), ("valid", 80), ("test", 80))}
    tokens = {s: t for s, (t, _) in split.items()}
    labels = {s: y for s, (_, y) in split.items()}
    model, history = fit_bag_of_items(
        tokens,
        labels,
        ITEMS_END,
        classes,
        LinearFloorConfig(weighting=weighting, c_grid=(0.01, 1.0)),
        score=lambda m: _accuracy(m, tokens["valid"], labels["valid"]),
        monitor="accuracy",
    )
    assert [row["C"] for row in history] == [0.01, 1.0]
    best = max(row["accuracy"] for row in history)
    assert _accuracy(model, tokens["valid"], labels["valid"])["accuracy"] == best
    assert _accuracy(model, tokens["test"], labels["test"])["accuracy"] > 0.9


def test_the_module_scores_as_scikit_learn_does():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    tokens, labels = _users(rng, 200, 3)
    unread = np.isin(tokens, [5, 17])  # items no training user has: the fit skips them
    tokens[unread] = 0
    captured = {}

    def score(model):
        captured["model"] = model
        return {"accuracy": 0.0}

    fit_bag_of_items(
        {"train": tokens},
        {"train": labels},
        ITEMS_END,
        3,
        LinearFloorConfig(weighting="binary", c_grid=(1.0,)),
        score,
        "accuracy",
    )
    bags = bag_matrix(tokens, ITEMS_END)
    norms = np.sqrt(np.asarray(bags.sum(axis=1)).ravel())
    reference = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(
        bags.multiply(1 / norms[:, None]).tocsr(), labels
    )
    with torch.no_grad():
        ours = captured["model"].logits(torch.as_tensor(tokens)).numpy()
    np.testing.assert_allclose(
        ours, reference.decision_function(bags.multiply(1 / norms[:, None]).tocsr()), atol=1e-4
    )
    assert captured["model"].weight.shape == (3, ITEMS_END)
    assert not captured["model"].weight[:, [5, 17]].any()
    newcomer = np.array([[5, 17, 3, 0, 42]])  # reads both: they weigh 0 yet count in the norm
    with torch.no_grad():
        scores = captured["model"].logits(torch.as_tensor(newcomer)).numpy()
    newcomer_bag = bag_matrix(newcomer, ITEMS_END)
    expected = reference.decision_function(newcomer_bag.multiply(1 / np.sqrt(3)).tocsr())
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_special_tokens_and_padding_are_not_items():
    bags = bag_matrix(np.array([[0, 0, 3, 3, 41, 42]]), ITEMS_END)
    assert bags.nonzero()[1].tolist() == [3]
    assert bags.sum() == 1.0


def _linear(block: dict) -> LinearFloorConfig:
    return parse_finetune({"train": {"epochs": 1, "batch_size": 8}, "linear": block}).linear


def test_settings_name_the_bad_parameter():
    with pytest.raises(ValueError, match="cgrid"):
        _linear({"cgrid": [1.0]})
    with pytest.raises(ValueError, match="finetune.linear.weighting = 'bm25'"):
        _linear({"weighting": "bm25"})
    with pytest.raises(ValueError, match="finetune.linear.c_grid"):
        _linear({"c_grid": [0.0]})
    assert _linear({"c_grid": 2}).c_grid == (2.0,)
    assert _linear({"c_grid": [1, 3]}).c_grid == (1.0, 3.0)
