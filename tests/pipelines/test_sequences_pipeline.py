"""The `sequences` pipeline end to end on the embedded data, with the project's parameters."""

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from clue_pipeline.data.sequences import list_values_offsets
from clue_pipeline.pipelines.sequences import create_pipeline
from tests.conftest import REPO_ROOT

OUTPUTS = [
    "filtered_interactions",
    "item_index",
    "sequences",
    "next_item_split",
    "profile_split",
    "profile_classes",
    "coldstart_source",
    "coldstart_targets",
    "coldstart_target_index",
]


class KeptDataset(MemoryDataset):
    """An in-memory output the runner does not release, so the test can read it after."""

    def _release(self) -> None:
        pass


@pytest.fixture(scope="module")
def config() -> OmegaConfigLoader:
    return OmegaConfigLoader(str(REPO_ROOT / "conf"), base_env="base", default_run_env="base")


def _embedded_tables(folder) -> dict[str, pd.DataFrame]:
    ratings = pd.read_csv(folder / "ratings.csv")
    interactions = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
    interactions = interactions[["user_id", "item_id", "timestamp"]].astype("int64")
    items = pd.read_csv(folder / "movies.csv").rename(columns={"movieId": "item_id"})
    users = pd.DataFrame({"user_id": np.unique(interactions["user_id"])})
    return {"interactions": interactions, "users": users, "items": items}


def test_catalog_declares_every_output(config):
    catalog = config["catalog"]
    for name in OUTPUTS:
        assert name in catalog, name
        assert "ml-latest-small" in catalog[name]["filepath"]
    assert catalog["profile_classes"]["type"] == "json.JSONDataset"


def test_pipeline_runs_on_embedded_data(config, embedded_data):
    params = config["parameters"]["sequences"]
    max_len = config["parameters"]["encoder"]["max_len"]  # the one sequence length
    assert params["dataset"] == "ml-latest-small" and max_len == 50 and "max_len" not in params
    tables = _embedded_tables(embedded_data)
    catalog = DataCatalog(
        {name: MemoryDataset(frame) for name, frame in tables.items()}
        | {"params:sequences": MemoryDataset(params), "params:encoder.max_len": MemoryDataset(50)}
        | {name: KeptDataset() for name in OUTPUTS}
    )
    pipeline = create_pipeline()
    assert all("sequences" in node.tags for node in pipeline.nodes)
    SequentialRunner().run(pipeline, catalog)

    index = catalog.load("item_index")
    sequences = catalog.load("sequences")
    assert len(index) == 9724 and index["token"].tolist() == list(range(1, 9725))
    assert len(sequences) == 610
    values, offsets = list_values_offsets(sequences["items"])
    # truncation can cut the only use of a rare item, so not every token need appear
    assert values.min() == 1 and values.max() <= 9724 and np.diff(offsets).max() == 52
    split = catalog.load("next_item_split")
    assert len(split) == 610
    train_values, train_offsets = list_values_offsets(split["train"])
    assert np.array_equal(np.diff(train_offsets), np.diff(offsets) - 2)
    assert np.array_equal(split["test_target"], values[offsets[1:] - 1])
    # ml-latest-small has no user attributes: profiling is empty, not an error
    assert len(catalog.load("profile_split")) == 0 and catalog.load("profile_classes") == {}
    targets = catalog.load("coldstart_targets")
    target_index = catalog.load("coldstart_target_index")
    assert set(targets["split"]) == {"train", "valid", "test"}
    assert targets["target"].max() == len(target_index) - 1
    assert set(catalog.load("coldstart_source")["user_id"]) == set(targets["user_id"])


def test_tables_survive_parquet(embedded_data, config, tmp_path):
    """What the catalog writes loads back in the contract's types."""
    import pyarrow.parquet as pq

    from clue_pipeline.pipelines.sequences.nodes import (
        filter_and_order_interactions,
        index_items_and_build_sequences,
        split_next_item,
    )

    params = config["parameters"]["sequences"]
    filtered = filter_and_order_interactions(
        _embedded_tables(embedded_data)["interactions"], params
    )
    index, sequences = index_items_and_build_sequences(
        filtered, params, config["parameters"]["encoder"]["max_len"]
    )
    split = split_next_item(sequences, params)
    for name, frame in {"item_index": index, "sequences": sequences, "split": split}.items():
        frame.to_parquet(tmp_path / f"{name}.parquet")
    schema = pq.read_schema(tmp_path / "sequences.parquet")
    assert str(schema.field("items").type) == "list<element: int32>"
    assert str(pq.read_schema(tmp_path / "split.parquet").field("train").type).endswith("int32>")
    assert str(pq.read_schema(tmp_path / "item_index.parquet").field("token").type) == "int32"
