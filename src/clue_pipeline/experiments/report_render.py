"""How report.md shows its numbers: the report's data shapes, tables, figures and header.

``report_sections`` decides what each of the paper's experiments shows; this module only
draws it (Markdown lines and matplotlib figures), so a change of layout touches no claim.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from clue_pipeline.experiments.verdicts import Verdict
from clue_pipeline.figures import new_figure, scatter_by_label

if TYPE_CHECKING:
    from clue_pipeline.experiments.report_sections import Context

METHOD_NAMES = {
    "clue": "CLUE",
    "clue_zero": "CLUE-Zero (SASRec)",
    "mip": "masked-item pre-training (PeterRec)",
    "gru": "GRU4Rec",
    "cnn": "NextItNet (CNN)",
    "nfm": "NFM",
    "deepfm": "DeepFM",
    "clue_probe": "CLUE, frozen + linear probe",
    "mip_probe": "masked-item, frozen + linear probe",
    "pop": "most popular",
    "caser": "Caser",
    "s3rec": "S3-Rec",
}
# Metrics shown per task; the claims use them all.
HEADLINE = {
    "next_item": ("recall@10", "mrr@10"),
    "coldstart": ("mrr@10", "recall@10"),
    "profiling": ("accuracy",),
}


@dataclass
class ReportSettings:
    profile: str
    k: float = 2.0  # a difference counts when it exceeds k x the pooled std over seeds
    collapse_loss_below: float = -0.95
    collapse_std_ratio: float = 0.25
    untestable: dict[str, str] = field(default_factory=dict)  # task -> why


@dataclass
class Claim:
    experiment: str
    claim: str
    where: str
    measured: str
    verdict: Verdict


@dataclass
class Section:
    title: str
    lines: list[str] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)


# --- tables and figures ----------------------------------------------------------------------


def task_metrics(ctx: Context, key: str, dataset: str, task: str) -> list[str]:
    if task != "profiling":
        return list(HEADLINE[task])
    rows, _ = ctx.group(key, dataset=dataset, task=task)
    names = sorted({k for r in rows for k in r if k.endswith("/accuracy") and has_metric(r, k)})
    return names


def method_table(ctx, key, dataset, task, methods, metrics) -> list[str]:
    extra = [m.replace("/accuracy", "/majority_rate") for m in metrics if "/accuracy" in m]
    columns = [*metrics, *extra]
    lines = [
        f"**{dataset} {task}**",
        "",
        "| method | " + " | ".join(columns) + " |",
        "|" + " --- |" * (len(columns) + 1),
    ]
    for method in methods:
        rows, missing = ctx.group(key, dataset=dataset, task=task, method=method, fraction=1.0)
        skipped = skip_reason(rows)
        cells = []
        for metric in columns:
            values = [float(r[metric]) for r in rows if has_metric(r, metric)]
            cells.append(mean_std_text(values) + (f" [{missing} missing]" if missing else ""))
        if skipped:
            cells = [f"skipped: {skipped}"] + [""] * (len(columns) - 1)
        lines.append(f"| {METHOD_NAMES.get(method, method)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def variant_table(ctx, key, dataset, names, metrics) -> list[str]:
    lines = [
        f"**{dataset}**",
        "",
        "| setting | " + " | ".join(metrics) + " |",
        "|" + " --- |" * (len(metrics) + 1),
    ]
    for name in names:
        cells = []
        for metric in metrics:
            values, missing = ctx.values(key, metric, dataset=dataset, name=name)
            cells.append(mean_std_text(values) + (f" [{missing} missing]" if missing else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def bar_figure(bars: dict, metric: str, methods: list[str]) -> Figure:
    figure = new_figure((4.0 * len(bars), 3.6))
    axes = figure.subplots(1, len(bars), squeeze=False)[0]
    for ax, (dataset, values) in zip(axes, bars.items(), strict=True):
        present = [m for m in methods if m in values]
        means = [values[m][0] for m in present]
        stds = [values[m][1] for m in present]
        ax.bar(range(len(present)), means, yerr=stds, capsize=3, color="C0")
        ax.set_xticks(range(len(present)), present, rotation=30, ha="right")
        ax.set_title(dataset)
        ax.set_ylabel(metric)
        ax.grid(axis="y", alpha=0.3)
    return figure


def line_figure(curves: dict, xlabel: str, metric: str, percent: bool = False) -> Figure:
    figure = new_figure((4.5 * len(curves), 3.4))
    axes = figure.subplots(1, len(curves), squeeze=False)[0]
    for ax, (dataset, methods) in zip(axes, curves.items(), strict=True):
        for method, points in methods.items():
            xs = sorted(points)
            ax.plot(
                [x * 100 if percent else x for x in xs],
                [points[x] for x in xs],
                marker="o",
                label=method,
            )
        ax.set_xlabel(xlabel + (" (%)" if percent else ""))
        ax.set_ylabel(metric)
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return figure


def pca_figure(panels: dict[str, dict]) -> Figure:
    """One panel per method: coloured by the user attribute where the data has one (gender on
    MovieLens, as the paper's GenEst), by history length otherwise."""
    figure = new_figure((4.6 * len(panels), 4.4))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, rep) in zip(axes, panels.items(), strict=True):
        pca = rep["pca"]
        label = rep.get("label")
        if not (label and label in pca):
            label = "history_length"
        points = np.column_stack([pca["x"], pca["y"]])
        scatter_by_label(ax, points, np.asarray(pca[label]), label.replace("_", " "), 5.0)
        share = rep["explained_variance"]
        ax.set_xlabel(f"PC1 ({share[0]:.1%})")
        ax.set_ylabel(f"PC2 ({share[1]:.1%})")
        ax.set_title(
            f"{name}\nalignment {rep['alignment']:.3f}, uniformity {rep['uniformity']:.3f}",
            fontsize="small",
        )
    return figure


