"""The data, embedding, tuning, tracking and report blocks, typed.

These name every key a user may set in ``conf/`` (the strict check knows no other) and hold
their defaults, equal to ``conf/base`` (``tests/test_config_defaults.py``). Fields without a
default take a value that depends on the dataset (paths, study names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clue_pipeline.neighbours import IndexConfig


@dataclass(frozen=True)
class SamplesConfig:
    """``augment.samples``: a few users' views for inspection (at ``encoder.max_len``)."""

    users: int = 20
    seed: int = 7


@dataclass(frozen=True)
class ViewsConfig:
    """``augment.views``: the keys of ``augment.ViewPolicy``, which checks their values."""

    strategies: list[str] = field(default_factory=lambda: ["dropout"])
    compose: str = "sequential"
    mask_ratio: float = 0.3
    crop_ratio: float = 0.3
    permute_ratio: float = 0.3


@dataclass(frozen=True)
class AugmentSettings:
    views: ViewsConfig = field(default_factory=ViewsConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)


@dataclass(frozen=True)
class SimilarUsersConfig:
    user_ids: list[Any] = field(default_factory=list)
    first_users: int = 5
    k: int = 10


@dataclass(frozen=True)
class EmbedSettings:
    """``embed``: which encoder writes every user's vector, and a few users' neighbours."""

    encoder: str = "next_item__clue_encoder"
    batch_size: int = 1024
    device: str = "auto"
    similar_users: SimilarUsersConfig = field(default_factory=SimilarUsersConfig)
    index: IndexConfig = field(default_factory=IndexConfig)


@dataclass(frozen=True)
class Ml1mPartialConfig:
    scope: str = "timed"


@dataclass(frozen=True)
class PeterRecConfig:
    targets: str = "items"
    pad_token: str = "0"


@dataclass(frozen=True)
class GenericConfig:
    """``ingest.generic``: ``columns`` is an open map (contract name -> file column)."""

    columns: dict[str, str] = field(
        default_factory=lambda: {
            "user_id": "user_id",
            "item_id": "item_id",
            "timestamp": "timestamp",
        }
    )
    sep: str = ","
    encoding: str = "utf-8"
    string_ids: bool = False  # ids read as text, each its own id (data/generic.py)
    users: dict[str, Any] | None = None  # {path, columns, sep}
    items: dict[str, Any] | None = None  # {path, columns, sep}


@dataclass(frozen=True)
class SideTableConfig:
    """``ingest.generic.users`` / ``items`` when given."""

    path: str
    columns: dict[str, str] = field(default_factory=dict)
    sep: str = ","


@dataclass(frozen=True)
class DownloadConfig:
    """``ingest.download`` when given: the archive that fills ``ingest.path``."""

    url: str
    sha256: str
    archive_member_dir: str | None = None
    timeout_s: float = 60


@dataclass(frozen=True)
class IngestSettings:
    path: str  # data/01_raw/<dataset>
    format: str = "ml-latest-small"
    duplicates: str = "keep_last"
    duplicate_key: list[str] = field(default_factory=lambda: ["user_id", "item_id", "timestamp"])
    ml1m_partial: Ml1mPartialConfig = field(default_factory=Ml1mPartialConfig)
    peterrec: PeterRecConfig = field(default_factory=PeterRecConfig)
    generic: GenericConfig = field(default_factory=GenericConfig)
    download: DownloadConfig | None = None


@dataclass(frozen=True)
class ProfilingTaskConfig:
    """``sequences.profiling.tasks.<name>``: a users column, and bracket edges for numbers."""

    column: str
    bins: list[float] | None = None


@dataclass(frozen=True)
class RatiosConfig:
    train: float = 0.8
    valid: float = 0.05
    test: float = 0.15


@dataclass(frozen=True)
class ProfilingConfig:
    tasks: dict[str, ProfilingTaskConfig] = field(
        default_factory=lambda: {
            "gender": ProfilingTaskConfig("gender"),
            "age": ProfilingTaskConfig("age", [18, 25, 35, 45, 50, 56]),
            "occupation": ProfilingTaskConfig("occupation"),
        }
    )
    ratios: RatiosConfig = field(default_factory=RatiosConfig)
    stratify_min_users: int = 20
    folds: int = 1  # > 1: k-fold over users, ``fold`` tested (data/splits.py profile_split)
    fold: int = 0


@dataclass(frozen=True)
class TransferConfig:
    """``sequences.transfer``: which users pre-training reads (data/transfer.py)."""

    protocol: str = "transductive"
    pretrain_share: float = 0.5


