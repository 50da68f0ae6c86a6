"""Kedro-Viz renders every node of the project's registered pipelines, and opens legible.

The expected names come from the project's own pipeline registry, so the test follows the
project as pipelines are added. The static site of ``kedro viz build`` is built in a copy
of the project (the command has no output option and would write ``build/`` and an MLflow
database into the checkout) and served on an ephemeral local port.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kedro.framework.project import pipelines as registered_pipelines
from kedro.framework.startup import bootstrap_project

from clue_pipeline.pipeline_registry import PHASE_OF, PHASES
from tests.browser.conftest import dump_dom, keep_screenshot, screenshot, serve_directory
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KEDRO_CLI = Path(sys.executable).with_name("kedro")
BUILD_TIMEOUT_S = 400
PROJECT_FILES = ("pyproject.toml", ".telemetry")
# Kedro-Viz collapses modular pipelines by default; this URL flag expands them so the
# nodes inside namespaces are drawn, and named, too.
EXPAND_ALL = "?expandAllPipelines=true"
# The stages of the default chain (docs/architecture.md), one namespace each, inside the
# namespace of their phase (`learn.pretrain`).
STAGES = {"ingest", "sequences", "augment", "pretrain", "finetune", "evaluate", "embed"}
# What the first view may draw (boxes and datasets; Kedro-Viz hides parameters by default):
# the tables that pass from one phase to the next and the results a user opens, each named.
MAX_FIRST_VIEW = 22
# Kedro-Viz keeps its settings in the browser's localStorage; a fresh profile would open on
# the feature tour. The picture skips the tour and lays the chain out left to right.
SETTINGS = (
    '<script>localStorage.setItem("KedroViz", JSON.stringify({showFeatureHints: false, '
    'ignoreLargeWarning: true, theme: "light", orientation: "horizontal"}));</script>'
)


def _copy_project(destination: Path) -> Path:
    """Code and base configuration only: no data, no local (possibly secret) configuration."""
    for name in PROJECT_FILES:
        shutil.copy2(REPO_ROOT / name, destination / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO_ROOT / "src", destination / "src", ignore=ignore)
    shutil.copytree(REPO_ROOT / "conf" / "base", destination / "conf" / "base", ignore=ignore)
    (destination / "conf" / "local").mkdir()
    return destination


@pytest.fixture(scope="module")
def viz_site(tmp_path_factory) -> Path:
    project = _copy_project(tmp_path_factory.mktemp("viz-project"))
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "CLUE_NUM_THREADS": "1",
        "COLUMNS": "200",  # rich logging: one line per message, readable in a failure
    }
    result = subprocess.run(
        [str(KEDRO_CLI), "viz", "build"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    site = project / "build"
    if result.returncode != 0 or not (site / "index.html").is_file():
        output = result.stdout + result.stderr
        errors = [line for line in output.splitlines() if re.search(r"error|failed", line, re.I)]
        raise AssertionError(
            f"`kedro viz build` in a copy of the project exited {result.returncode} without "
            f"{site / 'index.html'}; error lines: {errors[-10:]}; output tail: {output[-1500:]}"
        )
    return site


def _expected_names() -> tuple[list[str], list[str]]:
    """Pipeline names and node names (as Kedro-Viz labels them) from the project registry."""
    bootstrap_project(REPO_ROOT)
    names = [name for name in registered_pipelines if name != "__default__"]
    nodes = registered_pipelines["__default__"].nodes
    labels = sorted({_label(node) for node in nodes})
    return names, labels


def _label(node) -> str:
    """Kedro-Viz draws a namespaced node under its namespace, by its own short name."""
    namespace = node.namespace
    return node.name.removeprefix(f"{namespace}.") if namespace else node.name


def _rendered(name: str, dom: str) -> bool:
    """True when ``name`` is the whole text of some element, not only inside an attribute."""
    return re.search(rf">\s*{re.escape(name)}\s*<", dom) is not None


def test_kedro_viz_draws_every_registered_node(chromium, viz_site, tmp_path):
    pipeline_names, node_labels = _expected_names()
    assert node_labels, "the project registers no nodes: nothing to look for"

    with serve_directory(viz_site) as base:
        dom = dump_dom(chromium, f"{base}/{EXPAND_ALL}", tmp_path / "profile")

    assert _rendered("Kedro-Viz", dom), "the Kedro-Viz app shell did not render"
    missing_pipelines = [name for name in pipeline_names if not _rendered(name, dom)]
    assert not missing_pipelines, f"pipelines not offered in Kedro-Viz: {missing_pipelines}"
    missing_nodes = [label for label in node_labels if not _rendered(label, dom)]
    assert not missing_nodes, f"nodes not drawn by Kedro-Viz: {missing_nodes}"
    listed = set(re.findall(r'role="treeitem"[^>]*? id="[^"]*?-([^"]+)"', dom))
    stage_boxes = {f"{PHASE_OF[stage]}.{stage}" for stage in STAGES}
    assert stage_boxes <= listed, f"stages not listed in a phase: {sorted(stage_boxes - listed)}"


def _between_phases() -> set[str]:
    """The datasets Kedro-Viz draws beside the folded phases: what a phase reads from outside
    or writes for the other phase or for the user (its free inputs and outputs), parameters
    aside. Models, encoders and histories stay inside: a node of the same phase reads them.
    """
    bootstrap_project(REPO_ROOT)
    chain = registered_pipelines["__default__"]
    phases = {node.namespace.split(".")[0] for node in chain.nodes if node.namespace}
    shown: set[str] = set()
    for phase in phases:
        inside = chain.only_nodes_with_namespaces([phase])
        rest = chain - inside
        crossing = inside.inputs() | inside.outputs() | (rest.inputs() & inside.all_outputs())
        shown |= {name for name in crossing if not name.startswith("params:")}
    return shown - {"parameters"}


def _node_attributes(dom: str, node_type: str) -> list[str]:
    """``data-id`` of every drawn graph node of a type (modularPipeline, task, data)."""
    return re.findall(rf'data-id="([^"]+)" data-node-type="{node_type}"', dom)


def test_kedro_viz_opens_on_the_phases_folded(chromium, viz_site, tmp_path):
    page = viz_site / "stages.html"
    index = (viz_site / "index.html").read_text()
    page.write_text(index.replace("<head>", f"<head>{SETTINGS}", 1))

    with serve_directory(viz_site) as base:
        dom = dump_dom(chromium, f"{base}/{page.name}", tmp_path / "profile")
        png = screenshot(
            chromium,
            f"{base}/{page.name}",
            tmp_path / "kedro_viz.png",
            tmp_path / "shot",
            (1800, 1000),  # the widest dataset names fit beside the sidebar
        )

    boxes = _node_attributes(dom, "modularPipeline")
    assert set(boxes) == set(PHASES)
    assert _node_attributes(dom, "task") == [], "nodes drawn outside their phase's box"
    assert _node_attributes(dom, "parameters") == [], "parameters drawn in the first view"
    names = re.findall(r'data-node-type="data" data-node-fullname="([^"]+)"', dom)
    assert names, "no dataset drawn between the phases"
    assert [name for name in names if "." in name] == []
    assert set(names) == _between_phases(), "a dataset inside a phase is drawn outside its box"
    drawn = len(boxes) + len(names)
    assert drawn <= MAX_FIRST_VIEW, f"the first view draws {drawn} elements: {boxes + names}"
    assert "showFeatureHints" in SETTINGS  # the feature tour does not cover the graph
    keep_screenshot(png)
