"""Checkpoints know their code: a changed model never resumes or reuses an old run."""

from __future__ import annotations

import copy
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from clue_pipeline.pipelines.finetune import nodes as finetune
from clue_pipeline.tasks import fingerprint as fp
from tests.pipelines.test_finetune_nodes import params, tables  # noqa: F401  (fixtures)


def test_code_version_follows_the_sources(tmp_path: Path):
    root = tmp_path / "pkg"
    shutil.copytree(fp.PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = fp.code_version(root)
    fp._hash_sources.cache_clear()
    assert fp.code_version(root) == before  # hashed afresh, the same sources give the same value
    encoders = root / "models" / "encoders.py"
    source = encoders.read_text()
    assert "x = x + attended" in source
    encoders.write_text(source.replace("x = x + attended", "x = attended + x"))
    fp._hash_sources.cache_clear()
    after_model_edit = fp.code_version(root)
    assert after_model_edit != before
    # Files outside the training code (e.g. figures) do not retrain anything.
    (root / "figures.py").write_text("# changed\n")
    fp._hash_sources.cache_clear()
    assert fp.code_version(root) == after_model_edit


def test_knobs_that_change_nothing_computed_are_left_out_at_any_depth():
    import yaml

    from clue_pipeline.config.pretraining import parse_pretrain
    from tests.conftest import REPO_ROOT

    base = yaml.safe_load((REPO_ROOT / "conf/base/parameters_pretrain.yml").read_text())
    quiet = copy.deepcopy(base["pretrain"])
    quiet["train"].update(progress=False, resume=False, checkpoint_every_steps=7)
    settings = parse_pretrain(base["pretrain"])
    assert fp.fingerprint(parse_pretrain(quiet)) == fp.fingerprint(settings)  # nested in train
    longer = copy.deepcopy(base["pretrain"])
    longer["train"]["epochs"] += 1
    assert fp.fingerprint(parse_pretrain(longer)) != fp.fingerprint(settings)
    assert fp.fingerprint([{"progress": 1, "a": 2}]) == fp.fingerprint([{"a": 2}])


def test_a_changed_model_trains_afresh_instead_of_reloading(
    params,  # noqa: F811
    tables,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    item_index, _, _, _, split = tables
    settings = copy.deepcopy(params["finetune"])
    settings["train"].update({"checkpoint_dir": str(tmp_path / "ckpt"), "resume": True})
    spec = settings["methods"]["clue_zero"]

    def run() -> tuple[list[Path], list[dict]]:
        _, history = finetune.finetune_next_item(
            split, item_index, params["encoder"], settings, spec
        )
        return sorted((tmp_path / "ckpt" / "next_item" / "clue_zero").iterdir()), history

    first_dirs, first = run()
    again_dirs, again = run()  # same code and settings: the finished run is reused
    assert again_dirs == first_dirs and again == first

    # The model's code changes (a copy of the package with an edited encoder stands in for
    # the installed one): the job's fingerprint changes, and it trains in a new folder.
    copy_root = tmp_path / "pkg"
    shutil.copytree(fp.PACKAGE_ROOT, copy_root, ignore=shutil.ignore_patterns("__pycache__"))
    encoders = copy_root / "models" / "encoders.py"
    encoders.write_text(encoders.read_text() + "\n# a changed model\n")
    monkeypatch.setattr(fp, "PACKAGE_ROOT", copy_root)
    changed_dirs, changed = run()
    assert len(changed_dirs) == 2 and set(first_dirs) < set(changed_dirs)
    new_dir = (set(changed_dirs) - set(first_dirs)).pop()
    assert (new_dir / "last.pt").exists()
    assert len(changed) == len(first) and np.isfinite(changed[0]["loss"])
    assert changed[0]["wall_s"] != first[0]["wall_s"]  # timed anew: it really trained


def test_more_epochs_continue_the_shorter_run_as_if_it_had_been_asked_for_from_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    import torch

    from clue_pipeline.pipelines.pretrain.nodes import pretrain_clue
    from tests.pipelines.test_pretrain_health import ENCODER, VIEWS, _corpus, _params

    corpus, item_index = _corpus(users=64)

    def pretrain(base: Path, epochs: int, **train):
        settings = _params()
        settings["train"] |= {"epochs": epochs, "checkpoint_dir": str(base), **train}
        encoder, history = pretrain_clue(corpus, item_index, VIEWS, ENCODER, settings)
        return encoder, [entry["loss"] for entry in history]

    _, short = pretrain(tmp_path / "a", 2)
    with caplog.at_level(logging.INFO, logger="clue_pipeline.tasks.fingerprint"):
        continued, longer = pretrain(tmp_path / "a", 4)
    assert "(epoch 2 of its 2) to 4 epochs" in caplog.text
    scratch, fresh = pretrain(tmp_path / "b", 4)
    assert longer[:2] == short and longer == fresh  # the first two epochs were not run again
    weights = continued["state_dict"]
    assert all(torch.equal(weights[k], scratch["state_dict"][k]) for k in weights)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clue_pipeline.tasks.fingerprint"):
        pretrain(tmp_path / "a", 3)  # the 4-epoch run is past epoch 3, the 2-epoch one is not
        assert "(epoch 2 of its 2) to 3 epochs" in caplog.text
        caplog.clear()
        pretrain(tmp_path / "a", 1)  # every run there is past it: trained afresh
        pretrain(tmp_path / "c", 2, lr_schedule="cosine")
        pretrain(tmp_path / "c", 4, lr_schedule="cosine")  # its curve depends on the length
    assert "continuing" not in caplog.text
    assert len(list((tmp_path / "a" / "clue").glob(f"*/{fp.JOB_RECORD}"))) == 4
