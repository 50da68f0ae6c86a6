"""The full report's section on pre-training objectives: health, frozen probe and transfer.

Built only from stored results: ``objectives*.json`` (the objectives study, one file per
run-environment; its script is archived, benchmarks/archive/README.md) and ``transfer*.json``
(``benchmarks/transfer.py``, one file per CLUE objective or fine-tuning setting), so that the
report shows side by side what each objective does to the user vectors (effective rank, top-2
share, uniformity), what a frozen probe reads from them, and whether fine-tuning from them
beats random initialisation. ``benchmarks/report_full.py`` places it in the full report.
"""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure

from clue_pipeline.figures import new_figure

# transfer results file stem -> the objectives cell whose pre-training its CLUE cells used
# (`transfer` runs the default objective, SimSiam + 1.0 x next items)
TRANSFER_OBJECTIVES = dict(
    [
        ("transfer", "simsiam_next"),
        ("transfer_simsiam", "simsiam"),
        ("transfer_joint", "simsiam_joint"),
        ("transfer_next_only", "next_only"),
    ]
)
# transfer results file stem -> (its pre-training's objectives cell, what its fine-tuning
# changes): a fine-tuning setting tried on a target, listed beside the objectives that tried it
# but kept out of the objectives' own rows
FINETUNE_VARIANTS = {
    "transfer_epochs200": ("simsiam_next", "fine-tuned up to 200 epochs"),
}
RANK_FIGURE = "fig8_objectives_rank.png"
FINETUNE_METRIC = {"next_item": "ndcg@10", "coldstart": "mrr@10", "profiling": "gender/accuracy"}
DEFAULT_OBJECTIVE = TRANSFER_OBJECTIVES["transfer"]
RANK_TARGET = 20.0
RANK_DATASETS = ("beauty", "ml-1m")
PROBE_DATASET, PROBE_RIVAL = "beauty", "mip"
SHARE_TARGETS = (("beauty", "next_item", 0.1), ("beauty", "next_item", 1.0))
USER_TASKS = ("profiling", "coldstart")


def section(results: Path, figures: Path) -> str:
    """The report section as Markdown; draws the rank figure into ``figures``."""
    objectives, transfers = load_results(results)
    if not objectives:
        return ""
    lines = [
        "## Pre-training objectives: health, frozen probe and transfer",
        "",
        "From `benchmarks/results/objectives*.json` (the objectives study, one seed per "
        "cell) and `benchmarks/results/transfer*.json` (`benchmarks/transfer.py`, transductive "
        "reuse: pre-training read every user; seeds 0, 1, 2, paired t per seed, Holm's correction "
        "across each study's comparisons; a verdict is the corrected one, `not shown` where the "
        "difference does not survive it). Health: eval-mode `[UR]` vectors of every user. Probe: frozen "
        "encoder, linear next-item head, test metrics, full ranking, history items not "
        "excluded. Fine-tuned: CLUE against CLUE-Zero on "
        + ", ".join(f"{task} {metric}" for task, metric in FINETUNE_METRIC.items())
        + ".",
        "",
    ]
    lines += [
        "### Targets",
        "",
        "What the default objective was asked to reach. In the last column `zero` (the untrained "
        "encoder) and `mip` (masked-item pre-training) are references, not candidates.",
        "",
        *targets_table(objectives, transfers),
        "",
    ]
    for dataset, payload in objectives.items():
        lines += objectives_table(dataset, payload, transfers)
    lines += [f"![effective rank per pre-training epoch](report/{RANK_FIGURE})", ""]
    rank_figure(objectives).savefig(figures / RANK_FIGURE, dpi=110)
    if transfers:
        lines += ["### Every transfer comparison", "", *transfer_table(transfers), ""]
    return "\n".join(lines)


