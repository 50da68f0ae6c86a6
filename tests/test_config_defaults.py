"""Every settings dataclass's defaults equal conf/base: building a config in code (a test, a
benchmark) gives what `kedro run` gives. A failure names the field path."""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from clue_pipeline import config
from clue_pipeline.config import blocks
from clue_pipeline.config.pretraining import (
    AttributesConfig,
    DistributedSettings,
    MaskedItemConfig,
)
from clue_pipeline.config.training import FINETUNE_TRAIN_DIFFERS
from clue_pipeline.settings import CONFIG_LOADER_ARGS

ROOT = Path(__file__).resolve().parents[1]
# None in code (off), a folder of the dataset's in conf: the one value conf alone can give
DATASET_DEPENDENT = ("checkpoint_dir",)


@pytest.fixture(scope="module")
def base() -> dict:
    loader = OmegaConfigLoader(str(ROOT / "conf"), env="base", **CONFIG_LOADER_ARGS)
    return loader["parameters"]


def _block(tree: dict, path: str):
    for part in path.split("."):
        tree = tree[part]
    return tree


def _differences(cls, conf: dict, path: str, skip: tuple[str, ...] = ()) -> list[str]:
    """``path.field: code X, conf Y`` for each field with a default that conf states otherwise
    (recursing into nested settings); a field conf does not show is reported too."""
    found = []
    for f in fields(cls):
        if f.name in skip or f.name in DATASET_DEPENDENT:
            continue
        where = f"{path}.{f.name}"
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            continue  # dataset-dependent (a path, a study name): conf alone says it
        if f.name not in conf:
            found.append(f"{where}: not in conf/base")
        elif is_dataclass(default) and isinstance(conf[f.name], dict):
            found += _differences(type(default), conf[f.name], where)
        elif _normal(default) != _normal(conf[f.name]):
            found.append(f"{where}: code {default!r}, conf/base {conf[f.name]!r}")
    return found


def _normal(value):
    if is_dataclass(value):  # a field left out in conf is its None default
        value = {f.name: getattr(value, f.name) for f in fields(value)}
        return {k: _normal(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple | list):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v is not None}
    return value


def _encoder_config():
    from clue_pipeline.models.encoders import EncoderConfig

    return EncoderConfig


CASES = [
    (config.ObjectiveConfig, "pretrain.objective", ("masked_item_ratio",)),
    (config.SimSiamConfig, "pretrain.simsiam", ()),
    (config.HealthConfig, "pretrain.health", ()),
    (MaskedItemConfig, "pretrain.masked_item", ()),
    (config.S3RecConfig, "pretrain.s3rec", ()),
    (AttributesConfig, "pretrain.s3rec.attributes", ()),
    (DistributedSettings, "pretrain.distributed", ()),
    (config.TrainConfig, "pretrain.train", ("patience", "min_epochs", "monitor")),
    (config.NextItemHead, "finetune.next_item", ()),
    (config.ClassifierHead, "finetune.classifier", ()),
    (config.EvaluateSettings, "evaluate", ()),
    (config.AugmentSettings, "augment", ()),
    (config.EmbedSettings, "embed", ()),
    (config.IngestSettings, "ingest", ()),
    (config.SequencesSettings, "sequences", ()),
    (config.TuneSettings, "tune", ()),
    (config.TrackingSettings, "tracking", ()),
    (config.ReportSettings, "report", ("profiles",)),
]


@pytest.mark.parametrize(("cls", "path", "skip"), CASES, ids=[c[1] for c in CASES])
def test_every_default_equals_conf_base(base, cls, path, skip):
    assert _differences(cls, _block(base, path), path, skip) == []


def test_masked_item_ratio_default_is_the_one_mask_ratio(base):
    ratio = base["pretrain"]["masked_item"]["mask_ratio"]
    assert config.ObjectiveConfig().masked_item_ratio == ratio
    assert config.parse_pretrain(base["pretrain"]).objective.masked_item_ratio == ratio


def test_finetune_train_differs_from_the_code_only_where_declared(base):
    # `monitor` is each task's (finetune.tasks.<task>.monitor)
    train = base["finetune"]["train"]
    differences = _differences(config.TrainConfig, train, "finetune.train", ("monitor",))
    undeclared = [
        d for d in differences if d.split(":")[0].split(".")[-1] not in FINETUNE_TRAIN_DIFFERS
    ]
    assert undeclared == []


def test_encoder_defaults_equal_conf_base(base):
    encoder = _encoder_config()
    assert _differences(encoder, base["encoder"], "encoder", ("num_items",)) == []


def test_conf_base_parses_into_the_typed_settings(base):
    pretrain = config.parse_pretrain(base["pretrain"])
    finetune = config.parse_finetune(base["finetune"])
    assert pretrain.objective == config.ObjectiveConfig()
    assert finetune.next_item == config.NextItemHead()
    assert finetune.train_for("next_item", "clue").monitor == "ndcg@10"
    assert config.parse_evaluate(base["evaluate"]) == config.EvaluateSettings()
    assert isinstance(blocks.SearchSpace(), blocks.SearchSpace)


def test_the_config_package_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, clue_pipeline.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_objective_names_are_the_registry():
    from clue_pipeline.models.objectives import OBJECTIVES

    assert sorted(OBJECTIVES) == sorted(config.OBJECTIVE_NAMES)


@pytest.mark.parametrize("grid", [[0, 1], "x", [], [True], [1, None]])
@pytest.mark.parametrize(
    ("build", "where"),
    [
        (lambda grid: config.ClassifierHead(probe_c_grid=grid), "finetune.classifier.probe_c_grid"),
        (lambda grid: config.LinearFloorConfig(c_grid=grid), "finetune.linear.c_grid"),
    ],
)
def test_a_bad_c_grid_is_named(build, where, grid):
    with pytest.raises(ValueError, match=where):
        build(grid)
