"""The encoder served as an MLflow pyfunc model: raw behaviour sequences in, user vectors out.

The model lets anyone holding an MLflow model URI turn raw behaviour sequences (original
item ids, as in the source data) into CLUE user vectors without knowing the token map, the
padding rule or the ``[UR]`` convention of ``docs/architecture.md``. Logged with a user index
(``clue_pipeline.neighbours``), it also answers the ``k`` nearest users of a known user id or
of a sequence (see ``UserVectorModel``).
"""

from __future__ import annotations

import logging
import numbers
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
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import Array

from clue_pipeline.data.tokens import special_tokens
from clue_pipeline.embedding import (
    MAX_IDS_NAMED,
    MAX_ROWS_NAMED,
    encode_tokens,
    reject_rows_without_known_items,
)
from clue_pipeline.neighbours import IndexConfig, UnindexedUserError, UserIndex

logger = logging.getLogger(__name__)

ITEMS_COLUMN = "items"
ENCODER_ARTIFACT = "encoder"
ITEM_INDEX_ARTIFACT = "item_index"
DEFAULT_ENCODER_LOADER = "clue_pipeline.models.encoders:encoder_from_checkpoint"
DEFAULT_MODEL_NAME = "user_vector_model"
UNKNOWN_COLUMN = "unknown_items"  # per row, the ids the model skipped as unknown
USER_INDEX_ARTIFACT = "user_index"
USER_ID_COLUMN = "user_id"  # a request by user id: the users' neighbours from the index
NEIGHBOUR_IDS_COLUMN = "neighbour_ids"  # per row, the nearest users, most similar first
SIMILARITY_COLUMN = "neighbour_similarities"  # their cosine similarities
NEIGHBOURS_PARAM, K_PARAM = "neighbours", "k"  # request params: ask for neighbours, how many


class ImpossibleIdsError(MlflowException, ValueError):
    """Item ids no dataset holds (negative, fractional, text): HTTP 400 when served."""


