"""What every benchmark shares: the data and settings as the project prepares and parses them,
and results written as JSON + Markdown with the command, date, machine and thread count."""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from clue_pipeline.augment import validate_view_policy
from clue_pipeline.config import (
    FinetuneSettings,
    PretrainSettings,
    TrainConfig,
    encoder_config,
    parse_finetune,
    parse_pretrain,
    to_dataclass,
)
from clue_pipeline.experiments.prepared import (
    NextItemDataset,
    dataset_environment,
    prepared_next_item,
)
from clue_pipeline.experiments.settings import _environment_parameters
from clue_pipeline.experiments.statistics import ALPHA, corrected, paired
from clue_pipeline.models.encoders import EncoderConfig
from clue_pipeline.tasks.finetuning import MethodSpec
from clue_pipeline.tasks.pretraining import ClueSettings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# The RecBole reference of a timing: the peers study that measured RecBole 1.2.1's SASRec on
# Beauty beside ours (one thread per side, same settings as the pipeline's recipe before the
# ladder; its scripts are archived, see benchmarks/archive/README.md).
RECBOLE_RESULTS = RESULTS / "peers_beauty.json"
# A benchmark neither writes checkpoints into the pipelines' folders nor resumes from them.
NO_CHECKPOINTS = {"checkpoint_dir": None, "resume": False}


def next_item_dataset(dataset: str) -> NextItemDataset:
    """The dataset's next-item split and item index as its run-environment prepares them."""
    return prepared_next_item(dataset, REPO)


def run_environment(dataset: str, project: Path = REPO) -> dict[str, Any]:
    """The parameters the dataset's run-environment resolves, read by Kedro's config loader
    without a session: the GPU scripts run where the pipelines' other packages are absent."""
    env = dataset_environment(dataset, project)
    return json.loads(_environment_parameters(str(Path(project) / "conf"), env))


@dataclass(frozen=True)
class RunSettings:
    """A run-environment's blocks, parsed by the config package as the nodes parse them; a
    benchmark changes only its own knobs (steps, batch, device, seed) with ``replace``."""

    params: dict[str, Any]
    pretrain: PretrainSettings
    finetune: FinetuneSettings

    def encoder(self, num_items: int, **changes: Any) -> EncoderConfig:
        return replace(encoder_config(self.params["encoder"], num_items), **changes)

    def clue(self) -> ClueSettings:
        views = validate_view_policy(self.params["augment"]["views"])
        return ClueSettings(views, self.pretrain.simsiam, self.pretrain.objective)

    def pretrain_train(self, **changes: Any) -> TrainConfig:
        return replace(self.pretrain.train, **{**NO_CHECKPOINTS, **changes})

    def finetune_train(self, method: str = "clue_zero", **changes: Any) -> TrainConfig:
        """``finetune.train``, then ``tasks.next_item``, then the method's overrides."""
        train = self.finetune.train_for("next_item", method)
        return replace(train, **{**NO_CHECKPOINTS, **changes})

    def method(self, name: str) -> MethodSpec:
        return to_dataclass(MethodSpec, self.finetune.methods[name], f"finetune.methods.{name}")


def run_settings(dataset: str, project: Path = REPO) -> RunSettings:
    """The dataset's run-environment, parsed (:class:`RunSettings`)."""
    params = run_environment(dataset, project)
    return RunSettings(
        params, parse_pretrain(params["pretrain"]), parse_finetune(params["finetune"])
    )


def recbole_reference(path: Path = RECBOLE_RESULTS) -> dict[str, Any]:
    """RecBole's median training epoch and full-ranking validation, as measured and stored by
    the peers study, with the file and thread count they come from (None where not stored)."""
    if not path.is_file():
        return {"source": f"{path.relative_to(REPO)} (not found)", "epoch_s": None, "eval_s": None}
    record = json.loads(path.read_text())
    side = record["summary"]["sides"]["recbole"]
    return {
        "source": f"{path.relative_to(REPO)} ({record['date']}, "
        f"{record['machine']['torch_threads']} thread(s) per side)",
        "epoch_s": side["median_epoch_train_s"],
        "eval_s": side["median_eval_s"],
    }


Label = dict[str, Any]


