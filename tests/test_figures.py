"""Each report figure renders to a real PNG through the catalog's MatplotlibDataset."""

from __future__ import annotations

import struct
from pathlib import Path

import matplotlib.image
import numpy as np
import optuna
import pandas as pd
import pytest
from kedro_datasets.matplotlib import MatplotlibDataset
from matplotlib.figure import Figure

from clue_pipeline.figures import dropout_sensitivity, loss_curves, pca_2d, user_vector_pca

DPI = 100
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _save_png(figure: Figure, path: Path) -> tuple[int, int]:
    """Writes through the dataset the catalog uses; returns the PNG's (width, height)."""
    MatplotlibDataset(filepath=str(path), save_args={"format": "png", "dpi": DPI}).save(figure)
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    pixels = matplotlib.image.imread(path)
    ink = (pixels[..., :3] < 0.9).any(axis=-1).mean()
    assert 0.01 < ink < 0.6, f"{path.name}: {ink:.1%} of pixels drawn, expected a real plot"
    return width, height


def _histories() -> dict[str, list[dict]]:
    epochs = np.arange(1, 9)
    return {
        "clue": [
            {"epoch": int(e), "loss": -0.5 - 0.05 * e, "z_std": 0.12} for e in epochs
        ],  # healthy: z_std near 1/sqrt(d)
        "no stop-gradient": [
            {"epoch": int(e), "loss": -0.9 - 0.01 * e, "z_std": 0.12 / e} for e in epochs
        ],  # collapse: z_std to 0
    }


def test_loss_curves_has_a_panel_per_metric_and_a_line_per_run(tmp_path):
    figure = loss_curves(_histories())

    axes = figure.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["loss", "z_std"]
    assert [len(ax.get_lines()) for ax in axes] == [2, 2]
    collapsed = axes[1].get_lines()[1].get_ydata()
    assert collapsed[-1] == pytest.approx(0.12 / 8)
    width, height = _save_png(figure, tmp_path / "loss.png")
    assert (width, height) == (900, 320)


def test_loss_curves_names_a_metric_no_run_has():
    with pytest.raises(ValueError, match=r"metric\(s\) \['hr_10'\] appear in no history"):
        loss_curves(_histories(), metrics=("loss", "hr_10"))


@pytest.fixture(scope="module")
def trials_df() -> pd.DataFrame:
    """A real Optuna study whose pruner stops the high-dropout trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        dropout = trial.suggest_float("dropout", 0.0, 0.9)
        for step in range(3):
            value = 0.3 - (dropout - 0.4) ** 2 + 0.01 * step
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0),
    )
    study.optimize(objective, n_trials=16)
    return study.trials_dataframe()


def test_dropout_sensitivity_marks_pruned_trials(tmp_path, trials_df):
    states = trials_df["state"].value_counts()
    assert states.get("PRUNED", 0) > 0 and states.get("COMPLETE", 0) > 0

    figure = dropout_sensitivity(trials_df, objective_name="valid NDCG@10")

    ax = figure.get_axes()[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == [f"complete ({states['COMPLETE']})", f"pruned ({states['PRUNED']})"]
    plotted = sum(len(c.get_offsets()) for c in ax.collections)
    assert plotted == states["COMPLETE"] + 1 + states["PRUNED"]  # +1: the best-trial ring
    best = trials_df.loc[trials_df["value"].idxmax(), "params_dropout"]
    assert f"best dropout={best:.3g}" in [t.get_text() for t in ax.texts]
    _save_png(figure, tmp_path / "dropout.png")


def test_dropout_sensitivity_says_which_columns_it_needs():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['params_dropout'\]"):
        dropout_sensitivity(pd.DataFrame({"value": [0.1], "state": ["COMPLETE"]}))


def test_user_vector_pca_colours_categories_and_captions_the_geometry(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(["F", "M"], 150)
    vectors = rng.normal(size=(300, 16))
    vectors[labels == "F", 3] += 4.0  # the attribute lives along one direction

    figure = user_vector_pca(vectors, labels, "gender", alignment=0.4123, uniformity=-3.21)

    ax = figure.get_axes()[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["F (150)", "M (150)"]
    assert "alignment = 0.4123" in figure.get_supxlabel()
    assert "uniformity = -3.2100" in figure.get_supxlabel()
    female = ax.collections[0].get_offsets()[:, 0]
    male = ax.collections[1].get_offsets()[:, 0]
    assert abs(female.mean() - male.mean()) > 3.0  # PC1 found the separating direction
    width, height = _save_png(figure, tmp_path / "pca.png")
    assert (width, height) == (550, 500)


def test_user_vector_pca_uses_a_colour_scale_for_many_numeric_values(tmp_path):
    rng = np.random.default_rng(1)
    ages = rng.integers(18, 70, size=200)
    figure = user_vector_pca(rng.normal(size=(200, 8)), ages, "age", 0.5, -2.0)
    assert len(figure.get_axes()) == 2  # plot + colour bar
    _save_png(figure, tmp_path / "pca_age.png")


def test_pca_2d_matches_the_principal_axes():
    rng = np.random.default_rng(2)
    data = rng.normal(size=(500, 3)) * np.array([5.0, 2.0, 0.1])
    scores, ratios = pca_2d(data)
    assert scores.shape == (500, 2)
    assert np.var(scores[:, 0]) > np.var(scores[:, 1]) > 1.0
    assert ratios.sum() > 0.99


def test_user_vector_pca_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="3 labels for 4 vectors"):
        user_vector_pca(np.zeros((4, 2)), ["a", "b", "c"], "x", 0.0, 0.0)
