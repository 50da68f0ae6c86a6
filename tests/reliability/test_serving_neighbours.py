"""The served user-vector model answers the nearest users (issue 37, item 3).

Logged with a user index, ``clue-user-vectors`` returns each requested user's ``k`` nearest
other users, or the nearest users of a sequence's vector; an unknown user id, a bad ``k`` or
a model without an index is an error naming what is wrong (HTTP 400 when served). A request
that asks for no neighbours gets exactly what it got before.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, ErrorCode

from clue_pipeline.embedding import nearest_users, vectors_to_frame
from clue_pipeline.models.encoders import EncoderConfig, build_encoder, encoder_to_checkpoint
from clue_pipeline.neighbours import IndexConfig, build_index
from clue_pipeline.serving import (
    NEIGHBOUR_IDS_COLUMN,
    SIMILARITY_COLUMN,
    UNKNOWN_COLUMN,
    NeighbourRequestError,
    UserVectorConfig,
    UserVectorModel,
    log_user_vector_model,
)
from tests.reliability.test_serving import MODEL_NAME, serve_registered

KNOWN = [501, 17, 900, 42, 3, 77, 1000]
USERS = pd.DataFrame(
    {
        "user_id": [11, 12, 13, 14, 15, 16],
        "items": [[501, 17], [42, 3, 77], [900], [1000, 3], [17, 900, 42], [77, 501, 1000]],
    }
)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict:
    """A small real encoder, its item index, and an exact index over six users' vectors."""
    folder = tmp_path_factory.mktemp("neighbours")
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(num_items=len(KNOWN), max_len=4, hidden=8, heads=2))
    torch.save(encoder_to_checkpoint(encoder), folder / "encoder.pt")
    item_index = pd.DataFrame(
        {"item_id": np.array(KNOWN, np.int64), "token": np.arange(1, 8, dtype=np.int32)}
    )
    item_index.to_parquet(folder / "item_index.parquet")
    plain = _model(folder)
    vectors = plain.predict(None, USERS[["items"]]).drop(columns=UNKNOWN_COLUMN).to_numpy()
    table = vectors_to_frame(USERS["user_id"].to_numpy(), vectors)
    index = build_index(USERS["user_id"], vectors, IndexConfig(method="exact"))
    index.save(folder / "user_index.npz")
    return {"folder": folder, "table": table, "index": index, "item_index": item_index}


@pytest.fixture(scope="module")
def model(artifacts) -> UserVectorModel:
    return _model(artifacts["folder"], artifacts["folder"] / "user_index.npz")


def _model(folder: Path, user_index: Path | None = None) -> UserVectorModel:
    served = UserVectorModel(UserVectorConfig(device="cpu", k=3))
    served.setup(folder / "encoder.pt", folder / "item_index.parquet", user_index)
    return served


def test_a_user_id_gets_its_nearest_other_users_as_the_exact_matrix_product(model, artifacts):
    result = model.predict(None, pd.DataFrame({"user_id": [13, 11]}), params={"k": 4})
    expected = nearest_users(artifacts["table"], [13, 11], 4)
    assert result["user_id"].tolist() == [13, 11]
    assert sum(result[NEIGHBOUR_IDS_COLUMN], []) == expected["user_id"].tolist()
    np.testing.assert_allclose(
        sum(result[SIMILARITY_COLUMN], []), expected["similarity"], atol=1e-5
    )


def test_k_defaults_to_the_models_setting(model):
    result = model.predict(None, pd.DataFrame({"user_id": [12]}))
    assert len(result[NEIGHBOUR_IDS_COLUMN].iloc[0]) == 3


def test_a_sequence_gets_its_vector_and_the_users_nearest_it(model):
    result = model.predict(None, USERS[["items"]].iloc[[2]], params={"neighbours": True, "k": 2})
    assert result[NEIGHBOUR_IDS_COLUMN].iloc[0][0] == 13  # the user of that very sequence
    assert result[SIMILARITY_COLUMN].iloc[0][0] == pytest.approx(1.0, abs=1e-5)
    assert [f"u{i}" for i in range(8)] == list(result.columns[:8])  # the vector is there too