def paired_by_seed(pairs: list[tuple[Label, dict[int, float], dict[int, float]]]) -> list[Label]:
    """Each (label, a by seed, b by seed): the paired t-test of a - b over the seeds both sides
    have (one seed draws the same users and initial weights for both), then Holm's correction
    across all of them, the study's family of comparisons."""
    tests = []
    for _, a, b in pairs:
        seeds = sorted(a.keys() & b.keys())
        tests.append(paired([a[s] for s in seeds], [b[s] for s in seeds]))
    rows = corrected(tests)
    return [
        {**label, "seeds": sorted(a.keys() & b.keys()), **row}
        for (label, a, b), row in zip(pairs, rows, strict=True)
    ]


COMPARISON_HEAD = ("seeds", "diff", "95 % CI", "p", "p_holm", "verdict", "verdict_holm")


def comparison_cells(row: Label) -> tuple[str, ...]:
    """The test columns of one :func:`paired_by_seed` row (``COMPARISON_HEAD``)."""
    seeds = ", ".join(map(str, row["seeds"])) or "-"
    verdicts = (row["verdict"], row["verdict_holm"])
    if row["p"] is None:
        diff = "-" if row["diff"] is None else f"{row['diff']:+.4f}"
        return (seeds, diff, "-", "-", "-", *verdicts)
    interval = f"[{row['low']:+.4f}, {row['high']:+.4f}]"
    return (
        seeds,
        f"{row['diff']:+.4f}",
        interval,
        f"{row['p']:.3f}",
        f"{row['p_holm']:.3f}",
        *verdicts,
    )


def comparison_note(rows: list[Label]) -> str:
    """What the comparison table's columns mean: the test, the seeds, the correction."""
    seeds = sorted({s for row in rows for s in row["seeds"]})
    return (
        "Test: paired t-test of the difference at each seed both sides ran (seeds "
        f"{', '.join(map(str, seeds)) or 'none'}; a seed draws the same users and initial "
        f"weights for both), two-sided, with its 95 % interval; `better` / `worse` at p < "
        f"{ALPHA}, `level` otherwise; identical differences at every seed, or fewer than two "
        f"seeds, are `not testable`. p_holm: Holm's correction across the {len(rows)} "
        "comparisons of this table; verdict_holm is the verdict that survives it (`not shown` "
        "otherwise)."
    )


def markdown_head(title: str, command: str, date: str) -> list[str]:
    """A results file's first lines: its title, then how and when its numbers were made."""
    return [f"# {title}", "", f"- command: `{command}`", f"- date: {date}"]


def markdown_table(
    head: Sequence[str], rows: Iterable[Sequence[Any]], rule: Sequence[str] | None = None
) -> list[str]:
    """A Markdown table's lines; ``rule`` sets each column's alignment (``---``, ``---:``)."""
    return [_table_row(head), _table_row(rule or ["---"] * len(head)), *map(_table_row, rows)]


def _table_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def show_cell_progress() -> None:
    """The cell runner's own lines (each cell's log path) on stderr: benchmarks run cells
    outside Kedro, whose logging would otherwise show them."""
    runner = logging.getLogger("clue_pipeline.experiments.runner")
    if not runner.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        runner.addHandler(handler)
    runner.setLevel(logging.INFO)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_results(name: str, payload: dict[str, Any], markdown_body: str) -> Path:
    """benchmarks/results/<name>.json and .md, each stating how the numbers were made."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = {
        "command": _command(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    record = {**header, **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    host = header["machine"]
    lines = markdown_head(name, header["command"], header["date"])
    lines.append(
        f"- machine: {host['cpu']}, {host['cores_available']} cores available, torch threads "
        f"{host['torch_threads']}, load average "
        f"{', '.join(f'{x:.2f}' for x in host['load_average'])}"
    )
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + f"\n\n{markdown_body.strip()}\n")
    return RESULTS / f"{name}.json"


def _command() -> str:
    """How this benchmark was started, as a user would type it (``python -m benchmarks.x``)."""
    script = Path(sys.argv[0]).resolve()
    if script.suffix == ".py" and script.is_relative_to(REPO / "benchmarks"):
        module = ".".join(script.relative_to(REPO).with_suffix("").parts)
        head = [".venv/bin/python", "-m", module]
    else:
        head = [".venv/bin/python", *sys.argv[:1]]
    return " ".join(shlex.quote(a) for a in [*head, *sys.argv[1:]])
