"""Which cells each of the paper's experiments needs, from a profile of `parameters_report.yml`.

An experiment left out of a profile is reported as not in it; a task the profile marks
untestable gets no cells. Cells shared by experiments (CLUE at 100 % users, the CLUE
pre-training) are one cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clue_pipeline.experiments.cells import PRETRAIN_TASK, Cell, flatten
from clue_pipeline.experiments.settings import concerns

PROFILE_SETTINGS = {
    "store",
    "envs",
    "budget",
    "seeds",
    "seeded_methods",
    "variant_seeds",
    "untestable",
    "pretraining_overrides",
}
EXPERIMENTS = {
    "table2": "Table II: cold-start and profiling",
    "fig3": "Fig. 3: next-item recommendation",
    "fig4": "Fig. 4: share of training users",
    "table3": "Table III: views",
    "fig5": "Fig. 5: dropout rate",
    "fig6": "Fig. 6: collapse ablation",
    "fig7": "Fig. 7: PCA of user vectors",
    "probes": "Linear probes (frozen encoder) beside fine-tuning",
}


ONE_SEED = {"variant": True}  # asks seeds_of for the variant seeds


@dataclass
class Plan:
    profile: dict[str, Any]
    default_dropout: float
    cells: dict[str, list[Cell]] = field(default_factory=dict)  # experiment -> its cells
    names: dict[str, dict[Cell, str]] = field(default_factory=dict)  # experiment -> variant names

    def all_cells(self) -> list[Cell]:
        """Every distinct cell, first seeds first, so a partial sitting compares methods first."""
        seen: dict[Cell, None] = {}
        for cells in self.cells.values():
            seen.update(dict.fromkeys(cells))
        first = min(self.seeds)
        return sorted(seen, key=lambda c: (c.seed != first, c.fraction != 1.0, c.seed))

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.profile["seeds"]]

    @property
    def budget(self) -> dict[str, Any]:
        return flatten(self.profile.get("budget") or {})

    def seeds_of(self, method: str, variant: dict[str, Any] | None = None) -> list[int]:
        """All seeds for the seeded methods' default settings, the variant seeds otherwise."""
        if not variant and method in self.profile.get("seeded_methods", []):
            return self.seeds
        return [int(s) for s in self.profile.get("variant_seeds", self.seeds[:1])]

    def cell(
        self,
        dataset: str,
        task: str,
        method: str,
        seed: int,
        fraction: float = 1.0,
        variant: dict[str, Any] | None = None,
    ) -> Cell:
        overrides = {**self.budget, **flatten(variant or {})}
        bare = Cell.create(dataset, task, method, seed, fraction)
        for key, value in self.pretraining_overrides.items():
            if concerns(bare, key):
                overrides.setdefault(key, value)  # a variant's own value comes first
        return Cell.create(dataset, task, method, seed, fraction, overrides)

    @property
    def pretraining_overrides(self) -> dict[str, Any]:
        """Settings for the cells they shape only (the paper's objective for CLUE's cells):
        other methods' cells stay those of the quality grid."""
        return flatten(self.profile.get("pretraining_overrides") or {})


def build_plan(profile: dict[str, Any], default_dropout: float) -> Plan:
    """The cells of every experiment the profile names (see conf/base/parameters_report.yml)."""
    plan = Plan(profile, float(default_dropout))
    untestable = profile.get("untestable") or {}
    builders = {
        "table2": _table2,
        "fig3": _fig3,
        "fig4": _fig4,
        "table3": _table3,
        "fig5": _fig5,
        "fig6": _fig6,
        "fig7": _fig7,
        "probes": _probes,
    }
    unknown = sorted(set(profile) - set(EXPERIMENTS) - PROFILE_SETTINGS)
    if unknown:
        raise ValueError(
            f"report profile: unknown key(s) {unknown}; expected experiments "
            f"{sorted(EXPERIMENTS)} or settings {sorted(PROFILE_SETTINGS)}"
        )
    for key, builder in builders.items():
        spec = profile.get(key)
        if spec is None:
            continue
        named = [(c, n) for c, n in builder(plan, spec) if c.task not in untestable]
        plan.cells[key] = [c for c, _ in named]
        plan.names[key] = dict(named)
    return plan


def _grid(plan: Plan, datasets, tasks, methods) -> list[tuple[Cell, str]]:
    return [
        (plan.cell(d, t, m, s), m)
        for d in datasets
        for t in tasks
        for m in methods
        for s in plan.seeds_of(m)
    ]


def _table2(plan: Plan, spec: dict) -> list[tuple[Cell, str]]:
    return [
        named
        for dataset, tasks in dataset_tasks(spec).items()
        for named in _grid(plan, [dataset], tasks, spec["methods"])
    ]


def dataset_tasks(spec: dict) -> dict[str, list[str]]:
    """``datasets`` as {dataset: [tasks]}, or a list of datasets that all run ``tasks``."""
    datasets = spec["datasets"]
    if isinstance(datasets, dict):
        return {d: list(t) for d, t in datasets.items()}
    return {d: list(spec["tasks"]) for d in datasets}


def _fig3(plan: Plan, spec: dict) -> list[tuple[Cell, str]]:
    return _grid(plan, spec["datasets"], ["next_item"], spec["methods"])


def _fig4(plan: Plan, spec: dict) -> list[tuple[Cell, str]]:
    cells = []
    for dataset in spec["datasets"]:
        for method in spec["methods"]:
            for fraction in spec["fractions"]:
                seeds = (
                    plan.seeds_of(method) if fraction == 1.0 else plan.seeds_of(method, ONE_SEED)
                )
                cells += [
                    (plan.cell(dataset, spec["task"], method, s, fraction), method) for s in seeds
                ]
    return cells


def _table3(plan: Plan, spec: dict) -> list[tuple[Cell, str]]:
    return _variants(plan, spec, spec["task"], "clue", spec["variants"])


def _fig5(plan: Plan, spec: dict) -> list[tuple[Cell, str]]:
    variants = {
        f"{rate:g}": ({} if float(rate) == plan.default_dropout else {"encoder.dropout": rate})
        for rate in spec["rates"]
    }
    return _variants(plan, spec, spec["task"], "clue", variants)


def _fig6(plan: Plan, spec: dict) -> list[tuple[Cell, str]]:
    """Curves of one seed: a picture of collapse, not a mean. ``budget`` (optional) overrides
    the profile's: collapse needs enough pre-training steps to show."""
    return [
        (plan.cell(d, PRETRAIN_TASK, "clue", s, variant={**_budget(spec), **flatten(v)}), name)
        for d in spec["datasets"]
        for name, v in spec["variants"].items()
        for s in plan.seeds_of("clue", ONE_SEED)
    ]


def _fig7(plan: Plan, spec: dict) -> list[tuple[Cell, str]]:
    return [
        (plan.cell(d, PRETRAIN_TASK, m, s, variant=_budget(spec)), m)
        for d in spec["datasets"]
        for m in spec["methods"]
        for s in plan.seeds_of(m, ONE_SEED)
    ]


def _budget(spec: dict) -> dict[str, Any]:
    return flatten(spec.get("budget") or {})


def _probes(plan: Plan, spec: dict) -> list[tuple[Cell, str]]:
    return _grid(plan, spec["datasets"], spec["tasks"], spec["methods"])


def _variants(
    plan: Plan, spec: dict, task: str, method: str, variants: dict
) -> list[tuple[Cell, str]]:
    return [
        (plan.cell(d, task, method, s, variant=overrides), name)
        for d in spec["datasets"]
        for name, overrides in variants.items()
        for s in plan.seeds_of(method, overrides)
    ]