def test_a_request_that_asks_no_neighbours_is_answered_as_before(model, artifacts):
    before = _model(artifacts["folder"]).predict(None, USERS[["items"]])
    after = model.predict(None, USERS[["items"]])
    pd.testing.assert_frame_equal(before, after)


@pytest.mark.parametrize(
    ("frame", "params", "named"),
    [
        ({"user_id": [11, 99, 12]}, {}, "1 of 3 user id(s) not in the user index ([99]"),
        ({"user_id": [11]}, {"k": 0}, "param k = 0: expected an integer >= 1"),
        ({"items": [[501]]}, {"neighbours": True, "k": -1}, "param k = -1"),
        ({"user_id": [11], "items": [[501]]}, {}, "send one: item sequences"),
    ],
    ids=["unknown-user", "k-zero", "k-negative", "both-columns"],
)
def test_bad_neighbour_requests_are_400_naming_what_is_wrong(model, frame, params, named):
    with pytest.raises(NeighbourRequestError) as info:
        model.predict(None, pd.DataFrame(frame), params=params)
    assert named in str(info.value)
    assert info.value.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE)
    assert info.value.get_http_status_code() == 400


def test_a_model_without_an_index_says_so(artifacts):
    with pytest.raises(NeighbourRequestError, match="logged without a user index"):
        _model(artifacts["folder"]).predict(None, pd.DataFrame({"user_id": [11]}))


@pytest.fixture(scope="module")
def registered(artifacts, tmp_path_factory) -> str:
    """The model with its index registered in a sqlite store, as the embed stage would."""
    folder = tmp_path_factory.mktemp("registry")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    try:
        experiment = mlflow.create_experiment(
            "neighbours", artifact_location=(folder / "mlruns").as_uri()
        )
        mlflow.set_experiment(experiment_id=experiment)
        log_user_vector_model(
            artifacts["folder"] / "encoder.pt",
            artifacts["item_index"],
            registered_model_name=MODEL_NAME,
            input_example=USERS[["items"]].head(2),
            config=UserVectorConfig(device="cpu", k=3),
            user_index=artifacts["index"],
        )
    finally:
        mlflow.set_tracking_uri(previous)
    return store


def test_the_logged_model_answers_by_id_and_by_sequence_through_its_signature(registered):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(registered)
    try:
        loaded = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/1")
    finally:
        mlflow.set_tracking_uri(previous)
    by_id = loaded.predict(pd.DataFrame({"user_id": [14]}), params={"k": 2})
    assert len(by_id[NEIGHBOUR_IDS_COLUMN].iloc[0]) == 2
    by_items = loaded.predict(USERS[["items"]].head(2), params={"neighbours": True})
    assert by_items[NEIGHBOUR_IDS_COLUMN].map(len).tolist() == [3, 3]
    plain = loaded.predict(USERS[["items"]].head(2))
    assert NEIGHBOUR_IDS_COLUMN not in plain.columns


@pytest.mark.slow
def test_served_model_answers_neighbours_and_400_for_an_unknown_id(registered, tmp_path):
    with serve_registered(registered, tmp_path) as url:
        status, body = _post(url, ["user_id"], [[11], [16]], {"k": 2})
        assert status == 200, body
        rows = json.loads(body)["predictions"]
        assert [len(row[NEIGHBOUR_IDS_COLUMN]) for row in rows] == [2, 2]
        assert all(11 not in row[NEIGHBOUR_IDS_COLUMN] for row in rows[:1])

        status, body = _post(url, ["items"], [[[501, 17]]], {"neighbours": True, "k": 1})
        assert status == 200, body
        assert json.loads(body)["predictions"][0][NEIGHBOUR_IDS_COLUMN] == [11]

        status, body = _post(url, ["user_id"], [[424242]], {})
        assert status == 400, body
        assert "[424242]" in json.loads(body)["message"]


def _post(url: str, columns: list[str], data: list, params: dict) -> tuple[int, str]:
    payload = {"dataframe_split": {"columns": columns, "data": data}}
    if params:
        payload["params"] = params
    request = urllib.request.Request(
        f"{url}/invocations",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