class NeighbourRequestError(MlflowException, ValueError):
    """A neighbour request the model cannot answer (unknown user id, bad ``k``, no index):
    HTTP 400 when served."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True)
class UserVectorConfig:
    """How the served model runs the encoder.

    ``device`` None picks CUDA where available, so one logged model serves on either.
    ``batch_size`` bounds memory when a caller sends many users at once.
    ``k`` is how many neighbours a request gets when it does not say.
    """

    device: str | None = None
    batch_size: int = 1024
    encoder_loader: str = DEFAULT_ENCODER_LOADER
    k: int = IndexConfig.k


class UserVectorModel(mlflow.pyfunc.PythonModel):
    """Maps sequences of original item ids to user vectors (columns ``u0..u{d-1}``).

    Input: a DataFrame with a column ``items`` holding, per user, a list of original item
    ids in time order. An id no dataset holds (negative, fractional, not a number) is refused
    naming it, even beside known ids, and so is a row with no known id (empty, or unknown ids
    only): HTTP 400 when served. Other ids absent from the item index are skipped and
    returned in the column ``unknown_items`` (their count per row also in
    ``result.attrs["unknown_items"]``); the most recent ``max_len`` known items are kept,
    left-padded with 0, and ``[UR]`` is appended, exactly as in training.

    Neighbours, when the model was logged with a user index: params ``{"neighbours": true,
    "k": 5}`` add per row ``neighbour_ids`` and ``neighbour_similarities`` (cosine, most
    similar first) of the sequence's vector; a frame with a column ``user_id`` instead of
    ``items`` gets each user's ``k`` nearest other users (``k`` defaults to the index's
    setting). An id the index lacks is HTTP 400 naming it.
    """

    def __init__(self, config: UserVectorConfig | None = None) -> None:
        self.config = config or UserVectorConfig()
        self._encoder: torch.nn.Module | None = None
        self._lookup: pd.Index | None = None
        self._tokens: np.ndarray | None = None
        self._users: UserIndex | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        user_index = context.artifacts.get(USER_INDEX_ARTIFACT)
        self.setup(
            Path(context.artifacts[ENCODER_ARTIFACT]),
            Path(context.artifacts[ITEM_INDEX_ARTIFACT]),
            Path(user_index) if user_index else None,
        )

    def setup(
        self, encoder_path: Path, item_index_path: Path, user_index_path: Path | None = None
    ) -> None:
        """Loads the artifacts; split from ``load_context`` so logging can call it too."""
        device = torch.device(self.config.device or _default_device())
        checkpoint = torch.load(encoder_path, map_location=device, weights_only=True)
        encoder = _resolve(self.config.encoder_loader)(checkpoint).to(device)
        self._encoder = encoder.eval()
        item_index = _read_item_index(item_index_path)
        self._lookup = pd.Index(item_index["item_id"].to_numpy(np.int64))
        self._tokens = item_index["token"].to_numpy(np.int64)
        self._users = UserIndex.load(user_index_path) if user_index_path else None

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        if self._encoder is None:
            raise RuntimeError("UserVectorModel.predict: call setup() or load the model first")
        by_user = _has_values(model_input, USER_ID_COLUMN)
        k = self._neighbour_count(params or {}, by_user)
        if by_user:
            if _has_values(model_input, ITEMS_COLUMN):
                raise NeighbourRequestError(
                    f"UserVectorModel input: columns {ITEMS_COLUMN!r} and {USER_ID_COLUMN!r} both "
                    "hold values; send one: item sequences (vectors) or user ids (neighbours)"
                )
            return self._neighbours_of_users(model_input[USER_ID_COLUMN], k)
        result = self._vectors(model_input)
        if k:
            vectors = result.drop(columns=[UNKNOWN_COLUMN]).to_numpy(np.float32)
            ids, similarity = self._users.search(vectors, k)
            _add_neighbours(result, ids, similarity)
        return result

    def _vectors(self, model_input: pd.DataFrame) -> pd.DataFrame:
        """Each row's vector ``u0..`` and the ids it skipped as unknown."""
        if ITEMS_COLUMN not in model_input.columns:
            raise ValueError(
                f"UserVectorModel input: column {ITEMS_COLUMN!r} is missing (got "
                f"{list(model_input.columns)}); expected one list of original item ids per row"
            )
        items = model_input[ITEMS_COLUMN]
        ids, lengths = flat_item_ids(items)
        encoder_config = self._encoder.config
        tokens, known, unknown = _batch(
            ids,
            lengths,
            self._lookup,
            self._tokens,
            max_len=encoder_config.max_len,
            ur_token=ur_token(encoder_config.num_items),
        )
        reject_rows_without_known_items(items, tokens, unknown, self._lookup)
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
        skipped = np.split(ids[~known], np.cumsum(unknown)[:-1]) if len(unknown) else []
        result[UNKNOWN_COLUMN] = [part.tolist() for part in skipped]
        result.attrs["unknown_items"] = unknown.tolist()
        return result

    def _encode(self, tokens: np.ndarray) -> np.ndarray:
        # The embed pipeline's function, so a served vector equals the one in `user_vectors`.
        return encode_tokens(self._encoder, tokens, self.config.batch_size)

    def _neighbour_count(self, params: dict[str, Any], by_user: bool) -> int:
        """``k`` when the request asks for neighbours (a ``user_id`` column always does),
        else 0; 400 when it asks and the model has no index, or ``k`` is not >= 1."""
        asked = by_user or bool(params.get(NEIGHBOURS_PARAM, False))
        if not asked:
            return 0
        if self._users is None:
            raise NeighbourRequestError(
                "UserVectorModel: this model version was logged without a user index, so it "
                "answers vectors only; ask again without 'neighbours' / 'user_id', or serve a "
                "version logged with one (log_user_vector_model(..., user_index=...))"
            )
        k = params.get(K_PARAM, self.config.k)
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise NeighbourRequestError(
                f"UserVectorModel param k = {k!r}: expected an integer >= 1"
            )
        return int(k)

    def _neighbours_of_users(self, user_ids: pd.Series, k: int) -> pd.DataFrame:
        """Per requested user id, its ``k`` nearest other users of the index."""
        if user_ids.isna().any():
            rows = np.flatnonzero(user_ids.isna().to_numpy())[:MAX_ROWS_NAMED].tolist()
            raise NeighbourRequestError(
                f"UserVectorModel input column {USER_ID_COLUMN!r}: rows {rows} hold no user id"
            )
        try:
            ids, similarity = self._users.neighbours_of(user_ids.tolist(), k)
        except (UnindexedUserError, ValueError) as error:
            message = f"UserVectorModel input column {USER_ID_COLUMN!r}: {error}"
            raise NeighbourRequestError(message) from error
        result = pd.DataFrame({USER_ID_COLUMN: user_ids.to_numpy(np.int64)}, index=user_ids.index)
        _add_neighbours(result, ids, similarity)
        return result


