"""The ingest pipeline: wiring, configuration of every environment, a real run."""

import hashlib
import io
import zipfile

import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import ParquetDataset

from clue_pipeline.data.errors import DataError
from clue_pipeline.pipelines.ingest import create_pipeline
from clue_pipeline.pipelines.ingest.nodes import locate_raw_dataset
from tests.conftest import REPO_ROOT

ENVS = {
    "base": ("ml-latest-small", "ml-latest-small"),
    "ml-100k": ("ml-100k", "ml-100k"),
    "ml-1m": ("ml-1m", "ml-1m-partial"),
    "beauty": ("beauty", "s3rec"),
    "sports": ("sports", "s3rec"),
    "lastfm": ("lastfm", "s3rec"),
    "peterrec": ("peterrec", "peterrec"),
}
OUTPUTS = ("interactions", "users", "items")


def _config(env: str) -> OmegaConfigLoader:
    return OmegaConfigLoader(
        str(REPO_ROOT / "conf"),
        base_env="base",
        default_run_env="local",
        env=None if env == "base" else env,
    )


def test_pipeline_shape_reads_well_in_viz():
    pipeline = create_pipeline()
    assert [node.name for node in pipeline.nodes] == [
        "ingest.locate_raw_dataset",
        "ingest.read_raw_dataset",
        "ingest.validate_dataset",
    ]
    assert all("ingest" in node.tags for node in pipeline.nodes)
    assert pipeline.inputs() == {"params:ingest"}
    assert pipeline.outputs() == set(OUTPUTS)


@pytest.mark.parametrize("env", sorted(ENVS))
def test_every_environment_configures_ingest(env):
    dataset, fmt = ENVS[env]
    config = _config(env)
    ingest = config["parameters"]["ingest"]
    assert ingest["format"] == fmt
    assert ingest["duplicates"] == "keep_last"
    catalog = config["catalog"]
    for name in OUTPUTS:
        assert catalog[name]["type"] == "pandas.ParquetDataset"
        assert catalog[name]["filepath"] == f"data/02_intermediate/{dataset}/{name}.parquet"
    if env != "base":
        assert ingest["path"].startswith("../shared/data/")


@pytest.mark.parametrize("env", ["ml-100k", "beauty", "peterrec"])
def test_environment_paths_point_at_the_shared_data(env, shared_data):
    path = _config(env)["parameters"]["ingest"]["path"]
    assert (shared_data / path.removeprefix("../shared/data/")).exists()


def _catalog(tmp_path, params) -> DataCatalog:
    datasets = {"params:ingest": MemoryDataset(params)}
    for name in OUTPUTS:
        datasets[name] = ParquetDataset(filepath=str(tmp_path / f"{name}.parquet"))
    return DataCatalog(datasets=datasets)


def test_run_on_the_embedded_data_writes_the_contract(tmp_path, embedded_data):
    params = _config("base")["parameters"]["ingest"] | {"path": str(embedded_data)}
    SequentialRunner().run(create_pipeline(), _catalog(tmp_path, params))
    interactions = pd.read_parquet(tmp_path / "interactions.parquet")
    assert len(interactions) == 100_836
    assert interactions[["user_id", "item_id", "timestamp"]].dtypes.eq("int64").all()
    assert interactions["rating"].dtype == "float64"
    assert len(pd.read_parquet(tmp_path / "users.parquet")) == 610
    items = pd.read_parquet(tmp_path / "items.parquet")
    assert items["item_id"].dtype == "int64" and len(items) == 9_742


def test_bad_input_stops_the_run_before_anything_is_written(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,5\n1,1,3.0,5\n")
    (folder / "movies.csv").write_text("movieId,title,genres\n1,A,Comedy\n")
    params = {"format": "ml-latest-small", "path": str(folder), "duplicates": "error"}
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match="duplicate event user_id=1, item_id=1, timestamp=5"):
        SequentialRunner().run(create_pipeline(), _catalog(out, params))
    assert not any(out.iterdir())


def test_locate_downloads_into_the_path_when_configured(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,5\n")
        zipped.writestr("ml-latest-small/movies.csv", "movieId,title,genres\n1,A,Comedy\n")
    archive = tmp_path / "ml-latest-small.zip"
    archive.write_bytes(buffer.getvalue())
    cache = tmp_path / "data" / "01_raw" / "ml-latest-small"
    params = {
        "format": "ml-latest-small",
        "path": str(cache),
        "download": {
            "url": archive.as_uri(),
            "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
            "archive_member_dir": "ml-latest-small",
        },
    }
    assert locate_raw_dataset(params) == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == ["movies.csv", "ratings.csv"]