def load_results(results: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """({dataset: objectives payload}, {transfer stem: transfer payload}) found in ``results``."""
    objectives = {}
    for path in sorted(results.glob("objectives*.json")):
        payload = json.loads(path.read_text())
        objectives[payload.get("dataset", "ml-100k")] = payload
    transfers = {
        stem: json.loads((results / f"{stem}.json").read_text())
        for stem in [*TRANSFER_OBJECTIVES, *FINETUNE_VARIANTS]
        if (results / f"{stem}.json").exists()
    }
    return objectives, transfers


def study_label(stem: str) -> str:
    """The objective a transfer study pre-trained with, and its fine-tuning change if any."""
    if stem in TRANSFER_OBJECTIVES:
        return TRANSFER_OBJECTIVES[stem]
    objective, change = FINETUNE_VARIANTS[stem]
    return f"{objective}, {change}"


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
            if c.get("p") is None:
                continue
            if c["metric"] != FINETUNE_METRIC[c["task"]] and _verdict(c) in ("level", "not shown"):
                continue
            parts.append(f"{c['users']:.0%} {c['metric']}: {c['diff']:+.4f} ({_p(c)})")
    return "; ".join(parts) or "not run"


def objectives_table(dataset: str, payload: dict, transfers: dict[str, dict]) -> list[str]:
    """One dataset's objectives: health, probe and the fine-tuned verdicts of each."""
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
    """Every comparison of every transfer study, labelled by its objective."""
    lines = [
        "| CLUE objective | dataset | task | users | metric | CLUE vs | diff | p | p_holm "
        "| verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for stem, payload in transfers.items():
        for c in payload["comparisons"]:
            numbers = (
                f"{c['diff']:+.4f} | {c['p']:.3f} | {_holm_text(c)}"
                if c.get("p") is not None
                else "- | - | -"
            )
            lines.append(
                f"| {study_label(stem)} | {c['dataset']} | {c['task']} | {c['users']:.0%} "
                f"| {c['metric']} | {c['against']} | {numbers} | {_verdict(c)} |"
            )
    return lines


def _verdict(c: dict) -> str:
    """The verdict after Holm's correction (the uncorrected one for older files)."""
    return c.get("verdict_holm", c["verdict"])


def _holm_text(c: dict) -> str:
    return "-" if c.get("p_holm") is None else f"{c['p_holm']:.3f}"


def _p(c: dict) -> str:
    holm = "" if c.get("p_holm") is None else f", p_holm {c['p_holm']:.3f}"
    return f"p {c['p']:.3f}{holm}, {_verdict(c)}"


def _status(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "**missed**")


def _rank_target(objectives: dict[str, dict], dataset: str) -> list[str]:
    rows = objectives.get(dataset, {}).get("results", [])
    ranks = {row["cell"]: row["health"]["effective_rank"] for row in rows}
    value = ranks.get(DEFAULT_OBJECTIVE)
    tried = ", ".join(
        f"{cell} {rank:.1f}" for cell, rank in sorted(ranks.items(), key=lambda x: -x[1])
    )
    return [
        f"effective rank >= {RANK_TARGET:.0f} of 64, {dataset}",
        "-" if value is None else f"{value:.1f}",
        _status(None if value is None else value >= RANK_TARGET),
        tried or "-",
    ]


def _probe_target(objectives: dict[str, dict]) -> list[str]:
    rows = objectives.get(PROBE_DATASET, {}).get("results", [])
    probes = {row["cell"]: row["probe"]["test_hr@10"] for row in rows}
    value, rival = probes.get(DEFAULT_OBJECTIVE), probes.get(PROBE_RIVAL)
    met = None if value is None or rival is None else value > rival
    tried = ", ".join(
        f"{cell} {hr:.4f}" for cell, hr in sorted(probes.items(), key=lambda x: -x[1])
    )
    return [
        f"frozen probe beats masked items' ({PROBE_DATASET} next-item HR@10, one seed)",
        "-" if met is None else f"{value:.4f} against {rival:.4f}",
        _status(met),
        tried or "-",
    ]


def _against_zero(payload: dict, dataset: str, task: str, share: float, metric: str) -> dict | None:
    """The tested comparison of CLUE with CLUE-Zero in one transfer study, if it was made."""
    wanted = (dataset, task, metric, "clue_zero")
    for c in payload["comparisons"]:
        key = (c["dataset"], c["task"], c["metric"], c["against"])
        if key == wanted and abs(c["users"] - share) < 1e-9 and c.get("p") is not None:
            return c
    return None


def _share_target(transfers: dict[str, dict], dataset: str, task: str, share: float) -> list[str]:
    metric = FINETUNE_METRIC[task]
    found = {
        study_label(stem): c
        for stem, payload in transfers.items()
        if (c := _against_zero(payload, dataset, task, share, metric))
    }
    default = found.get(DEFAULT_OBJECTIVE)
    tried = "; ".join(f"{objective} {c['diff']:+.4f} ({_p(c)})" for objective, c in found.items())
    return [
        f"fine-tuned beats CLUE-Zero, {dataset} {task} {metric}, {share:.0%} of the users",
        "-" if default is None else f"{default['diff']:+.4f}, {_p(default)}",
        _status(None if default is None else _verdict(default) == "better"),
        tried or "-",
    ]


def _user_task_target(transfers: dict[str, dict]) -> list[str]:
    counts, default_wins = [], None
    for stem, payload in transfers.items():
        compared = [
            c
            for c in payload["comparisons"]
            if c["task"] in USER_TASKS and c["against"] == "clue_zero" and c.get("p") is not None
        ]
        wins = [c for c in compared if _verdict(c) == "better"]
        losses = sum(_verdict(c) == "worse" for c in compared)
        if compared:
            counts.append(
                f"{study_label(stem)} {len(wins)} better, {losses} worse of {len(compared)}"
            )
        if study_label(stem) == DEFAULT_OBJECTIVE and compared:
            default_wins = wins
    value = (
        "-"
        if default_wins is None
        else "; ".join(
            f"{c['dataset']} {c['metric']} at {c['users']:.0%}: {c['diff']:+.4f} ({_p(c)})"
            for c in default_wins
        )
        or "none"
    )
    return [
        "fine-tuned beats CLUE-Zero on a user task (profiling or cold-start, any share, any metric)",
        value,
        _status(None if default_wins is None else bool(default_wins)),
        "; ".join(counts) or "-",
    ]


def targets_table(objectives: dict[str, dict], transfers: dict[str, dict]) -> list[str]:
    """The targets the default objective was set, each with the measured value, met or
    missed, and every objective that tried it: a missed target shows what was tried."""
    rows = [_rank_target(objectives, dataset) for dataset in RANK_DATASETS]
    rows.append(_probe_target(objectives))
    rows += [_share_target(transfers, *target) for target in SHARE_TARGETS]
    rows.append(_user_task_target(transfers))
    return [
        f"| target | default ({DEFAULT_OBJECTIVE}) | status | every objective that tried it |",
        "| --- | --- | --- | --- |",
        *(f"| {' | '.join(row)} |" for row in rows),
    ]


def rank_figure(objectives: dict[str, dict]) -> Figure:
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