def _has_values(frame: pd.DataFrame, column: str) -> bool:
    """The column is there and not all null (the scoring server may add optional columns)."""
    return column in frame.columns and bool(frame[column].notna().any())


def _add_neighbours(result: pd.DataFrame, ids: np.ndarray, similarity: np.ndarray) -> None:
    """Per row, the found neighbours as lists (an index with fewer users gives shorter ones)."""
    found = ids >= 0
    result[NEIGHBOUR_IDS_COLUMN] = [
        row[keep].tolist() for row, keep in zip(ids, found, strict=True)
    ]
    result[SIMILARITY_COLUMN] = [
        row[keep].astype(float).tolist() for row, keep in zip(similarity, found, strict=True)
    ]


def log_user_vector_model(
    encoder_checkpoint: Mapping[str, Any] | Path | str,
    item_index: pd.DataFrame,
    registered_model_name: str | None,
    input_example: pd.DataFrame,
    config: UserVectorConfig | None = None,
    name: str = DEFAULT_MODEL_NAME,
    user_index: UserIndex | None = None,
) -> ModelInfo:
    """Logs (and registers, if a name is given) the encoder as a pyfunc model.

    ``encoder_checkpoint`` is ``encoder_to_checkpoint(encoder)`` or a file ``torch.save``
    wrote from it. Logs into the active run (kedro-mlflow's, inside a node), else into a new
    run. The signature is inferred from a real prediction on ``input_example``, so it
    states the true vector width. With ``user_index`` (built from this encoder's vectors:
    the ``embed`` stage's ``user_index``) the model also answers neighbours.
    """
    config = config or UserVectorConfig()
    with tempfile.TemporaryDirectory(prefix="clue-user-vector-") as tmp:
        encoder_path = _checkpoint_file(encoder_checkpoint, Path(tmp))
        item_index_path = Path(tmp) / "item_index.parquet"
        _validate_item_index(item_index, "item_index argument")
        item_index.to_parquet(item_index_path, index=False)
        artifacts = {ENCODER_ARTIFACT: str(encoder_path), ITEM_INDEX_ARTIFACT: str(item_index_path)}
        if user_index is not None:
            artifacts[USER_INDEX_ARTIFACT] = str(Path(tmp) / "user_index.npz")
            user_index.save(artifacts[USER_INDEX_ARTIFACT])

        probe = UserVectorModel(
            UserVectorConfig(device="cpu", encoder_loader=config.encoder_loader)
        )
        probe.setup(encoder_path, item_index_path)
        signature = _signature(input_example, probe.predict(None, input_example))
        if user_index is not None:
            signature = _with_neighbours(signature, config.k)

        owns_run = mlflow.active_run() is None
        if owns_run:
            mlflow.start_run(run_name=name)
        try:
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=UserVectorModel(config),
                artifacts=artifacts,
                signature=signature,
                input_example=input_example,
                registered_model_name=registered_model_name,
                pip_requirements=_pip_requirements(with_index=user_index is not None),
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
    ids, lengths = flat_item_ids(items)
    batch, _, unknown = _batch(ids, lengths, lookup, tokens, max_len, ur_token)
    return batch, unknown


def flat_item_ids(items: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """All rows' ids, flattened (int64), and each row's length; impossible ids refused.

    Original ids are non-negative integers (the ingest contract), so a negative, fractional
    or non-numeric id is the client's mistake, not an item the model has not seen: skipped
    beside known ids, it would silently answer another question than the one asked. The
    check is vectorised; rows are scanned one by one only to name what is wrong.
    """
    try:
        lists = pa.array(list(items), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        lists = None
    if lists is None or not pa.types.is_list(lists.type):
        raise _impossible_ids(items)
    values, kind = lists.flatten(), lists.type.value_type
    if pa.types.is_null(kind):
        ids = np.zeros(0, np.int64)
    elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind)) or values.null_count:
        raise _impossible_ids(items)
    else:
        numbers_ = values.to_numpy(zero_copy_only=False)
        whole = np.isfinite(numbers_) & (np.floor(numbers_) == numbers_) & (numbers_ >= 0)
        if not whole.all():
            raise _impossible_ids(items)
        ids = numbers_.astype(np.int64)
    lengths = lists.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    return ids, lengths.astype(np.int64)


