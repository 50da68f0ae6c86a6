"""Cells -> report.md: the paper's claims beside our numbers (mean ± std over seeds), computed
verdicts, PNG figures, the missing cells, and the facts needed to read the numbers.

The sections (what each experiment shows and claims) live in ``report_sections``, their
drawing in ``report_render``; this module loads the cells and puts the report together.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from clue_pipeline.experiments.cells import PRETRAIN_TASK, Cell
from clue_pipeline.experiments.plan import EXPERIMENTS, Plan
from clue_pipeline.experiments.report_render import (
    HEADLINE,
    METHOD_NAMES,
    Claim,
    ReportSettings,
    Section,
    claims_table,
    header_lines,
    wall_time_table,
)
from clue_pipeline.experiments.report_sections import SECTION_BUILDERS, Context
from clue_pipeline.experiments.store import CellStore

__all__ = [
    "HEADLINE",
    "METHOD_NAMES",
    "Claim",
    "ReportSettings",
    "Section",
    "assemble",
    "load_results",
    "result_row",
]


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
    context = Context(plan, by_cell, settings)
    sections = []
    for key, title in EXPERIMENTS.items():
        if key in plan.cells:
            sections.append(SECTION_BUILDERS[key](context, key))
        else:
            sections.append(Section(title, [f"Not in the `{settings.profile}` profile."]))
    missing = store.missing(plan.all_cells())
    lines = header_lines(plan, settings, facts, by_cell, missing)
    lines += claims_table([c for s in sections for c in s.claims], settings)
    figures: dict[str, Figure] = {}
    for section in sections:
        lines += [f"## {section.title}", "", *section.lines, ""]
        for name in section.figures:
            lines += [f"![{section.title}](report/{name})", ""]
        figures.update(section.figures)
    lines += wall_time_table(by_cell, plan.budget)
    lines += [f"## Missing cells ({len(missing)} of {len(plan.all_cells())})", ""]
    lines += [f"- {store.missing_label(c)} (`{c.relative_path}`)" for c in missing] or ["- none"]
    failed = facts.get("failed_cells") or []
    if failed:
        lines += ["", f"## Cells that failed in this sitting ({len(failed)})", ""]
        lines += [f"- {f['cell']}: `{f['failed'].strip().splitlines()[-1]}`" for f in failed]
    return "\n".join(lines).rstrip() + "\n", figures
