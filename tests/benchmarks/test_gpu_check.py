"""The GPU check's CPU dry run, and that its numpy-only data path equals the pipeline's.

The dry runs go through ``bash benchmarks/gpu_check.sh`` as a user types it, in a Python where
Kedro, MLflow, pandas and pyarrow cannot be imported (a GPU machine may lack them).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import gpu_check
from clue_pipeline.data.readers import read_dataset
from clue_pipeline.data.sequences import (
    build_item_index,
    build_sequences,
    filter_interactions,
    order_interactions,
)
from clue_pipeline.data.splits import next_item_split
from clue_pipeline.data.validation import IngestOptions
from clue_pipeline.tasks.batching import model_inputs, prefix_batch
from clue_pipeline.tasks.finetuning import prefix_rows
from clue_pipeline.tasks.task_data import next_item_data
from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.sh"
SAMPLE_USERS = 300
BLOCKED = ("kedro", "mlflow", "pandas", "pyarrow", "optuna", "sklearn", "matplotlib", "yaml")
BLOCKER = f"""
import sys
from importlib.machinery import PathFinder


class _Hiding:
    \"\"\"The path finder, blind to the packages a GPU machine may lack.\"\"\"

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            return None
        return PathFinder.find_spec(name, path, target)

    @classmethod
    def invalidate_caches(cls):
        PathFinder.invalidate_caches()


sys.meta_path[:] = [_Hiding if f is PathFinder else f for f in sys.meta_path]
"""


@pytest.fixture
def sample_file(embedded_data, tmp_path) -> Path:
    """The first users of the embedded data as S3-Rec lines, in shuffled line order, plus a
    user too short for the split (the pipeline drops users with fewer than 5 items)."""
    ratings = pd.read_csv(embedded_data / "ratings.csv")
    ratings = ratings[ratings["userId"] <= SAMPLE_USERS]
    ratings = ratings.sort_values(["userId", "timestamp"], kind="stable")
    lines = ratings.groupby("userId")["movieId"].agg(lambda s: " ".join(map(str, s)))
    rows = [f"{user} {items}" for user, items in lines.items()] + ["100000 1 2 3"]
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    path = tmp_path / "sample.txt"
    path.write_text("\n".join(rows) + "\n")
    return path


def run_script(tmp_path: Path, data: Path, *extra: str) -> tuple[dict, str]:
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
    args = ["--device", "cpu", "--steps", "5", *extra, "--data", str(data), str(out)]
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


def test_dry_run_on_embedded_sample(sample_file, tmp_path):
    # MovieLens rows are long (most fill all 50 positions): a small batch keeps this quick
    record, markdown = run_script(tmp_path, sample_file, "--batch-size", "32")
    check_record(record, steps=5, batch_size=32)
    assert record["data"]["users"] == SAMPLE_USERS  # the 3-item user is dropped
    assert "| finetune |" in markdown and "| 10 |" in markdown


@pytest.mark.shared_data
def test_dry_run_on_beauty(shared_data, tmp_path):
    record, _ = run_script(tmp_path, shared_data / "s3rec")
    check_record(record, steps=5, batch_size=256)
    assert (record["data"]["users"], record["data"]["items"]) == (22363, 12101)


def test_arrays_equal_the_pipelines(sample_file):
    data = gpu_check.prepare(sample_file, max_len=50, min_seq_len=5)
    raw = read_dataset(IngestOptions(format="s3rec", path=sample_file))
    ordered, _ = filter_interactions(order_interactions(raw.interactions), 0, 5)
    item_index = build_item_index(ordered)
    split, _ = next_item_split(build_sequences(ordered, item_index, 50))
    task = next_item_data(split, 50, len(item_index))

    assert (data.num_users, data.num_items) == (len(split), len(item_index))
    assert data.num_interactions == len(ordered)
    np.testing.assert_array_equal(
        data.pretrain_tokens, model_inputs(split["train"], 50, len(item_index) + 2)
    )
    np.testing.assert_array_equal(data.train_tokens, task.train_tokens)
    np.testing.assert_array_equal(data.train_targets, task.train_targets)
    np.testing.assert_array_equal(data.test_tokens, task.test.tokens)
    np.testing.assert_array_equal(data.test_targets, task.test.targets)
    np.testing.assert_array_equal(data.valid_targets, task.valid.targets)
    user = len(item_index) + 2
    ours = prefix_rows(data.items, data.starts, data.ends - 2, 50, user)
    theirs = task.training_rows("prefix")
    ours_batch = prefix_batch(ours.step.flat, *ours.dataset, 50, user)
    for mine, pipeline in zip(
        ours_batch, prefix_batch(theirs.step.flat, *theirs.dataset, 50, user), strict=True
    ):
        torch.testing.assert_close(mine, pipeline)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 5 6\n2 7 x8\n", "line 2, column 5: unexpected character 'x'"),
        ("1 5 6\n\n3 7\n4\n", "line 4: a user without items"),
        ("1 5 6\n2 7 8\n1 9 9\n", "lines 1, 3: user 1 appears more than once"),
    ],
)
def test_reader_names_the_bad_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        gpu_check.read_s3rec(path)


def test_reader_keeps_file_order_and_blank_lines(tmp_path):
    path = tmp_path / "ok.txt"
    path.write_text("7 5 6\r\n\n3  9\t4 4\n")
    users, items, offsets = gpu_check.read_s3rec(path)
    np.testing.assert_array_equal(users, [7, 3])
    np.testing.assert_array_equal(items, [5, 6, 9, 4, 4])
    np.testing.assert_array_equal(offsets, [0, 2, 5])


def test_missing_data_and_missing_gpu_say_what_to_pass(tmp_path):
    with pytest.raises(SystemExit, match="Pass --data PATH"):
        gpu_check.locate_data(tmp_path / "nowhere")
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="pass --device cpu for a dry run"):
            gpu_check.main(["--data", str(tmp_path), str(tmp_path / "out")])
