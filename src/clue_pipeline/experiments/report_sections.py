"""What each of the paper's experiments shows in report.md: its tables, figures and claims.

One builder per experiment of ``plan.EXPERIMENTS`` (``SECTION_BUILDERS``), each reading the
stored cells through :class:`Context` and drawing with ``report_render``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clue_pipeline.experiments.cells import Cell
from clue_pipeline.experiments.plan import EXPERIMENTS, Plan, dataset_tasks
from clue_pipeline.experiments.report_render import (
    HEADLINE,
    METHOD_NAMES,
    Claim,
    ReportSettings,
    Section,
    bar_figure,
    has_metric,
    line_figure,
    mean_and_std,
    mean_std_text,
    method_table,
    pca_figure,
    skip_reason,
    task_metrics,
    variant_table,
)
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
from clue_pipeline.figures import loss_curves


@dataclass
class Context:
    """The plan's stored cells as the builders read them: groups, values, noise, claims."""

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
        return [float(r[metric]) for r in rows if has_metric(r, metric)], missing

    def noise(self, dataset: str, task: str, metric: str) -> float | None:
        """Pooled std of every multi-seed group of this dataset and task (any experiment)."""
        groups: dict[tuple, list[float]] = {}
        for cell, row in self.by_cell.items():
            if cell.dataset == dataset and cell.task == task and has_metric(row, metric):
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
        reason = self.untestable(task) or skip_reason(self.group(experiment, **better)[0])
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
        measured = f"{mean_std_text(a)} vs {mean_std_text(b)}" if a and b else ""
        return Claim(experiment, text, f"{where}, {metric}", measured, verdict)


def _table2(ctx: Context, key: str) -> Section:
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
            metrics = task_metrics(ctx, key, dataset, task)
            section.lines += method_table(ctx, key, dataset, task, spec["methods"], metrics)
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


def _fig3(ctx: Context, key: str) -> Section:
    spec = ctx.plan.profile[key]
    section = Section(EXPERIMENTS[key])
    section.lines += [
        "Leave-one-out, full ranking over all items. Mean ± std over seeds (n).",
        "",
    ]
    bars: dict[str, dict[str, tuple[float, float]]] = {}
    for dataset in spec["datasets"]:
        section.lines += method_table(
            ctx, key, dataset, "next_item", spec["methods"], HEADLINE["next_item"]
        )
        for method in spec["methods"]:
            values, _ = ctx.values(key, "recall@10", dataset=dataset, method=method)
            if values:
                bars.setdefault(dataset, {})[method] = mean_and_std(values)
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
        section.figures["fig3_next_item.png"] = bar_figure(bars, "recall@10", spec["methods"])
    return section


def _fig4(ctx: Context, key: str) -> Section:
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
                cells.append(mean_std_text(values))
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
        section.figures["fig4_sparsity.png"] = line_figure(
            lines, "share of training users", metric, percent=True
        )
    return section


def _table3(ctx: Context, key: str) -> Section:
    spec = ctx.plan.profile[key]
    section = Section(EXPERIMENTS[key])
    section.lines += [
        "CLUE pre-trained with each view policy, then fine-tuned alike; "
        "`dropout` = the same sequence twice, differing only by dropout masks.",
        "",
    ]
    names = list(spec["variants"])
    for dataset in spec["datasets"]:
        section.lines += variant_table(ctx, key, dataset, names, HEADLINE[spec["task"]])
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


def _fig5(ctx: Context, key: str) -> Section:
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
        section.lines += variant_table(ctx, key, dataset, names, HEADLINE[task])
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
        section.figures["fig5_dropout.png"] = line_figure(curves, "dropout rate", HEADLINE[task][0])
    return section


def _fig6(ctx: Context, key: str) -> Section:
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


def _fig7(ctx: Context, key: str) -> Section:
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
            section.figures[f"fig7_pca_{dataset}.png"] = pca_figure(panels)
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
    measured = f"{mean_std_text(a)} vs {mean_std_text(b)}" if a and b else ""
    return Claim(
        key,
        f"{text} {METHOD_NAMES[rival]}'s",
        f"{dataset} pre-training, {metric}",
        measured,
        verdict,
    )


def _probes(ctx: Context, key: str) -> Section:
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
            metrics = task_metrics(ctx, key, dataset, task)
            section.lines += method_table(ctx, key, dataset, task, spec["methods"], metrics)
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


SECTION_BUILDERS: dict[str, Callable[[Context, str], Section]] = {
    "table2": _table2,
    "fig3": _fig3,
    "fig4": _fig4,
    "table3": _table3,
    "fig5": _fig5,
    "fig6": _fig6,
    "fig7": _fig7,
    "probes": _probes,
}
