"""Typed settings: each block of ``conf/`` parsed once, in one place, into frozen dataclasses.

Torch-free. ``parse_pretrain``, ``parse_finetune``, ``parse_evaluate``, ``parse_tune`` turn a
block (the dict a Kedro node receives) into its settings; ``encoder_config`` adds the item
count to the encoder block; ``check_parameters`` refuses keys no setting reads. Defaults equal
``conf/base`` (``tests/test_config_defaults.py``).
"""

from clue_pipeline.config.blocks import (
    AugmentSettings,
    EmbedSettings,
    IngestSettings,
    ReportSettings,
    SamplesConfig,
    SearchSpace,
    SequencesSettings,
    TrackingSettings,
    TuneSettings,
    ViewsConfig,
)
from clue_pipeline.config.finetuning import (
    CLASSIFIER_READOUTS,
    DEFAULT_READOUT,
    NEXT_ITEM_ROWS,
    READOUTS,
    ClassifierHead,
    EvaluateSettings,
    FinetuneSettings,
    LinearFloorConfig,
    NextItemHead,
    parse_evaluate,
    parse_finetune,
)
from clue_pipeline.config.parse import encoder_config, to_dataclass, train_config
from clue_pipeline.config.pretraining import (
    OBJECTIVE_NAMES,
    HealthConfig,
    MaskedItemConfig,
    ObjectiveConfig,
    PretrainSettings,
    S3RecConfig,
    SimSiamConfig,
    parse_pretrain,
)
from clue_pipeline.config.renames import RENAMED_KEYS, renamed
from clue_pipeline.config.strict import check_parameters, unknown_keys
from clue_pipeline.config.training import TrainConfig
from clue_pipeline.config.tuning import parse_tune

__all__ = [
    "CLASSIFIER_READOUTS",
    "DEFAULT_READOUT",
    "NEXT_ITEM_ROWS",
    "OBJECTIVE_NAMES",
    "READOUTS",
    "RENAMED_KEYS",
    "AugmentSettings",
    "ClassifierHead",
    "EmbedSettings",
    "EvaluateSettings",
    "FinetuneSettings",
    "LinearFloorConfig",
    "HealthConfig",
    "IngestSettings",
    "MaskedItemConfig",
    "NextItemHead",
    "ObjectiveConfig",
    "PretrainSettings",
    "ReportSettings",
    "S3RecConfig",
    "SamplesConfig",
    "SearchSpace",
    "SequencesSettings",
    "SimSiamConfig",
    "TrackingSettings",
    "TrainConfig",
    "TuneSettings",
    "ViewsConfig",
    "check_parameters",
    "encoder_config",
    "parse_evaluate",
    "parse_finetune",
    "parse_pretrain",
    "parse_tune",
    "renamed",
    "to_dataclass",
    "train_config",
    "unknown_keys",
]