# --- header, claims, wall times --------------------------------------------------------------


def header_lines(plan, settings, facts, by_cell, missing) -> list[str]:
    machine = facts.get("machine", {})
    total = sum(r["wall_s"] for r in by_cell.values())
    budget = ", ".join(f"{k}={v}" for k, v in plan.budget.items()) or "the run-environments' own"
    lines = [
        f"# CLUE: the paper's experiments on public data (`{settings.profile}` profile)",
        "",
        "Generated by the `report` pipeline from the cells in "
        f"`{facts.get('store', '?')}`; never edited by hand.",
        "",
        f"- command: `{facts.get('command', '?')}`"
        + (f" (report parameters: {facts['sitting']})" if facts.get("sitting") else ""),
        f"- date: {facts.get('date', '?')}",
        f"- hardware: {machine.get('cpu', '?')}, {machine.get('cores_available', '?')} cores "
        f"available, torch threads per cell {facts.get('threads', '?')}, "
        f"GPU: {machine.get('cuda') or 'none'}; torch {machine.get('torch', '?')}",
        f"- cells: {len(by_cell)} measured, {len(missing)} missing; summed cell wall time "
        f"{total / 60:.1f} min; this sitting ran {facts.get('new_cells', 0)} new cells in "
        f"{facts.get('sitting_s', 0.0) / 60:.1f} min",
        f"- training budget: {budget}; seeds {plan.seeds} for "
        f"{', '.join(plan.profile.get('seeded_methods', []))}, "
        f"{plan.profile.get('variant_seeds', plan.seeds[:1])} for the other methods and settings",
        *(
            [
                f"- pre-training settings of the cells they shape (CLUE's: the paper's "
                f"objective): {plan.pretraining_overrides}"
            ]
            if plan.pretraining_overrides
            else []
        ),
        "",
        "## Data, splits and metrics",
        "",
        "| dataset | run-environment | users | items | interactions |",
        "| --- | --- | --- | --- | --- |",
    ]
    for dataset, counts in facts.get("datasets", {}).items():
        env = plan.profile["envs"].get(dataset) or "(default)"
        if not counts:
            lines.append(f"| {dataset} | {env} | not prepared on this machine yet | | |")
            continue
        lines.append(
            f"| {dataset} | {env} | {counts['users']} | {counts['items']} | "
            f"{counts['interactions']} |"
        )
    lines += [
        "",
        "- Next-item: leave-one-out (train on all but the last two items, validate on the "
        "second-to-last, test on the last); pre-training sees only the training part.",
        "- Profiling and cold-start: users split 80/5/15 (seeded, stratified where every class "
        "has enough users).",
        "- Cold-start from MovieLens: items split into two domains by genre (target: the "
        "`sequences.coldstart.target_genre` parameter, Comedy by default); the source sequence "
        "is the user's history outside it, the targets the user's first 3 target-domain "
        "items, each (user, target) pair one instance; users with none, or fewer than 5 source "
        "items, are dropped.",
        "- Metrics: full ranking over all items (never sampled), ties counted against the "
        f"target; history items {_history_rule(facts)}. Profiling: accuracy, majority-class "
        "rate beside it.",
        f'- Verdicts: "A beats B" holds when mean(A) - mean(B) > {settings.k:g} x the pooled '
        "std over seeds of A and B; does not hold inside that noise or the other way round. "
        "Where both sides ran one seed (or their std is 0: constant predictions), the noise is "
        "the pooled std of the multi-seed groups of the same dataset and task; without any, "
        'the sign is reported and marked. "As good as" holds unless A is worse by more than the same margin. A claim with missing cells '
        'is "not measured yet".',
        "",
    ]
    return lines


