"""The served user-vector model is strict about ids (issue 35, item 6), called in process.

An id no dataset holds (negative, fractional, text, a boolean) is an error naming the row
and the id, even beside known ids; before, it was skipped as unknown and the client never
learned. An id that could exist but that the model does not know is answered back per row in
``unknown_items``. ``test_serving.py`` checks the same behind `mlflow models serve` (400).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode

from clue_pipeline.models.encoders import EncoderConfig, build_encoder, encoder_to_checkpoint
from clue_pipeline.serving import (
    UNKNOWN_COLUMN,
    ImpossibleIdsError,
    UserVectorConfig,
    UserVectorModel,
    flat_item_ids,
)

KNOWN = [501, 17, 900, 42, 3, 77, 1000]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> UserVectorModel:
    folder = tmp_path_factory.mktemp("strict")
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(num_items=len(KNOWN), max_len=4, hidden=8, heads=2))
    torch.save(encoder_to_checkpoint(encoder), folder / "encoder.pt")
    index = pd.DataFrame(
        {"item_id": np.array(KNOWN, np.int64), "token": np.arange(1, 8, dtype=np.int32)}
    )
    index.to_parquet(folder / "item_index.parquet")
    served = UserVectorModel(UserVectorConfig(device="cpu"))
    served.setup(folder / "encoder.pt", folder / "item_index.parquet")
    return served


def _predict(model: UserVectorModel, sequences: list) -> pd.DataFrame:
    return model.predict(None, pd.DataFrame({"items": sequences}))


@pytest.mark.parametrize(
    ("sequences", "named"),
    [
        ([[501, 17], [42, -5, 77]], "row 1: -5 (negative)"),
        ([[501, 2.5]], "row 0: 2.5 (not a whole number)"),
        ([[501], [17, "abc"]], "row 1: 'abc' (not an integer)"),
        ([[True, 501]], "row 0: True (not an integer)"),
        ([[501, None]], "row 0: None (not an integer)"),
        ([[-1], [-2], [501]], "2 of 3 row(s)"),
    ],
    ids=["negative", "fractional", "text", "boolean", "null", "several-rows"],
)
def test_impossible_ids_are_an_error_naming_them_even_beside_known_ids(model, sequences, named):
    with pytest.raises(ImpossibleIdsError) as info:
        _predict(model, sequences)
    assert named in str(info.value)
    assert "cannot be item ids" in str(info.value)
    # MLflow's scoring server answers an INVALID_PARAMETER_VALUE error with HTTP 400.
    assert isinstance(info.value, MlflowException)
    assert info.value.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE)
    assert info.value.get_http_status_code() == 400


def test_unknown_but_possible_ids_are_reported_back_per_row(model):
    result = _predict(model, [[501, 17], [42, 31337, 77, 8], [3]])
    assert result[UNKNOWN_COLUMN].tolist() == [[], [31337, 8], []]
    assert result.attrs["unknown_items"] == [0, 2, 0]
    vectors = result.drop(columns=UNKNOWN_COLUMN).to_numpy()
    assert vectors.shape == (3, 8) and np.isfinite(vectors).all()


def test_unknown_ids_do_not_change_the_vector_of_the_known_ones(model):
    result = _predict(model, [[42, 77], [42, 31337, 77]])
    vectors = result.drop(columns=UNKNOWN_COLUMN).to_numpy()
    np.testing.assert_allclose(vectors[0], vectors[1], rtol=1e-6)


def test_whole_float_ids_and_numpy_rows_are_read_as_integers():
    ids, lengths = flat_item_ids(pd.Series([np.array([501.0, 17.0]), [42], None, []]))
    assert ids.tolist() == [501, 17, 42] and ids.dtype == np.int64
    assert lengths.tolist() == [2, 1, 0, 0]