@dataclass(frozen=True)
class ColdstartConfig:
    target_genre: str = "Comedy"
    target_domain: str = "target"
    max_targets: int = 3
    min_source_items: int = 5
    candidates: str = "labels"  # labels | catalogue (data/coldstart.py)
    ratios: RatiosConfig = field(default_factory=RatiosConfig)


@dataclass(frozen=True)
class SequencesSettings:
    """``sequences``; the sequence length is ``encoder.max_len`` (one value for all stages)."""

    dataset: str  # named in log lines and messages
    min_seq_len: int = 5
    k_core: int = 0
    seed: int = 42
    profiling: ProfilingConfig = field(default_factory=ProfilingConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    coldstart: ColdstartConfig = field(default_factory=ColdstartConfig)


@dataclass(frozen=True)
class SearchSpace:
    """``tune.search_space``: what Optuna samples; ``None`` = not searched (the base value kept).

    A float or integer knob is a ``[low, high]`` range, ``heads`` and ``ffn_hidden`` a list of
    choices; each knob sets one parameter (``config.tuning.KNOB_PARAMETERS``). The ranges are
    checked by :func:`clue_pipeline.config.tuning.parse_tune`.
    """

    dropout: tuple[float, float] | None = (0.1, 0.9)
    pretrain_lr: tuple[float, float] | None = None
    finetune_lr: tuple[float, float] | None = None
    weight_decay: tuple[float, float] | None = None
    blocks: tuple[int, int] | None = None
    heads: list[int] | None = None
    ffn_hidden: list[int] | None = None
    frequency_mix: tuple[float, float] | None = None
    frequency_cutoff: tuple[int, int] | None = None
    max_len: tuple[int, int] | None = None
    strategies: list[list[str]] | None = None
    ratio: tuple[float, float] | None = None


@dataclass(frozen=True)
class PrunerConfig:
    """``tune.pruner``: stops a trial whose validation metric lags at a fine-tuning epoch."""

    kind: str = "median"  # median | halving (successive halving)
    n_startup_trials: int = 2  # median: trials run to the end before any is pruned
    n_warmup_steps: int = 1  # median: epochs of a trial before it may be pruned
    min_resource: int = 1  # halving: epochs of every trial before the first rung
    reduction_factor: int = 3  # halving: 1 in reduction_factor trials goes on at each rung


@dataclass(frozen=True)
class TuneBudget:
    pretrain_epochs: int = 3
    finetune_epochs: int = 4


@dataclass(frozen=True)
class TuneSettings:
    study_name: str  # clue-recipe-<dataset>
    storage: str = "sqlite:///data/07_model_output/optuna.db"
    n_trials: int = 4
    timeout_s: float | None = None
    seed: int = 42
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    budget: TuneBudget = field(default_factory=TuneBudget)
    search_space: SearchSpace = field(default_factory=SearchSpace)


@dataclass(frozen=True)
class TrackingSettings:
    registered_model_name: str = "clue-user-vectors"
    input_example_users: int = 3


@dataclass(frozen=True)
class CollapseConfig:
    loss_below: float = -0.95
    std_ratio: float = 0.25


@dataclass(frozen=True)
class ReportRepresentation:
    """``report.representation``: the keys of ``experiments.RepresentationConfig``."""

    sample_users: int = 1000
    quality_users: int = 512
    seed: int = 7
    colour_by: list[str] = field(default_factory=lambda: ["gender", "age", "occupation"])
    views: dict[str, Any] | None = None


@dataclass(frozen=True)
class ReportPaths:
    metrics: str = "data/08_reporting/{dataset}/metrics/{task}/{method}.json"
    encoder: str = "data/06_models/{dataset}/pretrained/{corpus}/{method}_encoder.pt"
    pretrain_history: str = "data/07_model_output/{dataset}/pretrain/{corpus}/{method}_history.json"
    next_item_split: str = "data/05_model_input/{dataset}/next_item_split.parquet"
    filtered_interactions: str = "data/03_primary/{dataset}/filtered_interactions.parquet"
    users: str = "data/02_intermediate/{dataset}/users.parquet"


@dataclass(frozen=True)
class ReportSettings:
    """``report``; ``profiles`` is an open map of experiment plans (``experiments.plan``)."""

    profile: str = "quick"
    max_new_cells: int | None = None
    run_only: list[str] | None = None
    threads: int = 1
    cell_timeout_s: float | None = None
    noise_k: float = 2.0
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    representation: ReportRepresentation = field(default_factory=ReportRepresentation)
    paths: ReportPaths = field(default_factory=ReportPaths)
    profiles: dict[str, Any] = field(default_factory=dict)
