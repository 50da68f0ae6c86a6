"""The frozen user vector's probe by logistic regression, as the linear floor is fitted.

A probe asks what the vector alone carries, so it should be fitted as well as the floor it
is compared with: scikit-learn's logistic regression on the standardised vectors, ``C``
chosen on the validation users, rather than a few epochs of Adam on a linear layer. The
fitted weights (standardisation folded in) go into the classifier's own linear layer, so the
model is saved, restored and scored like every other classifier.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from clue_pipeline.models.bag_of_items import class_weights
from clue_pipeline.models.heads import ClassifierModel
from clue_pipeline.training.length_batching import by_length

logger = logging.getLogger(__name__)


@torch.no_grad()
def frozen_vectors(model: ClassifierModel, tokens: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """(U, d) user vectors of the frozen encoder, under the model's readout."""
    model.eval()
    device = next(model.parameters()).device
    return by_length(model.user_vectors, tokens, batch_size, device).numpy()


def fit_logistic_probe(
    model: ClassifierModel,
    train_tokens: np.ndarray,
    train_labels: np.ndarray,
    c_grid: tuple[float, ...],
    score: Callable[[ClassifierModel], dict],
    monitor: str,
    seed: int = 0,
    max_iter: int = 2000,
    then_fine_tuned: bool = False,
) -> tuple[ClassifierModel, list[dict]]:
    """One logistic regression per ``C`` on the frozen vectors; the model keeps the weights
    ``score`` (validation metrics) ranks highest on ``monitor``. Returns one history row per
    ``C``, in the order tried. ``then_fine_tuned``: the encoder is not frozen, and the fit only
    starts its head (the vectors are read without dropout either way)."""
    from sklearn.linear_model import LogisticRegression

    if not model.freeze_encoder and not then_fine_tuned:
        raise ValueError(
            "logistic probe: the encoder must be frozen (a method with freeze_encoder), or "
            "the probe only starts a fine-tuned head (finetune.classifier.head_init)"
        )
    vectors = frozen_vectors(model, train_tokens)
    mean, scale = vectors.mean(axis=0), vectors.std(axis=0) + 1e-6
    labels = np.asarray(train_labels, dtype=np.int64)
    history, best_state, best_value = [], None, -np.inf
    for c in c_grid:
        fitted = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
        fitted.fit((vectors - mean) / scale, labels)
        weight, bias = class_weights(fitted, model.num_classes)
        weight = weight / scale  # (x - mean) / scale . w + b == x . (w / scale) + b'
        bias = bias - weight @ mean
        with torch.no_grad():
            model.classifier.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            model.classifier.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        metrics = score(model)
        if monitor not in metrics:
            raise ValueError(f"logistic probe: monitor {monitor!r} not in {sorted(metrics)}")
        history.append({"epoch": len(history), "C": c, **metrics})
        logger.info("logistic probe C=%s: %s %.4f", c, monitor, metrics[monitor])
        if metrics[monitor] > best_value:
            best_value = metrics[monitor]
            best_state = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    model.classifier.load_state_dict(best_state)
    return model, history
