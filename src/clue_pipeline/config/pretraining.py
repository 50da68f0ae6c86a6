"""``pretrain``: the objective, its heads, the masked-item and S3-Rec settings, the health
measures, the training budget; parsed once by :func:`parse_pretrain`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from clue_pipeline.config.parse import to_dataclass, train_config
from clue_pipeline.config.training import TrainConfig

# The keys of ``models.objectives.OBJECTIVES`` (kept equal there, by a test)
OBJECTIVE_NAMES = ("infonce", "simsiam", "vicreg")
BAG_TARGETS = ("uniform", "tfidf")


@dataclass(frozen=True)
class ObjectiveConfig:
    """``pretrain.objective``; ``masked_item_ratio`` is ``pretrain.masked_item.mask_ratio``
    (one ratio for every masked-item term), filled in by :func:`parse_pretrain`."""

    name: str = "simsiam"
    temperature: float = 0.2  # infonce
    invariance_weight: float = 25.0  # vicreg (the VICReg paper's 25 / 25 / 1)
    variance_weight: float = 25.0
    covariance_weight: float = 1.0
    masked_item_weight: float = 0.0  # lambda of the joint mode; 0 = off
    masked_item_ratio: float = 0.2
    next_item_weight: float = 1.0  # lambda of causal next-item cross-entropy; 0 = off
    next_item_share: float = 1.0  # share of each row's (item, successor) pairs per step
    view_weight: float = 1.0  # the view objective's own weight; 0 = item terms alone
    # lambda of the bag term: each view's [UR] vector scores every item (the tied table) and
    # is trained to put the sequence's whole item set first (a softmax over the catalogue,
    # averaged over the set), so the user vector carries what the bag of items carries
    bag_weight: float = 0.0
    # how the bag term weighs a sequence's items: "uniform" (each counts alike) or "tfidf"
    # (each by its inverse document frequency over the pre-training rows, as the floor's
    # TF-IDF bag does), so rare, telling items weigh more than ones every user has
    bag_targets: str = "uniform"

    def __post_init__(self) -> None:
        if self.name not in OBJECTIVE_NAMES:
            raise ValueError(
                f"pretrain.objective.name = {self.name!r}: expected one of {list(OBJECTIVE_NAMES)}"
            )
        if self.temperature <= 0:
            raise ValueError(f"pretrain.objective.temperature = {self.temperature}: expected > 0")
        weights = (self.invariance_weight, self.variance_weight, self.covariance_weight)
        item_weights = (self.masked_item_weight, self.next_item_weight, self.bag_weight)
        if min(*weights, *item_weights, self.view_weight) < 0:
            raise ValueError("pretrain.objective: loss weights must be >= 0")
        if self.view_weight == 0 and max(item_weights) == 0:
            raise ValueError(
                "pretrain.objective.view_weight = 0 with masked_item_weight, next_item_weight "
                "and bag_weight 0 leaves nothing to train: give one of them a weight > 0"
            )
        if self.bag_targets not in BAG_TARGETS:
            raise ValueError(
                f"pretrain.objective.bag_targets = {self.bag_targets!r}: expected one of "
                f"{list(BAG_TARGETS)}"
            )
        if not 0.0 < self.next_item_share <= 1.0:
            raise ValueError(
                f"pretrain.objective.next_item_share = {self.next_item_share}: expected (0, 1]"
            )
        if not 0.0 < self.masked_item_ratio < 1.0:
            raise ValueError(
                f"pretrain.masked_item.mask_ratio = {self.masked_item_ratio}: expected (0, 1)"
            )


@dataclass(frozen=True)
class SimSiamConfig:
    """``pretrain.simsiam``: the heads every objective shares (widths, SimSiam's switches)."""

    proj_dim: int = 256
    pred_dim: int = 64
    stop_gradient: bool = True
    predictor: bool = True
    output_bn_affine: bool = True  # False: the reference builder's last BN (no scale/shift)
    # both views in one encoder pass, in groups of similar length (models/clue.py)
    encode_by_length: bool = True
    # False: no projector; the objective acts on the user vectors themselves, so whatever
    # spread it asks for (InfoNCE's uniformity, VICReg's variance) is the transferred vector's
    projector: bool = True


@dataclass(frozen=True)
class HealthConfig:
    """``pretrain.health``: the per-epoch representation health of pre-training."""

    users: int = 512  # the first users of the corpus, the same sample every epoch
    min_effective_rank: float | None = 10.0  # below: a logged warning (None = never)


@dataclass(frozen=True)
class MaskedItemConfig:
    """``pretrain.masked_item``: the share of items masked, for masked-item pre-training and
    for the masked-item term of CLUE's objective alike."""

    mask_ratio: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(
                f"pretrain.masked_item.mask_ratio = {self.mask_ratio}: expected (0, 1)"
            )


@dataclass(frozen=True)
class S3RecConfig:
    """``pretrain.s3rec``: S3-Rec's pre-training settings (its released defaults)."""

    mask_ratio: float = 0.2  # share of items masked for MIP / MAP
    aap_weight: float = 0.2
    mip_weight: float = 1.0
    map_weight: float = 1.0
    sp_weight: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"pretrain.s3rec.mask_ratio = {self.mask_ratio}: expected (0, 1)")
        for name in ("aap_weight", "mip_weight", "map_weight", "sp_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"pretrain.s3rec.{name} = {getattr(self, name)}: expected >= 0")


ATTRIBUTE_SOURCES = ("genres", "item2attributes", "none")


@dataclass(frozen=True)
class AttributesConfig:
    """``pretrain.s3rec.attributes``: where S3-Rec's item attributes come from."""

    source: str = "genres"
    path: str | None = None

    def __post_init__(self) -> None:
        if self.source not in ATTRIBUTE_SOURCES:
            raise ValueError(
                f"pretrain.s3rec.attributes.source = {self.source!r}: expected one of "
                f"{list(ATTRIBUTE_SOURCES)}"
            )


@dataclass(frozen=True)
class DistributedSettings:
    """``pretrain.distributed``: worker processes on this machine, and the machines of a
    multi-node run (each runs the same ``kedro run`` with its own ``node_rank``)."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_id: str = "clue-pretrain"
    join_timeout_s: int = 600
    max_restarts: int = 0

    def __post_init__(self) -> None:
        for name in ("nproc_per_node", "nnodes", "join_timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} = {value!r}: expected a positive integer")
        if not isinstance(self.node_rank, int) or not 0 <= self.node_rank < self.nnodes:
            raise ValueError(
                f"node_rank = {self.node_rank!r}: expected 0 to nnodes - 1 = {self.nnodes - 1}"
            )
        if self.nnodes > 1 and not (self.rdzv_endpoint and ":" in str(self.rdzv_endpoint)):
            raise ValueError(
                f"nnodes = {self.nnodes} needs rdzv_endpoint = 'host:port' (an address of "
                f"node_rank 0 every machine reaches), got {self.rdzv_endpoint!r}"
            )
        if not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ValueError(f"max_restarts = {self.max_restarts!r}: expected an integer >= 0")


@dataclass(frozen=True)
class PretrainSettings:
    """The whole ``pretrain`` block, typed."""

    train: TrainConfig
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    simsiam: SimSiamConfig = field(default_factory=SimSiamConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    masked_item: MaskedItemConfig = field(default_factory=MaskedItemConfig)
    s3rec: S3RecConfig = field(default_factory=S3RecConfig)
    attributes: AttributesConfig = field(default_factory=AttributesConfig)
    distributed: DistributedSettings = field(default_factory=DistributedSettings)


def parse_pretrain(params: dict[str, Any] | PretrainSettings) -> PretrainSettings:
    """``params:pretrain`` -> :class:`PretrainSettings` (already typed: returned as it is)."""
    if isinstance(params, PretrainSettings):
        return params
    params = dict(params or {})
    masked_item = to_dataclass(MaskedItemConfig, params.get("masked_item"), "pretrain.masked_item")
    s3rec = dict(params.get("s3rec") or {})
    attributes = s3rec.pop("attributes", None) or {"source": "none"}
    return PretrainSettings(
        train=train_config(params.get("train") or {}, "pretrain.train"),
        objective=to_dataclass(
            ObjectiveConfig,
            params.get("objective"),
            "pretrain.objective",
            masked_item_ratio=masked_item.mask_ratio,
        ),
        simsiam=to_dataclass(SimSiamConfig, params.get("simsiam"), "pretrain.simsiam"),
        health=to_dataclass(HealthConfig, params.get("health"), "pretrain.health"),
        masked_item=masked_item,
        s3rec=to_dataclass(S3RecConfig, s3rec, "pretrain.s3rec"),
        attributes=to_dataclass(AttributesConfig, attributes, "pretrain.s3rec.attributes"),
        distributed=to_dataclass(
            DistributedSettings, params.get("distributed"), "pretrain.distributed"
        ),
    )


def with_train(settings: PretrainSettings, **changes: Any) -> PretrainSettings:
    """``settings`` with ``train`` fields replaced (a tuning budget, checkpoints off)."""
    return replace(settings, train=replace(settings.train, **changes))
