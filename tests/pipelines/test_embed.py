"""The `embed` pipeline: on an in-memory catalog, and against the MLflow model of a real run."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.io.core import Version
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import ParquetDataset

from clue_pipeline.embedding import vector_columns
from clue_pipeline.models.encoders import EncoderConfig, build_encoder, encoder_to_checkpoint
from clue_pipeline.neighbours import UserIndex
from clue_pipeline.pipelines.embed import create_pipeline
from clue_pipeline.pipelines.embed.nodes import embed_users
from clue_pipeline.pipelines.embed.pipeline import ENCODERS
from clue_pipeline.tasks.batching import flatten

NUM_ITEMS = 6
MAX_LEN = 3
PARAMS = {
    "encoder": "next_item__clue_encoder",
    "batch_size": 2,
    "device": "cpu",
    "similar_users": {"user_ids": [], "first_users": 2, "k": 2},
}


class KeptDataset(MemoryDataset):
    """An in-memory output the runner does not release, so the test can read it after."""

    def _release(self) -> None:
        pass


def _checkpoint(seed: int) -> dict:
    torch.manual_seed(seed)
    config = EncoderConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=4, blocks=1, heads=2)
    return encoder_to_checkpoint(build_encoder(config))


@pytest.fixture
def sequences() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": np.array([101, 55, 3, 70], dtype=np.int64),
            "items": [[1, 2, 3, 4, 5], [6], [2, 4], [5, 5, 1]],
        }
    )


def _run(sequences: pd.DataFrame, params: dict) -> DataCatalog:
    # A different encoder per catalog entry, so picking the wrong one would show.
    encoders = {name: MemoryDataset(_checkpoint(seed)) for seed, name in enumerate(ENCODERS)}
    catalog = DataCatalog(
        {
            "sequences": MemoryDataset(sequences),
            "params:embed": MemoryDataset(params),
            "params:embed.similar_users": MemoryDataset(params["similar_users"]),
            "params:embed.index": MemoryDataset({"method": "exact", "k": 2}),
            "user_vectors": KeptDataset(),
            "similar_users": KeptDataset(),
            "user_index": KeptDataset(),
            "item_index": MemoryDataset(
                pd.DataFrame(
                    {"item_id": np.arange(1, NUM_ITEMS + 1), "token": np.arange(1, NUM_ITEMS + 1)}
                )
            ),
            "params:tracking": MemoryDataset(
                {"registered_model_name": "clue-user-vectors", "input_example_users": 2}
            ),
            "user_vector_model_registration": KeptDataset(),
            **encoders,
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)
    # outside an MLflow run the model is not registered, and the run does not fail for it
    assert catalog.load("user_vector_model_registration") == {"registered": False}
    return catalog


@pytest.mark.parametrize("chosen", ["next_item__clue_encoder", "coldstart__mip_encoder"])
def test_pipeline_embeds_every_user_with_the_chosen_encoder(sequences, chosen):
    catalog = _run(sequences, {**PARAMS, "encoder": chosen})

    vectors = catalog.load("user_vectors")
    assert vectors["user_id"].tolist() == [101, 55, 3, 70]
    encoder = build_encoder(
        EncoderConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=4, blocks=1, heads=2)
    )
    encoder.load_state_dict(_checkpoint(ENCODERS.index(chosen))["state_dict"])
    ur = NUM_ITEMS + 2
    tokens = torch.tensor([[3, 4, 5, ur], [0, 0, 6, ur], [0, 2, 4, ur], [5, 5, 1, ur]])
    with torch.no_grad():
        expected = encoder.eval()(tokens).user.numpy()
    np.testing.assert_allclose(vectors[vector_columns(vectors)].to_numpy(), expected, atol=1e-6)

    neighbours = catalog.load("similar_users")
    assert neighbours["query_user_id"].tolist() == [101, 101, 55, 55]
    assert not (neighbours["query_user_id"] == neighbours["user_id"]).any()
    index = UserIndex.from_bytes(catalog.load("user_index"))
    assert index.neighbours_of([101], 2)[0].ravel().tolist() == neighbours["user_id"][:2].tolist()


def test_similar_users_node_takes_the_listed_users(sequences):
    params = {**PARAMS, "similar_users": {"user_ids": [70], "first_users": 2, "k": 5}}

    neighbours = _run(sequences, params).load("similar_users")

    assert set(neighbours["query_user_id"]) == {70}
    assert sorted(neighbours["user_id"]) == [3, 55, 101]


def test_a_bad_encoder_name_names_the_parameter_and_the_choices(sequences):
    checkpoints = {name: _checkpoint(0) for name in ENCODERS}
    with pytest.raises(ValueError) as error:
        embed_users(sequences, {**PARAMS, "encoder": "next_item.clue"}, **checkpoints)
    message = str(error.value)
    assert "embed.encoder = 'next_item.clue'" in message
    assert "parameters_embed.yml" in message
    assert all(name in message for name in ENCODERS)


def test_an_unknown_embed_parameter_is_named(sequences):
    checkpoints = {name: _checkpoint(0) for name in ENCODERS}
    with pytest.raises(ValueError, match=r"embed: unknown parameter\(s\) \['batchsize'\]"):
        embed_users(sequences, {**PARAMS, "batchsize": 8}, **checkpoints)


@pytest.mark.slow
def test_registered_model_serves_the_vectors_of_user_vectors(finished_project: Path, monkeypatch):
    """The pyfunc fed each user's original item ids gives the stored user vector."""
    data = finished_project / "data"
    vectors = _latest(data / "07_model_output" / "ml-latest-small" / "user_vectors.parquet")
    sequences = pd.read_parquet(data / "03_primary" / "ml-latest-small" / "sequences.parquet")
    item_index = pd.read_parquet(data / "03_primary" / "ml-latest-small" / "item_index.parquet")
    assert vectors["user_id"].tolist() == sequences["user_id"].tolist()

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{finished_project / 'mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model("models:/clue-user-vectors/latest")
        served = model.predict(pd.DataFrame({"items": _original_ids(sequences, item_index)}))
        first = int(vectors["user_id"].iloc[0])
        neighbours = model.predict(pd.DataFrame({"user_id": [first]}), params={"k": 3})
    finally:
        mlflow.set_tracking_uri(previous)

    columns = vector_columns(vectors)
    assert served.pop("unknown_items").map(len).sum() == 0  # every id is the dataset's own
    assert list(served.columns) == columns
    np.testing.assert_allclose(served.to_numpy(), vectors[columns].to_numpy(), atol=1e-5)
    # the run registers the model with the index of these vectors: it answers neighbours too
    (found,) = neighbours["neighbour_ids"]
    assert len(found) == 3 and first not in found
    assert set(found) <= set(vectors["user_id"])


def _latest(path: Path) -> pd.DataFrame:
    """The newest version of a versioned parquet dataset, read as the catalog reads it."""
    return ParquetDataset(filepath=str(path), version=Version(None, None)).load()


def _original_ids(sequences: pd.DataFrame, item_index: pd.DataFrame) -> list[list[int]]:
    """Token lists mapped back to the dataset's original item ids, vectorised."""
    flat, offsets = flatten(sequences["items"])
    decode = np.zeros(int(item_index["token"].max()) + 1, dtype=np.int64)
    decode[item_index["token"].to_numpy()] = item_index["item_id"].to_numpy()
    return pa.ListArray.from_arrays(
        pa.array(offsets.astype(np.int32)), pa.array(decode[flat])
    ).to_pylist()


def test_the_older_dotted_encoder_name_still_selects_the_encoder(sequences):
    checkpoints = {name: _checkpoint(seed) for seed, name in enumerate(ENCODERS)}
    older = embed_users(sequences, {**PARAMS, "encoder": "coldstart.mip_encoder"}, **checkpoints)
    current = embed_users(sequences, {**PARAMS, "encoder": "coldstart__mip_encoder"}, **checkpoints)
    other = embed_users(sequences, {**PARAMS, "encoder": "next_item__clue_encoder"}, **checkpoints)
    pd.testing.assert_frame_equal(older, current)
    assert not older.equals(other)