def _history_rule(facts) -> str:
    if facts.get("exclude_history"):
        return "already seen are excluded from the ranking"
    return "already seen are NOT excluded (the paper's protocol)"


def claims_table(claims: list[Claim], settings: ReportSettings) -> list[str]:
    counts: dict[str, int] = {}
    for claim in claims:
        counts[claim.verdict.verdict] = counts.get(claim.verdict.verdict, 0) + 1
    summary = ", ".join(f"{n} {word}" for word, n in sorted(counts.items()))
    lines = [
        "## The paper's claims beside our numbers",
        "",
        f"{len(claims)} claims: {summary or 'none'}.",
        "",
        "| experiment | claim | where, metric | measured: A vs B, mean ± std (seeds) | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for claim in claims:
        lines.append(
            f"| {claim.experiment} | {claim.claim} | {claim.where} | {claim.measured} | "
            f"{claim.verdict.text()} |"
        )
    return [*lines, ""]


def wall_time_table(by_cell, budget: dict[str, Any]) -> list[str]:
    groups: dict[tuple, list[float]] = {}
    for cell, row in by_cell.items():
        own = {k: v for k, v in cell.override_dict.items() if budget.get(k, object()) != v}
        variant = ", ".join(f"{k}={v}" for k, v in sorted(own.items())) or "default"
        key = (cell.dataset, cell.task, cell.method, int(cell.fraction * 100), variant)
        groups.setdefault(key, []).append(row["wall_s"])
    lines = [
        "## Wall time per cell",
        "",
        "One `kedro run` per cell (pre-training resumed from its checkpoint where the same "
        "settings already ran); the setting is what the cell overrides beyond the profile's "
        "budget.",
        "",
        "| dataset | task | method | users % | setting | cells | mean s | total s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (dataset, task, method, share, variant), times in sorted(groups.items()):
        lines.append(
            f"| {dataset} | {task} | {method} | {share} | {variant} | {len(times)} | "
            f"{statistics.mean(times):.0f} | {sum(times):.0f} |"
        )
    return [*lines, ""]


# --- small helpers ---------------------------------------------------------------------------


def has_metric(row: dict, metric: str) -> bool:
    value = row.get(metric)
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def skip_reason(rows: list[dict]) -> str | None:
    reasons = [r["skipped"] for r in rows if isinstance(r.get("skipped"), str)]
    return reasons[0] if reasons else None


def mean_and_std(values: list[float]) -> tuple[float, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), std


def mean_std_text(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f} (1)"
    mean, std = mean_and_std(values)
    return f"{mean:.4f} ± {std:.4f} ({len(values)})"
