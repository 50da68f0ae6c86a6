"""``finetune`` and ``evaluate``: training per task and method, the next-item head and rows,
the ranking protocol; parsed once by :func:`parse_finetune` and :func:`parse_evaluate`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from clue_pipeline.config.parse import to_dataclass, train_config
from clue_pipeline.config.training import TrainConfig

# The state that scores the next item; ``ur`` is the default everywhere (models, checkpoints
# written before the readout was recorded).
READOUTS = ("ur", "last_item")
DEFAULT_READOUT = "ur"
NEXT_ITEM_ROWS = ("user", "prefix")
# The user vector that profiling and cold-start classify (models/heads.py ClassifierModel).
CLASSIFIER_READOUTS = ("ur", "mean_items", "ur_and_mean_items")
PROBE_FITS = ("gradient", "logistic_regression")
HEAD_INITS = ("random", "logistic_probe")
CLASS_WEIGHTINGS = ("none", "balanced")
SOFTMAX_MATMUL = ("float32", "bfloat16")


@dataclass(frozen=True)
class NextItemHead:
    """``finetune.next_item``: the training rows, which state scores the next item, the loss.

    ``rows: user`` = one row per user, every position supervised; ``prefix`` = one per
    (prefix, next item), supervised at ``[UR]``. ``readout: ur`` scores from the ``[UR]`` user
    vector (CLUE's design); ``last_item`` from the most recent item's state, as SASRec does.
    ``[UR]`` stays the transferred user vector.
    """

    rows: str = "user"
    readout: str = DEFAULT_READOUT
    label_smoothing: float = 0.0
    # lambda x InfoNCE between two dropout passes of each row's query vector (DuoRec-style,
    # in-batch negatives); 0 = off. Costs one more encoder pass per step.
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 1.0
    # float32 | bfloat16: the dtype of the item softmax's three products (models/heads.py);
    # bf16 is several times faster on CPUs with bf16 units, its quality is measured per recipe
    softmax_matmul: str = "float32"
    # share of each row's supervised positions a training step scores, drawn per step (at
    # least one); < 1 makes large catalogues affordable (the full softmax at every position
    # is most of a step)
    position_share: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.position_share <= 1.0:
            raise ValueError(
                f"finetune.next_item.position_share = {self.position_share!r}: expected (0, 1]"
            )
        for name, allowed in (
            ("rows", NEXT_ITEM_ROWS),
            ("readout", READOUTS),
            ("softmax_matmul", SOFTMAX_MATMUL),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"finetune.next_item.{name} = {getattr(self, name)!r}: expected one of "
                    f"{list(allowed)}"
                )
        if self.contrastive_weight < 0 or self.contrastive_temperature <= 0:
            raise ValueError(
                "finetune.next_item: contrastive_weight must be >= 0 and contrastive_temperature"
                f" > 0, got {self.contrastive_weight!r} and {self.contrastive_temperature!r}"
            )


@dataclass(frozen=True)
class ClassifierHead:
    """``finetune.classifier``: which user vector profiling and cold-start classify.

    ``readout: ur`` is the ``[UR]`` output (the paper's user vector); ``mean_items`` the mean
    of the item states, where every item of the history speaks as in a bag of items;
    ``ur_and_mean_items`` both side by side (2d wide), so a probe reads twice the width of
    one encoder without pre-training a wider one.
    """

    readout: str = "ur"
    # how a frozen encoder's probe is fitted: `gradient` (the loop, as fine-tuning) or
    # `logistic_regression` (scikit-learn on the standardised vectors, C from `probe_c_grid`
    # chosen on validation, as the linear floor is fitted)
    probe: str = "gradient"
    probe_c_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    # how a fine-tuned encoder's classifier starts: `random`, or `logistic_probe` (the probe
    # above fitted on the pre-trained vectors first, then everything trained: LP-FT, so the
    # first steps do not push a random head's gradients into the pre-trained encoder)
    head_init: str = "random"
    # the training loss's class weights: `none`, or `balanced` (each class weighs
    # users / (classes x its users), so rare ages and occupations count as much as common ones)
    class_weights: str = "none"

    def __post_init__(self) -> None:
        grid = _c_grid(self.probe_c_grid, "finetune.classifier.probe_c_grid")
        object.__setattr__(self, "probe_c_grid", grid)
        for name, allowed in (
            ("readout", CLASSIFIER_READOUTS),
            ("probe", PROBE_FITS),
            ("head_init", HEAD_INITS),
            ("class_weights", CLASS_WEIGHTINGS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"finetune.classifier.{name} = {getattr(self, name)!r}: expected one of "
                    f"{list(allowed)}"
                )


LINEAR_WEIGHTINGS = ("tfidf", "binary")


@dataclass(frozen=True)
class LinearFloorConfig:
    """``finetune.linear``: the bag-of-items floor (method ``linear``, backbone ``bag``).

    Each user is the bag of the items in their whole history (``weighting``: TF-IDF or binary,
    L2-normalised) into scikit-learn's logistic regression; ``C`` is chosen from ``c_grid`` on
    the validation users by the task's monitored metric.
    """

    weighting: str = "tfidf"
    c_grid: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0)
    max_iter: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "c_grid", _c_grid(self.c_grid, "finetune.linear.c_grid"))
        if self.weighting not in LINEAR_WEIGHTINGS:
            raise ValueError(
                f"finetune.linear.weighting = {self.weighting!r}: expected one of "
                f"{list(LINEAR_WEIGHTINGS)}"
            )
        if (
            isinstance(self.max_iter, bool)
            or not isinstance(self.max_iter, int)
            or self.max_iter < 1
        ):
            raise ValueError(
                f"finetune.linear.max_iter = {self.max_iter!r}: expected an integer >= 1"
            )


def _c_grid(value: Any, where: str) -> tuple[float, ...]:
    """Logistic regression's inverse regularisation strengths: one or a list, all positive."""
    values = value if isinstance(value, list | tuple) else [value]
    try:
        grid = tuple(float(c) for c in values if not isinstance(c, bool))
    except (TypeError, ValueError):
        grid = ()
    if not grid or len(grid) != len(values) or any(not c > 0 for c in grid):
        raise ValueError(f"{where} = {value!r}: expected positive numbers")
    return grid


@dataclass(frozen=True)
class FinetuneSettings:
    """The whole ``finetune`` block, typed. ``train`` holds the shared ``TrainConfig`` keys
    (a task adds its ``monitor``, so they are a whole config only per task: :meth:`train_for`);
    ``tasks`` and ``overrides`` are open maps (task or method name -> ``train`` keys),
    ``methods`` and ``baselines`` likewise (name -> spec)."""

    train: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_item: NextItemHead = field(default_factory=NextItemHead)
    classifier: ClassifierHead = field(default_factory=ClassifierHead)
    train_user_fraction: float = 1.0
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    linear: LinearFloorConfig = field(default_factory=LinearFloorConfig)

    def train_for(self, task: str, method: str) -> TrainConfig:
        """Shared training knobs, then the task's (``tasks.<task>``), then the method's
        (``overrides.<method>``)."""
        changes = {**self.tasks.get(task, {}), **self.overrides.get(method, {})}
        where = f"finetune (task {task}, method {method})"
        return train_config({**self.train, **changes}, where)

    @property
    def seed(self) -> int:
        return int(self.train.get("seed", TrainConfig.__dataclass_fields__["seed"].default))


def parse_finetune(params: dict[str, Any] | FinetuneSettings) -> FinetuneSettings:
    """``params:finetune`` -> :class:`FinetuneSettings` (already typed: returned as it is).

    Every task and method override is checked here against the shared ``train`` block, so a
    typo in one is named before any training starts.
    """
    if isinstance(params, FinetuneSettings):
        return params
    params = dict(params or {})
    train = dict(params.get("train") or {})
    settings = FinetuneSettings(
        train=train,
        tasks={k: dict(v or {}) for k, v in (params.get("tasks") or {}).items()},
        overrides={k: dict(v or {}) for k, v in (params.get("overrides") or {}).items()},
        next_item=to_dataclass(NextItemHead, params.get("next_item"), "finetune.next_item"),
        classifier=to_dataclass(ClassifierHead, params.get("classifier"), "finetune.classifier"),
        train_user_fraction=float(params.get("train_user_fraction", 1.0)),
        methods={k: dict(v or {}) for k, v in (params.get("methods") or {}).items()},
        baselines={k: dict(v or {}) for k, v in (params.get("baselines") or {}).items()},
        linear=to_dataclass(
            LinearFloorConfig, params.get("linear"), "finetune.linear", check_ranges=False
        ),
    )
    if not 0.0 < settings.train_user_fraction <= 1.0:
        raise ValueError(
            f"finetune.train_user_fraction = {settings.train_user_fraction}: expected (0, 1]"
        )
    _check_train(settings)
    return settings


def _check_train(settings: FinetuneSettings) -> None:
    """Every task's and method's training config is built once here: a bad key or value is
    named before any node trains."""
    tasks = settings.tasks or {"": {}}
    for task, changes in tasks.items():
        where = f"finetune.tasks.{task}" if task else "finetune.train"
        train_config({**settings.train, **changes}, where)
        for method, override in settings.overrides.items():
            merged = {**settings.train, **changes, **override}
            train_config(merged, f"finetune.overrides.{method}")


@dataclass(frozen=True)
class FiguresConfig:
    """``evaluate.figures``: the PCA of user vectors."""

    colour_by: list[str] = field(default_factory=lambda: ["gender", "age", "occupation"])
    quality_users: int = 512
    seed: int = 7


@dataclass(frozen=True)
class EvaluateSettings:
    """``evaluate``: ``exclude_history`` is the one ranking protocol, used by fine-tuning's
    model selection and by the test alike; the other protocol is reported too, from the
    epoch selected under it in the same run."""

    exclude_history: bool = False
    figures: FiguresConfig = field(default_factory=FiguresConfig)


def parse_evaluate(params: dict[str, Any] | EvaluateSettings) -> EvaluateSettings:
    """``params:evaluate`` -> :class:`EvaluateSettings`."""
    if isinstance(params, EvaluateSettings):
        return params
    params = dict(params or {})
    figures = to_dataclass(FiguresConfig, params.pop("figures", None), "evaluate.figures")
    return to_dataclass(EvaluateSettings, params, "evaluate", figures=figures)


def with_head(settings: FinetuneSettings, **changes: Any) -> FinetuneSettings:
    """``settings`` with ``next_item`` fields replaced."""
    return replace(settings, next_item=replace(settings.next_item, **changes))
