"""Fine-tuning curves: every task x method's training loss and monitored validation metric.

The node reads every fine-tuning history, which gives the histories a reader inside the
`finetune` stage: Kedro-Viz then keeps them in the stage's box instead of drawing each one
as a loose output, and the user gets one figure where there were many JSON files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from clue_pipeline.figures import new_figure

SEP = "__"  # between task and method in an input name (``next_item__clue``)
LOSS = "loss"
PANEL_SIZE = (5.0, 3.0)


def plot_finetuning_curves(tasks: Mapping[str, Mapping[str, Any]], **histories: Any) -> Figure:
    """One row per task: training loss, then the validation metric early stopping monitors
    (``finetune.tasks.<task>.monitor``), one line per method, x = epoch.

    ``histories`` are keyed ``<task>__<method>``. A profiling history holds one classifier
    per attribute; its lines are the mean over attributes. Skipped jobs and methods without
    training epochs (popularity) draw nothing; a task with no epoch at all says so.
    """
    by_task: dict[str, dict[str, pd.DataFrame]] = {}
    for key, history in histories.items():
        task, method = key.split(SEP, 1)
        by_task.setdefault(task, {})
        frame = history_frame(history)
        if not frame.empty:
            by_task[task][method] = frame
    if not by_task:
        raise ValueError("plot_finetuning_curves: no history given; expected <task>__<method>")
    methods = sorted({method for frames in by_task.values() for method in frames})
    palette = colormaps["tab20"]
    colours = {method: palette(i % palette.N) for i, method in enumerate(methods)}  # one per method
    figure = new_figure((PANEL_SIZE[0] * 2, PANEL_SIZE[1] * len(by_task)))
    rows = figure.subplots(len(by_task), 2, squeeze=False)
    for (task, frames), (loss_ax, metric_ax) in zip(by_task.items(), rows, strict=True):
        monitor = str(tasks.get(task, {}).get("monitor", ""))
        _panel(loss_ax, frames, colours, LOSS, f"{task}: training {LOSS}")
        _panel(metric_ax, frames, colours, monitor, f"{task}: validation {monitor}")
        if any(metric_ax.get_lines()):
            metric_ax.legend(fontsize="x-small", loc="best", ncols=2)
    return figure


def history_frame(history: Any) -> pd.DataFrame:
    """A history as one row per epoch; a per-attribute history (profiling) averaged."""
    if isinstance(history, Mapping):
        parts = [_epochs(part) for part in history.values() if isinstance(part, list)]
        parts = [part for part in parts if not part.empty]
        if not parts:
            return pd.DataFrame()
        return pd.concat(parts).groupby(level=0).mean(numeric_only=True)
    return _epochs(history) if isinstance(history, list) else pd.DataFrame()


def _epochs(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return frame
    if "epoch" in frame:
        frame = frame.set_index("epoch")
    return frame.select_dtypes("number")


def _panel(ax, frames: Mapping[str, pd.DataFrame], colours: Mapping, metric: str, title: str):
    for method, frame in sorted(frames.items()):
        if metric in frame:
            series = frame[metric].dropna()
            ax.plot(series.index, series.to_numpy(), ".-", color=colours[method], label=method)
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if not ax.get_lines():
        ax.text(0.5, 0.5, "no epoch recorded", ha="center", va="center", transform=ax.transAxes)
