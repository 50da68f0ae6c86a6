"""Cells -> report.md: the paper's claims beside our numbers (mean ± std over seeds), computed
verdicts, PNG figures, the missing cells, and the facts needed to read the numbers."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from clue_pipeline.experiments.cells import PRETRAIN_TASK, Cell
from clue_pipeline.experiments.plan import EXPERIMENTS, Plan, dataset_tasks
from clue_pipeline.experiments.store import CellStore
from clue_pipeline.experiments.verdicts import (
    NOT_MEASURED,
    NOT_TESTABLE,
    Verdict,
    collapses,
    compare,
    pooled_std,
    reaches_minimum_sooner,
    spread,
)
from clue_pipeline.figures import loss_curves, new_figure, scatter_by_label

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


def load_results(plan: Plan, store: CellStore) -> dict[Cell, dict[str, Any]]:
    """One row per stored cell of the plan: its identity, wall time and headline metrics."""
    results = {cell: store.load(cell) for cell in plan.all_cells()}
    return {cell: result_row(cell, r) for cell, r in results.items() if r is not None}


def result_row(cell: Cell, result: dict[str, Any]) -> dict[str, Any]:
    record = result["record"]
    row: dict[str, Any] = {"cell": cell, "wall_s": float(result["wall_s"])}
    if "skipped" in record:
        row["skipped"] = record["skipped"]
    elif cell.task == "profiling":
        for attribute, values in record["metrics"].items():
            row[f"{attribute}/accuracy"] = values["accuracy"]
            row[f"{attribute}/majority_rate"] = values["majority_rate"]
    elif cell.task == PRETRAIN_TASK:
        row["history"] = record["history"]
        row["representation"] = record["representation"]
    else:
        row.update({k: v for k, v in record["metrics"].items() if isinstance(v, float)})
    return row


def assemble(
    plan: Plan, store: CellStore, settings: ReportSettings, facts: dict[str, Any]
) -> tuple[str, dict[str, Figure]]:
    """The whole report (Markdown) and its figures {file name: Figure}."""
    by_cell = load_results(plan, store)
    context = _Context(plan, by_cell, settings)
    builders: dict[str, Callable[[_Context, str], Section]] = {
        "table2": _table2,
        "fig3": _fig3,
        "fig4": _fig4,
        "table3": _table3,
        "fig5": _fig5,
        "fig6": _fig6,
        "fig7": _fig7,
        "probes": _probes,
    }
    sections = []
    for key, title in EXPERIMENTS.items():
        if key in plan.cells:
            sections.append(builders[key](context, key))
        else:
            sections.append(Section(title, [f"Not in the `{settings.profile}` profile."]))
    missing = store.missing(plan.all_cells())
    lines = _header(plan, settings, facts, by_cell, missing)
    lines += _claims_table([c for s in sections for c in s.claims], settings)
    figures: dict[str, Figure] = {}
    for section in sections:
        lines += [f"## {section.title}", "", *section.lines, ""]
        for name in section.figures:
            lines += [f"![{section.title}](report/{name})", ""]
        figures.update(section.figures)
    lines += _wall_times(by_cell, plan.budget)
    lines += [f"## Missing cells ({len(missing)} of {len(plan.all_cells())})", ""]
    lines += [f"- {store.missing_label(c)} (`{c.relative_path}`)" for c in missing] or ["- none"]
    failed = facts.get("failed_cells") or []
    if failed:
        lines += ["", f"## Cells that failed in this sitting ({len(failed)})", ""]
        lines += [f"- {f['cell']}: `{f['failed'].strip().splitlines()[-1]}`" for f in failed]
    return "\n".join(lines).rstrip() + "\n", figures


@dataclass
class _Context:
    plan: Plan
    by_cell: dict[Cell, dict[str, Any]]
    settings: ReportSettings

    def group(self, experiment: str, **match: Any) -> tuple[list[dict], int]:
        """Rows of the experiment's cells matching ``match`` (fields or variant name), and how
        many of those cells are missing."""
        names = self.plan.names[experiment]
        chosen = [
            c
            for c in self.plan.cells[experiment]
            if all(
                (names[c] if key == "name" else getattr(c, key)) == value
                for key, value in match.items()
            )
        ]
        rows = [self.by_cell[c] for c in chosen if c in self.by_cell]
        return rows, len(chosen) - len(rows)

    def values(self, experiment: str, metric: str, **match: Any) -> tuple[list[float], int]:
        rows, missing = self.group(experiment, **match)
        return [float(r[metric]) for r in rows if _has(r, metric)], missing

    def noise(self, dataset: str, task: str, metric: str) -> float | None:
        """Pooled std of every multi-seed group of this dataset and task (any experiment)."""
        groups: dict[tuple, list[float]] = {}
        for cell, row in self.by_cell.items():
            if cell.dataset == dataset and cell.task == task and _has(row, metric):
                key = (cell.method, cell.fraction, cell.overrides)
                groups.setdefault(key, []).append(float(row[metric]))
        return pooled_std(list(groups.values()))

    def untestable(self, task: str) -> str | None:
        return self.settings.untestable.get(task)

    def claim(
        self,
        experiment: str,
        text: str,
        where: str,
        better: dict,
        worse: dict,
        metric: str,
        kind: str = "beats",
        higher_is_better: bool = True,
    ) -> Claim:
        a, missing_a = self.values(experiment, metric, **better)
        b, missing_b = self.values(experiment, metric, **worse)
        task = better.get("task") or self.plan.cells[experiment][0].task
        reason = self.untestable(task) or _skipped(self.group(experiment, **better)[0])
        if reason:
            verdict = Verdict(NOT_TESTABLE, reason)
        else:
            verdict = compare(
                a,
                b,
                self.settings.k,
                missing=missing_a + missing_b,
                fallback_noise=self.noise(better["dataset"], task, metric),
                higher_is_better=higher_is_better,
                kind=kind,
            )
        measured = f"{_mean_std(a)} vs {_mean_std(b)}" if a and b else ""
        return Claim(experiment, text, f"{where}, {metric}", measured, verdict)


def _table2(ctx: _Context, key: str) -> Section:
    spec = ctx.plan.profile[key]
    section = Section(EXPERIMENTS[key])
    section.lines += [
        "Cold-start: MRR@10 and Recall@10 over all target-domain items; profiling: accuracy on the "
        "15 % test users (majority-class rate beside it). Mean ± std over seeds (n).",
        "",
    ]
    untestable_tasks = set()
    for dataset, tasks in dataset_tasks(spec).items():
        for task in tasks:
            reason = ctx.untestable(task)
            if reason:
                section.lines += [f"**{dataset} {task}**: not testable here ({reason}).", ""]
                untestable_tasks.add(task)
                continue
            metrics = _task_metrics(ctx, key, dataset, task)
            section.lines += _method_table(ctx, key, dataset, task, spec["methods"], metrics)
            for metric in metrics:
                section.claims += _table2_claims(ctx, key, dataset, task, metric, spec["methods"])
    for task in sorted(untestable_tasks):
        section.claims.append(
            Claim(
                key,
                f"CLUE beats its rivals on {task}",
                "-",
                "",
                Verdict(NOT_TESTABLE, ctx.untestable(task)),
            )
        )
    return section


def _table2_claims(ctx, key, dataset, task, metric, methods) -> list[Claim]:
    pairs = [("clue", r, "CLUE") for r in ("clue_zero", "mip")]
    pairs += [("clue_zero", r, "the sequence encoder (CLUE-Zero)") for r in ("nfm", "deepfm")]
    pairs += [("clue", "s3rec", "CLUE")]  # the other self-supervised pre-training
    pairs += [("clue", "pop", "CLUE")]  # the floor: a method that learned nothing of the user
    return [
        ctx.claim(
            key,
            f"{name} beats {METHOD_NAMES[rival]}",
            f"{dataset} {task}",
            {"dataset": dataset, "task": task, "method": method},
            {"dataset": dataset, "task": task, "method": rival},
            metric,
        )
        for method, rival, name in pairs
        if {method, rival} <= set(methods)
    ]


def _fig3(ctx: _Context, key: str) -> Section:
    spec = ctx.plan.profile[key]
    section = Section(EXPERIMENTS[key])
    section.lines += [
        "Leave-one-out, full ranking over all items. Mean ± std over seeds (n).",
        "",
    ]
    bars: dict[str, dict[str, tuple[float, float]]] = {}
    for dataset in spec["datasets"]:
        section.lines += _method_table(
            ctx, key, dataset, "next_item", spec["methods"], HEADLINE["next_item"]
        )
        for method in spec["methods"]:
            values, _ = ctx.values(key, "recall@10", dataset=dataset, method=method)
            if values:
                bars.setdefault(dataset, {})[method] = _stats(values)
            if method == "clue":
                continue
            for metric in HEADLINE["next_item"]:
                section.claims.append(
                    ctx.claim(
                        key,
                        f"CLUE beats {METHOD_NAMES[method]}",
                        f"{dataset} next-item",
                        {"dataset": dataset, "method": "clue"},
                        {"dataset": dataset, "method": method},
                        metric,
                    )
                )
                # "the self-attentive [encoder surpasses] GRU4Rec and Caser" (Sec. V-B)
                if method in ("gru", "caser") and "clue_zero" in spec["methods"]:
                    section.claims.append(
                        ctx.claim(
                            key,
                            f"the self-attentive encoder (CLUE-Zero) beats {METHOD_NAMES[method]}",
                            f"{dataset} next-item",
                            {"dataset": dataset, "method": "clue_zero"},
                            {"dataset": dataset, "method": method},
                            metric,
                        )
                    )
    if bars:
        section.figures["fig3_next_item.png"] = _bar_figure(bars, "recall@10", spec["methods"])
    return section


def _fig4(ctx: _Context, key: str) -> Section:
    spec = ctx.plan.profile[key]
    task = spec["task"]
    section = Section(EXPERIMENTS[key])
    reason = ctx.untestable(task)
    if reason:
        section.lines.append(f"Not testable here ({reason}).")
        return section
    metric = HEADLINE[task][0]
    fractions = sorted(float(f) for f in spec["fractions"])
    section.lines += [
        f"{task}, fine-tuned on a seeded share of the training users (pre-training sees the "
        f"whole corpus); {metric}, mean over the seeds run at each share.",
        "",
    ]
    lines: dict[str, dict[str, dict[float, float]]] = {}
    for dataset in spec["datasets"]:
        header = "| method | " + " | ".join(f"{int(f * 100)} %" for f in fractions) + " |"
        section.lines += [f"**{dataset}**", "", header, "|" + " --- |" * (len(fractions) + 1)]
        for method in spec["methods"]:
            cells = []
            for fraction in fractions:
                values, _ = ctx.values(
                    key, metric, dataset=dataset, method=method, fraction=fraction
                )
                cells.append(_mean_std(values))
                if values:
                    lines.setdefault(dataset, {}).setdefault(method, {})[fraction] = (
                        statistics.mean(values)
                    )
            section.lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(cells) + " |")
        section.lines.append("")
        for fraction in fractions:
            for rival in [m for m in spec["methods"] if m != "clue"]:
                section.claims.append(
                    ctx.claim(
                        key,
                        f"CLUE beats {METHOD_NAMES[rival]} with {int(fraction * 100)} % of users",
                        f"{dataset} {task}",
                        {"dataset": dataset, "method": "clue", "fraction": fraction},
                        {"dataset": dataset, "method": rival, "fraction": fraction},
                        metric,
                    )
                )
    if lines:
        section.figures["fig4_sparsity.png"] = _line_figure(
            lines, "share of training users", metric, percent=True
        )
    return section


def _table3(ctx: _Context, key: str) -> Section:
    spec = ctx.plan.profile[key]
    section = Section(EXPERIMENTS[key])
    section.lines += [
        "CLUE pre-trained with each view policy, then fine-tuned alike; "
        "`dropout` = the same sequence twice, differing only by dropout masks.",
        "",
    ]
    names = list(spec["variants"])
    for dataset in spec["datasets"]:
        section.lines += _variant_table(ctx, key, dataset, names, HEADLINE[spec["task"]])
        if "dropout" not in names:
            continue
        for name in names:
            if name == "dropout":
                continue
            for metric in HEADLINE[spec["task"]]:
                section.claims.append(
                    ctx.claim(
                        key,
                        f"dropout views are as good as or better than {name}",
                        f"{dataset} {spec['task']}",
                        {"dataset": dataset, "name": "dropout"},
                        {"dataset": dataset, "name": name},
                        metric,
                        kind="matches",
                    )
                )
    return section


def _fig5(ctx: _Context, key: str) -> Section:
    spec = ctx.plan.profile[key]
    task = spec["task"]
    section = Section(EXPERIMENTS[key])
    names = [f"{r:g}" for r in spec["rates"]]
    section.lines += [
        "Encoder dropout rate (CLUE's implicit view, and the encoder's dropout in fine-tuning).",
        "",
    ]
    curves: dict[str, dict[str, dict[float, float]]] = {}
    for dataset in spec["datasets"]:
        section.lines += _variant_table(ctx, key, dataset, names, HEADLINE[task])
        for metric in HEADLINE[task]:
            means, missing = [], 0
            for name in names:
                values, gone = ctx.values(key, metric, dataset=dataset, name=name)
                missing += gone
                if values:
                    means.append(statistics.mean(values))
                    if metric == HEADLINE[task][0]:
                        curves.setdefault(dataset, {}).setdefault("clue", {})[float(name)] = means[
                            -1
                        ]
            verdict = spread(means, ctx.settings.k, ctx.noise(dataset, task, metric), missing)
            section.claims.append(
                Claim(
                    key,
                    "the result is sensitive to the dropout rate",
                    f"{dataset} {task}, {metric}",
                    ", ".join(f"{m:.4f}" for m in means),
                    verdict,
                )
            )
    if curves:
        section.figures["fig5_dropout.png"] = _line_figure(
            curves, "dropout rate", HEADLINE[task][0]
        )
    return section


def _fig6(ctx: _Context, key: str) -> Section:
    spec = ctx.plan.profile[key]
    section = Section(EXPERIMENTS[key])
    section.lines += [
        "Pre-training loss (minimum -1) per epoch; `user_std`: the std across users of the "
        "l2-normalised user vectors (0 = every user mapped to one point); uniformity of the "
        "user vectors (lower = more spread). The projection's last BatchNorm keeps `z_std` "
        "near 1/sqrt(d) whatever happens, so collapse is read on the user vectors.",
        "",
    ]
    reference = next(iter(spec["variants"]))
    for dataset in spec["datasets"]:
        histories = {}
        for name in spec["variants"]:
            rows, _ = ctx.group(key, dataset=dataset, name=name)
            if rows:
                histories[f"{dataset} {name}"] = rows[0]["history"]
        if histories:
            section.figures[f"fig6_collapse_{dataset}.png"] = loss_curves(
                histories, metrics=("loss", "user_std", "uniformity")
            )
        ref_rows, _ = ctx.group(key, dataset=dataset, name=reference)
        for name in list(spec["variants"])[1:]:
            rows, missing = ctx.group(key, dataset=dataset, name=name)
            where = f"{dataset} pre-training"
            if missing or not ref_rows:
                gone = Verdict(NOT_MEASURED, f"{missing + (not ref_rows)} cells missing")
                section.claims += [
                    Claim(key, f"{name}: the loss quickly reaches -1", where, "", gone),
                    Claim(key, f"{name}: the user vectors collapse", where, "", gone),
                ]
                continue
            history, ref_history = rows[0]["history"], ref_rows[0]["history"]
            section.claims.append(
                Claim(
                    key,
                    f"{name}: the loss quickly reaches -1",
                    f"{where}, loss",
                    "",
                    reaches_minimum_sooner(
                        [float(e["loss"]) for e in history],
                        [float(e["loss"]) for e in ref_history],
                        ctx.settings.collapse_loss_below,
                    ),
                )
            )
            last, ref_last = history[-1], ref_history[-1]
            section.claims.append(
                Claim(
                    key,
                    f"{name}: the user vectors collapse",
                    f"{where}, user_std",
                    f"uniformity {last['uniformity']:.4f} vs {ref_last['uniformity']:.4f} "
                    f"({reference})",
                    collapses(
                        float(last["user_std"]),
                        float(ref_last["user_std"]),
                        ctx.settings.collapse_std_ratio,
                    ),
                )
            )
    return section


def _fig7(ctx: _Context, key: str) -> Section:
    spec = ctx.plan.profile[key]
    section = Section(EXPERIMENTS[key])
    section.lines += [
        "User vectors ([UR] output, eval mode) of every user of the next-item corpus, projected "
        "on their first two principal components (a seeded sample drawn). Alignment: mean "
        "squared distance of two dropout views' normalised vectors; uniformity: log mean "
        "Gaussian potential (Wang & Isola 2020). Both: lower is better.",
        "",
        "| dataset | method | alignment | uniformity | PC1 + PC2 share of variance | users |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for dataset in spec["datasets"]:
        panels = {}
        for method in spec["methods"]:
            rows, _ = ctx.group(key, dataset=dataset, name=method)
            if not rows:
                continue
            rep = rows[0]["representation"]
            panels[METHOD_NAMES[method]] = rep
            section.lines.append(
                f"| {dataset} | {METHOD_NAMES[method]} | {rep['alignment']:.4f} | "
                f"{rep['uniformity']:.4f} | {sum(rep['explained_variance']):.1%} | {rep['users']} |"
            )
        if panels:
            section.figures[f"fig7_pca_{dataset}.png"] = _pca_figure(panels)
        for rival in [m for m in spec["methods"] if m != "clue"]:
            for metric, text in (
                ("uniformity", "CLUE's user vectors are more uniform than"),
                ("pc_share", "CLUE's user vectors are less concentrated on two directions than"),
            ):
                section.claims.append(_representation_claim(ctx, key, dataset, rival, metric, text))
    section.lines.append("")
    return section


def _representation_claim(ctx, key, dataset, rival, metric, text) -> Claim:
    def numbers(method):
        rows, missing = ctx.group(key, dataset=dataset, name=method)
        rep = [r["representation"] for r in rows]
        if metric == "pc_share":
            return [sum(r["explained_variance"]) for r in rep], missing
        return [r[metric] for r in rep], missing

    a, missing_a = numbers("clue")
    b, missing_b = numbers(rival)
    verdict = compare(a, b, ctx.settings.k, missing=missing_a + missing_b, higher_is_better=False)
    measured = f"{_mean_std(a)} vs {_mean_std(b)}" if a and b else ""
    return Claim(
        key,
        f"{text} {METHOD_NAMES[rival]}'s",
        f"{dataset} pre-training, {metric}",
        measured,
        verdict,
    )


def _probes(ctx: _Context, key: str) -> Section:
    spec = ctx.plan.profile[key]
    section = Section(EXPERIMENTS[key])
    section.lines += [
        "Frozen pre-trained encoder + a linear layer trained on the task, beside fine-tuning the "
        "whole network (the paper reports fine-tuning only). Claims marked (ours) are not the "
        "paper's.",
        "",
    ]
    for task in spec["tasks"]:
        reason = ctx.untestable(task)
        for dataset in spec["datasets"]:
            if reason:
                section.lines += [f"**{dataset} {task}**: not testable here ({reason}).", ""]
                continue
            metrics = _task_metrics(ctx, key, dataset, task)
            section.lines += _method_table(ctx, key, dataset, task, spec["methods"], metrics)
            if {"clue_probe", "mip_probe"} <= set(spec["methods"]):
                for metric in metrics:
                    section.claims.append(
                        ctx.claim(
                            key,
                            "(ours) CLUE's frozen vectors beat masked-item pre-training's",
                            f"{dataset} {task}",
                            {"dataset": dataset, "task": task, "method": "clue_probe"},
                            {"dataset": dataset, "task": task, "method": "mip_probe"},
                            metric,
                        )
                    )
    return section


# --- tables and figures ----------------------------------------------------------------------


def _task_metrics(ctx: _Context, key: str, dataset: str, task: str) -> list[str]:
    if task != "profiling":
        return list(HEADLINE[task])
    rows, _ = ctx.group(key, dataset=dataset, task=task)
    names = sorted({k for r in rows for k in r if k.endswith("/accuracy") and _has(r, k)})
    return names


def _method_table(ctx, key, dataset, task, methods, metrics) -> list[str]:
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
        skipped = _skipped(rows)
        cells = []
        for metric in columns:
            values = [float(r[metric]) for r in rows if _has(r, metric)]
            cells.append(_mean_std(values) + (f" [{missing} missing]" if missing else ""))
        if skipped:
            cells = [f"skipped: {skipped}"] + [""] * (len(columns) - 1)
        lines.append(f"| {METHOD_NAMES.get(method, method)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _variant_table(ctx, key, dataset, names, metrics) -> list[str]:
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
            cells.append(_mean_std(values) + (f" [{missing} missing]" if missing else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _bar_figure(bars: dict, metric: str, methods: list[str]) -> Figure:
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


def _line_figure(curves: dict, xlabel: str, metric: str, percent: bool = False) -> Figure:
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


def _pca_figure(panels: dict[str, dict]) -> Figure:
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


def _header(plan, settings, facts, by_cell, missing) -> list[str]:
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


def _claims_table(claims: list[Claim], settings: ReportSettings) -> list[str]:
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


def _wall_times(by_cell, budget: dict[str, Any]) -> list[str]:
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


def _has(row: dict, metric: str) -> bool:
    value = row.get(metric)
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _skipped(rows: list[dict]) -> str | None:
    reasons = [r["skipped"] for r in rows if isinstance(r.get("skipped"), str)]
    return reasons[0] if reasons else None


def _stats(values: list[float]) -> tuple[float, float]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), std


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f} (1)"
    mean, std = _stats(values)
    return f"{mean:.4f} ± {std:.4f} ({len(values)})"
