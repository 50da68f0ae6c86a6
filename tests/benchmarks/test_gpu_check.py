"""The GPU check's CPU dry run on a prepared dataset, and its messages.

The dry runs go through ``bash benchmarks/gpu_check.sh`` as a user types it, in a Python where
MLflow and the other pipeline-only packages cannot be imported (a GPU machine may lack them);
Kedro's config loader, which reads the run-environment's parameters, can.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from tests.benchmarks.conftest import EMBEDDED, SAMPLE_USERS
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.sh"
BLOCKED = ("mlflow", "optuna", "sklearn", "matplotlib", "kedro.framework", "kedro.pipeline")
BLOCKER = f"""
import sys
from importlib.machinery import PathFinder


class _Hiding:
    \"\"\"The path finder, blind to the packages a GPU machine may lack.\"\"\"

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in {BLOCKED!r}):
            return None
        return PathFinder.find_spec(name, path, target)

    @classmethod
    def invalidate_caches(cls):
        PathFinder.invalidate_caches()


sys.meta_path[:] = [_Hiding if f is PathFinder else f for f in sys.meta_path]
"""


def run_script(tmp_path: Path, project: Path, *extra: str) -> tuple[dict, str]:
    blocker = tmp_path / "blocker"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PYTHONPATH": str(blocker),
        "CLUE_NUM_THREADS": "1",
    }
    args = ["--device", "cpu", "--steps", "5", *extra, "--data", str(project), str(out)]
    result = subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def check_record(record: dict, steps: int, batch_size: int) -> None:
    assert record["steps"] == steps
    assert record["batch_size"] == batch_size
    assert record["device"]["type"] == "cpu" and record["device"]["torch"] == torch.__version__
    assert record["precision"] == "fp32"  # bf16 autocast is for CUDA only
    assert record["peak_gpu_memory_mib"] == "n/a"
    for name in ("pretrain", "finetune"):
        phase = record["phases"][name]
        assert phase["steps"] == steps
        assert phase["sequences_per_s"] > 0 and phase["wall_s"] > 0
        assert math.isfinite(phase["first_loss"]) and math.isfinite(phase["last_loss"])
        assert phase["peak_gpu_memory_mib"] == "n/a"
    assert record["phases"]["evaluate"]["users"] == record["data"]["users"]
    for key in ("recall@10", "ndcg@10", "mrr@10"):
        assert 0.0 <= record["metrics"][key] <= 1.0
    assert record["metrics"]["n_users"] == record["data"]["users"]
    assert record["metrics"]["history_excluded"] is False
    assert record["command"].startswith("bash benchmarks/gpu_check.sh --device cpu")


def test_dry_run_on_the_prepared_embedded_data(prepared_project, tmp_path):
    # MovieLens rows are long (most fill all 50 positions): a small batch keeps this quick
    record, markdown = run_script(
        tmp_path, prepared_project, "--dataset", EMBEDDED, "--batch-size", "32"
    )
    check_record(record, steps=5, batch_size=32)
    assert record["data"]["users"] == SAMPLE_USERS
    assert "| finetune |" in markdown and "| 10 |" in markdown


def test_an_unprepared_dataset_says_how_to_prepare_it(tmp_path):
    with pytest.raises(SystemExit, match="kedro run --env beauty --pipelines ingest,sequences"):
        gpu_check.prepare(tmp_path, "beauty", 50)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="pass --device cpu for a dry run"):
            gpu_check.main(["--data", str(tmp_path), str(tmp_path / "out")])
