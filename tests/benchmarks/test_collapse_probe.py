"""The collapse probe's measures on spaces of known shape, and one tiny cell end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks import collapse_probe
from benchmarks.collapse_probe import Cell, parameters, run_cell, spectrum


def test_spectrum_sees_a_circle_as_two_dimensional():
    angle = np.random.default_rng(0).uniform(0, 2 * math.pi, 500)
    basis = np.linalg.qr(np.random.default_rng(1).normal(size=(64, 2)))[0]  # (64, 2)
    circle = np.column_stack([np.cos(angle), np.sin(angle)]) @ basis.T + 3.0
    numbers = spectrum(circle)
    assert numbers["pc12_share"] > 0.999
    assert 1.5 < numbers["effective_rank"] < 2.01


def test_spectrum_sees_isotropic_vectors_as_full_rank():
    numbers = spectrum(np.random.default_rng(2).normal(size=(2000, 64)))
    assert numbers["pc12_share"] < 0.1
    assert numbers["effective_rank"] > 55


def test_parameters_are_the_ml_100k_run_environment():
    params = parameters()
    assert params["pretrain"]["train"]["epochs"] == 50
    assert params["pretrain"]["train"]["batch_size"] == 128
    assert params["augment"]["views"]["strategies"] == ["dropout"]
    assert params["encoder"]["dropout"] == 0.5


@pytest.mark.parametrize(
    ("final_norm", "objective"), [(True, "simsiam"), (False, "simsiam"), (True, "infonce")]
)
def test_a_tiny_cell_trains_and_measures_both_representations(final_norm, objective):
    torch.manual_seed(0)
    num_items, users, max_len = 40, 96, 12
    params = parameters()
    params["encoder"] = {**params["encoder"], "max_len": max_len, "hidden": 16, "heads": 2}
    lengths = torch.randint(3, max_len + 1, (users,))
    items = torch.randint(1, num_items + 1, (users, max_len))
    items[torch.arange(max_len)[None, :] < (max_len - lengths)[:, None]] = 0  # left padding
    tokens = torch.cat([items, torch.full((users, 1), num_items + 2)], 1).numpy()
    cell = Cell(
        "tiny",
        "2 epochs",
        train={"epochs": 2, "batch_size": 32},
        final_norm=final_norm,
        objective=objective,
    )
    row = run_cell(cell, params, tokens, num_items)
    if objective == "infonce":  # cross-entropy over 32 candidates: positive, near log 32 early
        assert all(0 < loss < 2 * math.log(32) for loss in row["loss_curve"])
    else:  # negative cosine: in [-1, 1]
        assert all(-1 <= loss <= 1 for loss in row["loss_curve"])
    assert row["steps"] == 2 * (users // 32)
    assert len(row["loss_curve"]) == 2
    for space in ("encoder", "projector_layer1"):
        values = row[space]
        assert all(math.isfinite(v) for v in values.values()), values
        assert 0 < values["pc12_share"] <= 1
        assert 1 <= values["effective_rank"] <= (16 if space == "encoder" else 256)


def test_every_named_cell_is_unique():
    names = [cell.name for cell in collapse_probe.CELLS]
    assert len(names) == len(set(names))
