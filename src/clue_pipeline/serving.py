"""The encoder served as an MLflow pyfunc model: raw behaviour sequences in, user vectors out.

The model lets anyone holding an MLflow model URI turn raw behaviour sequences (original
item ids, as in the source data) into CLUE user vectors without knowing the token map, the
padding rule or the ``[UR]`` convention of ``docs/architecture.md``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo

from clue_pipeline.data.tokens import special_tokens
from clue_pipeline.embedding import encode_tokens, reject_rows_without_known_items

logger = logging.getLogger(__name__)

ITEMS_COLUMN = "items"
ENCODER_ARTIFACT = "encoder"
ITEM_INDEX_ARTIFACT = "item_index"
DEFAULT_ENCODER_LOADER = "clue_pipeline.models.encoders:encoder_from_checkpoint"
DEFAULT_MODEL_NAME = "user_vector_model"


@dataclass(frozen=True)
class UserVectorConfig:
    """How the served model runs the encoder.

    ``device`` None picks CUDA where available, so one logged model serves on either.
    ``batch_size`` bounds memory when a caller sends many users at once.
    """

    device: str | None = None
    batch_size: int = 1024
    encoder_loader: str = DEFAULT_ENCODER_LOADER


class UserVectorModel(mlflow.pyfunc.PythonModel):
    """Maps sequences of original item ids to user vectors (columns ``u0..u{d-1}``).

    Input: a DataFrame with a column ``items`` holding, per user, a list of original item
    ids in time order. A row with no known id (empty, or unknown ids only) is refused with an
    error naming it (HTTP 400 when served). Other ids absent from the item index are skipped
    (their count per row is in ``result.attrs["unknown_items"]`` and logged), the most recent
    ``max_len`` known items are kept, left-padded with 0, and ``[UR]`` is appended, exactly
    as in training.
    """

    def __init__(self, config: UserVectorConfig | None = None) -> None:
        self.config = config or UserVectorConfig()
        self._encoder: torch.nn.Module | None = None
        self._lookup: pd.Index | None = None
        self._tokens: np.ndarray | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.setup(
            Path(context.artifacts[ENCODER_ARTIFACT]),
            Path(context.artifacts[ITEM_INDEX_ARTIFACT]),
        )

    def setup(self, encoder_path: Path, item_index_path: Path) -> None:
        """Loads the artifacts; split from ``load_context`` so logging can call it too."""
        device = torch.device(self.config.device or _default_device())
        checkpoint = torch.load(encoder_path, map_location=device, weights_only=True)
        encoder = _resolve(self.config.encoder_loader)(checkpoint).to(device)
        self._encoder = encoder.eval()
        item_index = _read_item_index(item_index_path)
        self._lookup = pd.Index(item_index["item_id"].to_numpy(np.int64))
        self._tokens = item_index["token"].to_numpy(np.int64)

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        if self._encoder is None:
            raise RuntimeError("UserVectorModel.predict: call setup() or load the model first")
        if ITEMS_COLUMN not in model_input.columns:
            raise ValueError(
                f"UserVectorModel input: column {ITEMS_COLUMN!r} is missing (got "
                f"{list(model_input.columns)}); expected one list of original item ids per row"
            )
        encoder_config = self._encoder.config
        tokens, unknown = sequences_to_batch(
            model_input[ITEMS_COLUMN],
            self._lookup,
            self._tokens,
            max_len=encoder_config.max_len,
            ur_token=ur_token(encoder_config.num_items),
        )
        reject_rows_without_known_items(model_input[ITEMS_COLUMN], tokens, unknown, self._lookup)
        if unknown.sum():
            logger.warning(
                "UserVectorModel: skipped %d item ids absent from the item index (%d of %d rows)",
                int(unknown.sum()),
                int((unknown > 0).sum()),
                len(unknown),
            )
        vectors = self._encode(tokens)
        result = pd.DataFrame(
            vectors,
            index=model_input.index,
            columns=[f"u{i}" for i in range(vectors.shape[1])],
        )
        result.attrs["unknown_items"] = unknown.tolist()
        return result

    def _encode(self, tokens: np.ndarray) -> np.ndarray:
        # The embed pipeline's function, so a served vector equals the one in `user_vectors`.
        return encode_tokens(self._encoder, tokens, self.config.batch_size)


def log_user_vector_model(
    encoder_checkpoint: Mapping[str, Any] | Path | str,
    item_index: pd.DataFrame,
    registered_model_name: str | None,
    input_example: pd.DataFrame,
    config: UserVectorConfig | None = None,
    name: str = DEFAULT_MODEL_NAME,
) -> ModelInfo:
    """Logs (and registers, if a name is given) the encoder as a pyfunc model.

    ``encoder_checkpoint`` is ``encoder_to_checkpoint(encoder)`` or a file ``torch.save``
    wrote from it. Logs into the active run (kedro-mlflow's, inside a node), else into a new
    run. The signature is inferred from a real prediction on ``input_example``, so it
    states the true vector width.
    """
    config = config or UserVectorConfig()
    with tempfile.TemporaryDirectory(prefix="clue-user-vector-") as tmp:
        encoder_path = _checkpoint_file(encoder_checkpoint, Path(tmp))
        item_index_path = Path(tmp) / "item_index.parquet"
        _validate_item_index(item_index, "item_index argument")
        item_index.to_parquet(item_index_path, index=False)

        probe = UserVectorModel(
            UserVectorConfig(device="cpu", encoder_loader=config.encoder_loader)
        )
        probe.setup(encoder_path, item_index_path)
        signature = infer_signature(input_example, probe.predict(None, input_example))

        owns_run = mlflow.active_run() is None
        if owns_run:
            mlflow.start_run(run_name=name)
        try:
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=UserVectorModel(config),
                artifacts={
                    ENCODER_ARTIFACT: str(encoder_path),
                    ITEM_INDEX_ARTIFACT: str(item_index_path),
                },
                signature=signature,
                input_example=input_example,
                registered_model_name=registered_model_name,
                pip_requirements=_pip_requirements(),
            )
        finally:
            if owns_run:
                mlflow.end_run()


def sequences_to_batch(
    items: pd.Series,
    lookup: pd.Index,
    tokens: np.ndarray,
    max_len: int,
    ur_token: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Original-id sequences to the model's ``(B, max_len + 1)`` int64 batch, vectorised.

    Returns the batch and the number of unknown ids per row. Rows that are null count as
    empty sequences (the user vector is then that of ``[UR]`` alone).
    """
    try:
        lists = pa.array(list(items), type=pa.list_(pa.int64()), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(
            f"UserVectorModel input column {ITEMS_COLUMN!r}: expected lists of integer item "
            f"ids, got {error}"
        ) from error
    lengths = lists.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    flat_ids = lists.flatten().to_numpy(zero_copy_only=False)
    rows = np.repeat(np.arange(len(lengths)), lengths)

    position = lookup.get_indexer(flat_ids)
    known = position >= 0
    unknown = np.bincount(rows[~known], minlength=len(lengths))
    rows, flat_tokens = rows[known], tokens[position[known]]

    # Rank from the end of each row's known items: 0 = most recent.
    known_counts = np.bincount(rows, minlength=len(lengths))
    row_ends = np.cumsum(known_counts)
    from_end = row_ends[rows] - np.arange(len(rows)) - 1
    keep = from_end < max_len

    batch = np.zeros((len(lengths), max_len + 1), dtype=np.int64)
    batch[rows[keep], max_len - 1 - from_end[keep]] = flat_tokens[keep]
    batch[:, max_len] = ur_token
    return batch, unknown


def ur_token(num_items: int) -> int:
    """The ``[UR]`` token of a vocabulary of ``num_items`` items (docs/architecture.md)."""
    return special_tokens(num_items).user


def _read_item_index(path: Path) -> pd.DataFrame:
    table = pd.read_parquet(path)
    _validate_item_index(table, str(path))
    return table


def _validate_item_index(table: pd.DataFrame, where: str) -> None:
    missing = {"item_id", "token"} - set(table.columns)
    if missing:
        raise ValueError(
            f"{where}: item index lacks column(s) {sorted(missing)}; expected columns "
            "item_id (int64, original id) and token (int32, 1..N)"
        )
    if table["item_id"].duplicated().any():
        first = table.loc[table["item_id"].duplicated(), "item_id"].iloc[0]
        raise ValueError(f"{where}: item_id {first} appears more than once in the item index")


def _checkpoint_file(checkpoint: Mapping[str, Any] | Path | str, folder: Path) -> Path:
    if isinstance(checkpoint, str | Path):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"encoder checkpoint {path} does not exist")
        return path
    path = folder / "encoder.pt"
    torch.save(dict(checkpoint), path)
    return path


def _resolve(dotted: str) -> Callable[[dict[str, Any]], torch.nn.Module]:
    module_name, _, attribute = dotted.partition(":")
    if not attribute:
        raise ValueError(f"encoder_loader {dotted!r}: expected 'package.module:function'")
    return getattr(import_module(module_name), attribute)


def _pip_requirements() -> list[str]:
    """Pinned to the running versions; skips MLflow's slow requirement inference."""
    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"pandas=={pd.__version__}",
        f"pyarrow=={pa.__version__}",
        f"numpy=={np.__version__}",
    ]


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