def _impossible_ids(items: pd.Series) -> Exception:
    """The error naming the rows that hold ids no dataset has, and those ids."""
    described, rows = [], 0
    for row, sequence in enumerate(items.to_numpy(dtype=object)):
        if sequence is None or (isinstance(sequence, float) and np.isnan(sequence)):
            continue
        if isinstance(sequence, str) or not hasattr(sequence, "__len__"):
            bad = [f"{sequence!r} (not a list)"]
        else:
            bad = [f"{v!r} ({why})" for v in list(sequence) if (why := _why_impossible(v))]
        if bad:
            rows += 1
            if len(described) < MAX_ROWS_NAMED:
                more = ", ..." if len(bad) > MAX_IDS_NAMED else ""
                described.append(f"row {row}: {', '.join(bad[:MAX_IDS_NAMED])}{more}")
    if not rows:
        return ValueError(
            f"UserVectorModel input column {ITEMS_COLUMN!r}: expected lists of integer item ids"
        )
    if rows > MAX_ROWS_NAMED:
        described.append(f"... {rows - MAX_ROWS_NAMED} more row(s)")
    return ImpossibleIdsError(
        f"UserVectorModel input column {ITEMS_COLUMN!r}: expected lists of integer item ids "
        f">= 0 (the training data's original ids); {rows} of {len(items)} row(s) hold ids "
        f"that cannot be item ids ({'; '.join(described)})",
        error_code=INVALID_PARAMETER_VALUE,
    )


def _why_impossible(value: Any) -> str | None:
    if value is None or isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return "not an integer"
    if not np.isfinite(value) or value != int(value):
        return "not a whole number"
    return "negative" if value < 0 else None


def _batch(
    ids: np.ndarray,
    lengths: np.ndarray,
    lookup: pd.Index,
    tokens: np.ndarray,
    max_len: int,
    ur_token: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(B, max_len + 1)`` batch of flattened ids, which ids the index knows, and how
    many it does not know per row."""
    rows = np.repeat(np.arange(len(lengths)), lengths)
    position = lookup.get_indexer(ids)
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
    return batch, known, unknown


def _signature(example: pd.DataFrame, prediction: pd.DataFrame) -> ModelSignature:
    """Inferred from a real prediction (the true vector width); ``unknown_items`` stated, as
    an example whose ids are all known would leave its type unknown."""
    inferred = infer_signature(example, prediction.drop(columns=[UNKNOWN_COLUMN]))
    outputs = Schema([*inferred.outputs.inputs, ColSpec(Array(DataType.long), UNKNOWN_COLUMN)])
    return ModelSignature(inputs=inferred.inputs, outputs=outputs)


def _with_neighbours(signature: ModelSignature, k: int) -> ModelSignature:
    """The signature of a model with a user index: ``items`` or ``user_id`` (each optional,
    one per request), the params that ask for neighbours, and the neighbour columns."""
    items = signature.inputs.input_dict()[ITEMS_COLUMN]
    inputs = Schema(
        [
            ColSpec(items.type, ITEMS_COLUMN, required=False),
            ColSpec(DataType.long, USER_ID_COLUMN, required=False),
        ]
    )
    outputs = Schema(
        [
            *signature.outputs.inputs,
            ColSpec(Array(DataType.long), NEIGHBOUR_IDS_COLUMN, required=False),
            ColSpec(Array(DataType.double), SIMILARITY_COLUMN, required=False),
        ]
    )
    params = ParamSchema(
        [ParamSpec(NEIGHBOURS_PARAM, DataType.boolean, False), ParamSpec(K_PARAM, DataType.long, k)]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


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


def _pip_requirements(with_index: bool = False) -> list[str]:
    """Pinned to the running versions; skips MLflow's slow requirement inference."""
    if with_index:
        import faiss

        return [*_pip_requirements(), f"faiss-cpu=={faiss.__version__}"]
    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"pandas=={pd.__version__}",
        f"pyarrow=={pa.__version__}",
        f"numpy=={np.__version__}",
    ]


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
