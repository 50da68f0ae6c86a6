"""Figures of the report, as matplotlib ``Figure`` objects.

Figures are built without pyplot on an Agg canvas: no global figure registry to leak from
long Kedro runs or Optuna studies, no display needed. The report pipeline returns them to
``matplotlib.MatplotlibDataset`` catalog entries, which write the PNGs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

PRUNED = "PRUNED"
COMPLETE = "COMPLETE"
MAX_CATEGORIES = 20  # beyond this a categorical legend is unreadable; the rest become "other"


def loss_curves(
    history_by_label: Mapping[str, Sequence[Mapping[str, Any]]],
    metrics: Sequence[str] = ("loss", "z_std"),
    panel_size: tuple[float, float] = (4.5, 3.2),
) -> Figure:
    """One panel per metric, one line per run, x = epoch.

    Pre-training loss beside the std of the normalised projections (``z_std``): SimSiam
    collapse shows as ``z_std`` falling to 0 while the loss keeps improving, so the
    collapse ablation (no stop-gradient / no predictor) is read off the same figure.
    """
    if not history_by_label:
        raise ValueError("loss_curves: history_by_label is empty; expected {run label: history}")
    present = {m for history in history_by_label.values() for e in history for m in e}
    absent = [m for m in metrics if m not in present]
    if absent:
        raise ValueError(
            f"loss_curves: metric(s) {absent} appear in no history; runs have {sorted(present)}"
        )
    figure = new_figure((panel_size[0] * len(metrics), panel_size[1]))
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for label, history in history_by_label.items():
            frame = _history_frame(history)
            if metric in frame:
                series = frame[metric].dropna()
                ax.plot(series.index, series.to_numpy(), marker=".", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return figure


def dropout_sensitivity(
    trials_df: pd.DataFrame,
    param: str = "dropout",
    objective_name: str = "objective",
    size: tuple[float, float] = (5.5, 3.8),
) -> Figure:
    """Objective against the tuned dropout rate, from ``study.trials_dataframe()``.

    Dropout is CLUE's implicit augmentation, so this is the method's main knob. Pruned
    trials are drawn as crosses: at their value where Optuna kept one, otherwise on the
    bottom edge, so the reader sees where the pruner stopped trials early.
    """
    column = f"params_{param}"
    missing = {column, "value", "state"} - set(trials_df.columns)
    if missing:
        raise ValueError(
            f"dropout_sensitivity: trials_df lacks column(s) {sorted(missing)}; expected "
            f"Optuna's trials_dataframe() with the parameter {param!r} (got "
            f"{list(trials_df.columns)})"
        )
    state = trials_df["state"].astype(str).str.upper().str.replace("TRIALSTATE.", "")
    complete = trials_df[(state == COMPLETE) & trials_df["value"].notna()]
    pruned = trials_df[state == PRUNED]

    figure = new_figure(size)
    ax = figure.subplots()
    ax.scatter(complete[column], complete["value"], color="C0", label=f"complete ({len(complete)})")
    if len(complete):
        best = complete.loc[complete["value"].idxmax()]
        ax.scatter([best[column]], [best["value"]], s=160, facecolors="none", edgecolors="C3")
        ax.annotate(
            f"best {param}={best[column]:.3g}",
            (best[column], best["value"]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize="small",
        )
    with_value = pruned[pruned["value"].notna()]
    without_value = pruned[pruned["value"].isna()]
    ax.scatter(
        with_value[column],
        with_value["value"],
        marker="x",
        color="C1",
        label=f"pruned ({len(pruned)})",
    )
    edge = blended_transform_factory(ax.transData, ax.transAxes)
    ax.scatter(
        without_value[column],
        np.full(len(without_value), 0.02),
        marker="x",
        color="C1",
        transform=edge,
        clip_on=False,
    )
    ax.set_xlabel(param)
    ax.set_ylabel(objective_name)
    ax.set_title(f"{objective_name} vs {param} ({len(trials_df)} trials)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return figure


def user_vector_pca(
    vectors: np.ndarray,
    labels: Sequence[Any] | np.ndarray,
    label_name: str,
    alignment: float,
    uniformity: float,
    size: tuple[float, float] = (5.5, 5.0),
    point_size: float = 6.0,
) -> Figure:
    """User vectors projected on their first two principal components, coloured by an attribute.

    Alignment and uniformity (Wang and Isola) go in the caption: the picture shows whether
    an attribute separates users, the two numbers say whether the space is spread out.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    labels = np.asarray(labels)
    if vectors.ndim != 2 or vectors.shape[0] < 2 or vectors.shape[1] < 2:
        raise ValueError(
            f"user_vector_pca: vectors has shape {vectors.shape}; expected (users >= 2, dim >= 2)"
        )
    if len(labels) != len(vectors):
        raise ValueError(
            f"user_vector_pca: {len(labels)} labels for {len(vectors)} vectors; expected one each"
        )
    points, explained = pca_2d(vectors)

    figure = new_figure(size)
    ax = figure.subplots()
    scatter_by_label(ax, points, labels, label_name, point_size)
    ax.set_xlabel(f"PC1 ({explained[0]:.1%} of variance)")
    ax.set_ylabel(f"PC2 ({explained[1]:.1%} of variance)")
    ax.set_title(f"user vectors by {label_name} ({len(vectors)} users)")
    figure.supxlabel(
        f"alignment = {alignment:.4f}, uniformity = {uniformity:.4f} (both: lower is better)",
        fontsize="small",
    )
    return figure


