"""The full report's section on pre-training objectives: health, frozen probe and transfer.

Built only from stored results: ``objectives*.json`` (``benchmarks/objectives.py``, one file per
run-environment) and ``transfer*.json`` (``benchmarks/transfer.py``, one file per CLUE
objective), so that the report shows side by side what each objective does to the user vectors
(effective rank, top-2 share, uniformity), what a frozen probe reads from them, and whether
fine-tuning from them beats random initialisation.
"""

from __future__ import annotations

import json
from pathlib import Path

from clue_pipeline.figures import new_figure

# transfer results file stem -> the objectives cell whose pre-training its CLUE cells used
# (`transfer` runs the default objective, SimSiam + 1.0 x next items)
TRANSFER_OBJECTIVES = {
    "transfer": "simsiam_next",
    "transfer_simsiam": "simsiam",
    "transfer_joint": "simsiam_joint",
    "transfer_next_only": "next_only",
}
RANK_FIGURE = "fig8_objectives_rank.png"
FINETUNE_METRIC = {"next_item": "ndcg@10", "coldstart": "mrr@10", "profiling": "gender/accuracy"}


def load_results(results: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """({dataset: objectives payload}, {transfer stem: transfer payload}) found in ``results``."""
    objectives = {}
    for path in sorted(results.glob("objectives*.json")):
        payload = json.loads(path.read_text())
        objectives[payload.get("dataset", "ml-100k")] = payload
    transfers = {
        stem: json.loads((results / f"{stem}.json").read_text())
        for stem in TRANSFER_OBJECTIVES
        if (results / f"{stem}.json").exists()
    }
    return objectives, transfers


def finetune_verdicts(transfers: dict[str, dict], dataset: str, cell: str) -> str:
    """CLUE against CLUE-Zero after fine-tuning, per share, for one objectives cell: the task's
    headline metric always, any other metric only where it is not level (e.g. one profiling
    attribute of three), so that no gap hides behind the headline."""
    parts = []
    for stem, objective in TRANSFER_OBJECTIVES.items():
        if objective != cell or stem not in transfers:
            continue
        for c in transfers[stem]["comparisons"]:
            if c["dataset"] != dataset or c["against"] != "clue_zero":
                continue
            if "p" not in c:
                continue
            if c["metric"] != FINETUNE_METRIC[c["task"]] and c["verdict"] == "level":
                continue
            parts.append(
                f"{c['users']:.0%} {c['metric']}: {c['diff']:+.4f} (p {c['p']:.3f}, {c['verdict']})"
            )
    return "; ".join(parts) or "not run"


def objectives_table(dataset: str, payload: dict, transfers: dict[str, dict]) -> list[str]:
    lines = [
        f"### {dataset}: {payload['epochs']} pre-training epochs, {payload['users']} users",
        "",
        "| objective | change | eff. rank | top-2 share | uniformity | probe NDCG@10 "
        "| probe HR@10 | fine-tuned vs CLUE-Zero, by share of users |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in payload["results"]:
        health, probe = row["health"], row["probe"]
        lines.append(
            f"| {row['cell']} | {row['change']} | {health['effective_rank']:.1f} "
            f"| {health['top2_share']:.1%} | {health['uniformity']:.2f} "
            f"| {probe['test_ndcg@10']:.4f} | {probe['test_hr@10']:.4f} "
            f"| {finetune_verdicts(transfers, dataset, row['cell'])} |"
        )
    return lines + [""]


def transfer_table(transfers: dict[str, dict]) -> list[str]:
    lines = [
        "| CLUE objective | dataset | task | users | metric | CLUE vs | diff | p | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for stem, payload in transfers.items():
        for c in payload["comparisons"]:
            numbers = f"{c['diff']:+.4f} | {c['p']:.3f}" if "p" in c else "- | -"
            lines.append(
                f"| {TRANSFER_OBJECTIVES[stem]} | {c['dataset']} | {c['task']} | {c['users']:.0%} "
                f"| {c['metric']} | {c['against']} | {numbers} | {c['verdict']} |"
            )
    return lines


def rank_figure(objectives: dict[str, dict]):
    """Effective rank of the eval-mode user vectors after each pre-training epoch, per
    objective, one panel per dataset (the health monitor's curve, as the cells logged it)."""
    figure = new_figure((5.0 * len(objectives), 3.4))
    axes = figure.subplots(1, len(objectives), squeeze=False)[0]
    for ax, (dataset, payload) in zip(axes, objectives.items(), strict=True):
        for row in payload["results"]:
            if row["rank_curve"]:
                epochs = range(1, len(row["rank_curve"]) + 1)
                ax.plot(epochs, row["rank_curve"], marker=".", label=row["cell"])
        ax.set_title(f"{dataset}: effective rank of the user vectors")
        ax.set_xlabel("pre-training epoch")
        ax.set_ylabel("effective rank (of 64)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return figure


def section(results: Path, figures: Path) -> str:
    """The report section as Markdown; draws the rank figure into ``figures``."""
    objectives, transfers = load_results(results)
    if not objectives:
        return ""
    lines = [
        "## Pre-training objectives: health, frozen probe and transfer",
        "",
        "From `benchmarks/results/objectives*.json` (`benchmarks/objectives.py`, one seed per "
        "cell) and `benchmarks/results/transfer*.json` (`benchmarks/transfer.py`, 3 seeds, "
        "Welch's t at p < 0.05). Health: eval-mode `[UR]` vectors of every user. Probe: frozen "
        "encoder, linear next-item head, test metrics, full ranking, history items not "
        "excluded. Fine-tuned: CLUE against CLUE-Zero on "
        + ", ".join(f"{task} {metric}" for task, metric in FINETUNE_METRIC.items())
        + ".",
        "",
    ]
    for dataset, payload in objectives.items():
        lines += objectives_table(dataset, payload, transfers)
    lines += [f"![effective rank per pre-training epoch](report/{RANK_FIGURE})", ""]
    rank_figure(objectives).savefig(figures / RANK_FIGURE, dpi=110)
    if transfers:
        lines += ["### Every transfer comparison", "", *transfer_table(transfers), ""]
    return "\n".join(lines)
