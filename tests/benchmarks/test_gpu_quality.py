"""The GPU quality run: its settings are the Beauty and Sports run-environments', and a CPU dry
run on prepared data works without Kedro and writes a summary that says what was capped."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from kedro.config import OmegaConfigLoader

from benchmarks import gpu_quality, quality
from clue_pipeline.config import encoder_config, parse_finetune
from clue_pipeline.experiments.cells import INIT
from clue_pipeline.experiments.recipes import load_ladder
from tests.benchmarks.test_gpu_check import BLOCKER
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("env", ["beauty", "sports"])
def test_settings_are_the_run_environments(env):
    params = OmegaConfigLoader(
        str(REPO_ROOT / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy={"parameters": "soft"},
    )["parameters"]
    settings = gpu_quality.run_settings(env)
    for method in gpu_quality.METHODS:
        recipe = gpu_quality.method_recipe(settings, method, 30)
        assert recipe["encoder"] == encoder_config(params["encoder"], 30)
        assert recipe["head"] == parse_finetune(params["finetune"]).next_item
        assert recipe["head"].rows == params["finetune"]["next_item"]["rows"]
        train = {**params["finetune"]["train"], **params["finetune"]["tasks"]["next_item"]}
        train.update(params["finetune"]["overrides"].get(method, {}))
        wanted = {k: v for k, v in train.items() if k not in ("checkpoint_dir", "resume")}
        assert {k: getattr(recipe["train"], k) for k in wanted} == wanted
        spec = params["finetune"]["methods"][method]
        assert recipe["spec"].backbone == spec["backbone"]
        assert recipe["spec"].freeze_encoder == spec.get("freeze_encoder", False)
    assert (
        settings.clue().objective.next_item_weight
        == (params["pretrain"]["objective"]["next_item_weight"])
    )
    # pop is counted, not trained: nothing of it to run on a GPU; S3-Rec needs the attributes
    # the Kedro pipeline reads, so it runs through Kedro only
    assert set(gpu_quality.METHODS) == set(quality.NEXT_ITEM) - {"pop", "s3rec"}
    assert {m: i for m, i in INIT.items() if m != "s3rec"} == gpu_quality.INIT


def test_cpu_dry_run_without_kedro(prepared_project, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "out"
    command = [
        sys.executable,
        *("-m", "benchmarks.gpu_quality", "--device", "cpu", "--seeds", "0"),
        *("--datasets", "beauty", "--parallel", "3", "--budget-s", "240"),
        *("--methods", "clue", "clue_zero", "mip_probe"),
        *("--pretrain-epochs", "1", "--finetune-epochs", "2"),
        *("--data", str(prepared_project), "--out", str(out)),
    ]
    env = {**os.environ, "PYTHONPATH": f"{blocker}:{REPO_ROOT / 'src'}:{REPO_ROOT}"}
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "gpu_quality.json").read_text())
    assert [(r["method"], r["seed"], r.get("status")) for r in summary["runs"]] == [
        ("clue", 0, "done"),
        ("clue_zero", 0, "done"),
        ("mip_probe", 0, "done"),
    ]
    for run in summary["runs"]:
        assert len(run["curve"]) == 2 and run["best"]["epoch"] in (0, 1)
        assert 0.0 <= run["best"]["test"]["ndcg@10"] <= run["best"]["test"]["recall@10"] <= 1.0
    pretrained = {run["method"] for run in summary["runs"] if "pretrain_s" in run}
    assert pretrained == {"clue", "mip_probe"}
    table = (out / "gpu_quality.md").read_text()
    assert "| beauty | clue | 1 (0) |" in table and "| beauty | clue_zero | 1 (0) |" in table


@pytest.mark.parametrize("rung", ["rb_li_user_rows", "filter_backbone"])
def test_ladder_rungs_train_clue_zero_with_their_recipe(rung, prepared_project, tmp_path):
    args = gpu_quality._parse(
        ["--data", str(prepared_project), "--out", str(tmp_path), "--device", "cpu", "--methods"]
        + [f"rung-{rung}", "--finetune-epochs", "1"]
    )
    gpu_quality.run_one("beauty", f"rung-{rung}", 0, args, "cpu")
    record = json.loads((tmp_path / "runs" / f"beauty_rung-{rung}_seed0.json").read_text())
    wanted = gpu_quality.LADDER.recipe(rung)
    assert record["status"] == "done" and len(record["curve"]) == 1
    assert record["recipe"]["rows"] == wanted["rows"]
    assert record["recipe"]["train"]["patience"] == gpu_quality.PATIENCE
    assert "pretrain_s" not in record  # CLUE-Zero: fresh weights
    with pytest.raises(SystemExit):
        gpu_quality._parse(["--data", "d", "--out", "o", "--methods", "rung-no_such_rung"])


def test_every_ladder_rung_builds_its_encoder_and_head():
    from clue_pipeline.config import encoder_config
    from clue_pipeline.models.encoders import build_encoder
    from clue_pipeline.tasks.finetuning import NextItemHead

    ladder = load_ladder()
    for name in ladder.rungs:
        wanted = ladder.recipe(name)
        encoder = build_encoder(encoder_config(wanted["encoder"], 30, where=f"rung {name}"))
        assert encoder.config.kind == wanted["encoder"]["kind"], name
        NextItemHead(**wanted["head"])
    assert ladder.recipe("caser_L10")["encoder"]["window"] == 10