def scatter_by_label(
    ax: Axes, points: np.ndarray, labels: np.ndarray, label_name: str, point_size: float = 6.0
) -> None:
    """2-D points on ``ax``, coloured by ``labels``: a colour bar for a numeric attribute with
    many values, else a legend with each category's count (the rarest merged into 'other')."""
    points, labels = np.asarray(points), np.asarray(labels)
    if _is_continuous(labels):
        scatter = ax.scatter(*points.T, c=labels.astype(float), s=point_size, cmap="viridis")
        ax.figure.colorbar(scatter, ax=ax, label=label_name)
        return
    categories = _top_categories(labels)
    palette = "tab10" if len(categories) <= 10 else "tab20"
    for position, category in enumerate(categories):
        chosen = (labels == category) if category != "other" else ~np.isin(labels, categories)
        ax.scatter(
            *points[chosen].T,
            s=point_size,
            color=_colour(palette, position),
            label=f"{category} ({int(chosen.sum())})",
        )
    ax.legend(title=label_name, fontsize="x-small", markerscale=2, loc="best")


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores on the first two principal components and their explained-variance ratios."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    total = variance.sum()
    ratios = variance[:2] / total if total > 0 else np.zeros(2)
    return centred @ components[:2].T, ratios


def _history_frame(history: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(history))
    if "epoch" in frame:
        return frame.set_index("epoch")
    return frame.set_axis(pd.RangeIndex(len(frame), name="epoch"))


def _is_continuous(labels: np.ndarray) -> bool:
    """Numbers with many distinct values get a colour scale; codes and strings get a legend."""
    return np.issubdtype(labels.dtype, np.number) and len(np.unique(labels)) > MAX_CATEGORIES


def _top_categories(labels: np.ndarray) -> list[Any]:
    counts = pd.Series(labels).value_counts()
    if len(counts) <= MAX_CATEGORIES:
        return sorted(counts.index.tolist(), key=str)
    return sorted(counts.index[: MAX_CATEGORIES - 1].tolist(), key=str) + ["other"]


def _colour(palette: str, position: int) -> Any:
    cmap = colormaps[palette]
    return cmap(position % cmap.N)


def new_figure(size: tuple[float, float]) -> Figure:
    """A figure drawn off-screen (Agg): nodes run headless and save PNG bytes."""
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure
