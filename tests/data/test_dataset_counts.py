"""The readers reproduce the published size of every public dataset.

Figures: GroupLens READMEs (ml-latest-small, ML-100K, ML-1M), the S3-Rec paper's Table 1
(Beauty, Sports, LastFM) and the data's SOURCES.md for the partial ML-1M files.
"""

import pytest

from clue_pipeline.data.readers import (
    known_formats,
    read_dataset,
    read_ml1m_movies,
    read_ml1m_users,
)
from clue_pipeline.data.validation import parse_ingest_params

pytestmark = pytest.mark.shared_data


def _read(fmt, path, **extra):
    params = {"format": fmt, "path": str(path), **extra}
    return read_dataset(parse_ingest_params(params, known_formats()))


def _sizes(raw):
    events = raw.interactions
    return len(events), events["user_id"].nunique(), events["item_id"].nunique()


def test_ml_latest_small(shared_data):
    raw = _read("ml-latest-small", shared_data / "movielens-latest-small")
    assert _sizes(raw) == (100_836, 610, 9_724)


def test_ml_100k(shared_data):
    raw = _read("ml-100k", shared_data / "movielens-100k")
    assert _sizes(raw) == (100_000, 943, 1_682)
    assert len(raw.users) == 943
    assert raw.users["gender"].value_counts().to_dict() == {"M": 670, "F": 273}
    assert len(raw.items) == 1_682


def test_ml_1m_users_and_movies(shared_data):
    folder = shared_data / "movielens-1m"
    users = read_ml1m_users(folder)
    assert len(users) == 6_040
    assert users["gender"].value_counts().to_dict() == {"M": 4_331, "F": 1_709}
    assert len(read_ml1m_movies(folder)) == 3_883


@pytest.mark.parametrize(
    ("scope", "sizes"),
    [("timed", (487_650, 2_999, 3_615)), ("all_users", (1_000_209, 6_040, 3_706))],
)
def test_ml_1m_partial(shared_data, scope, sizes):
    partial = shared_data / "movielens-1m" / "partial"
    raw = _read("ml-1m-partial", partial, ml1m_partial={"scope": scope})
    assert _sizes(raw) == sizes
    assert len(raw.users) == sizes[1]


@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        ("Beauty.txt", (198_502, 22_363, 12_101)),
        ("Sports_and_Outdoors.txt", (296_337, 35_598, 18_357)),
        ("LastFM.txt", (52_551, 1_090, 3_646)),
    ],
)
def test_s3rec(shared_data, name, sizes):
    raw = _read("s3rec", shared_data / "s3rec" / name)
    assert _sizes(raw) == sizes
    assert raw.interactions.groupby("user_id").size().min() == 5


def test_ml_1m_history_lengths_that_the_profiling_recipe_reads(shared_data):
    """conf/recipes/ml-1m_user_vectors.yml reads the last 200 items: the whole history of three
    users in four, where the default 50 holds under a third (the recipe's header quotes these)."""
    import yaml

    from tests.conftest import REPO_ROOT

    raw = _read("ml-1m-partial", shared_data / "movielens-1m" / "partial")
    lengths = raw.interactions.groupby("user_id").size()
    recipe = yaml.safe_load((REPO_ROOT / "conf/recipes/ml-1m_user_vectors.yml").read_text())
    max_len = recipe["run"]["params"]["encoder"]["max_len"]
    assert (max_len, lengths.median(), lengths.max()) == (200, 89, 1_850)
    assert round((lengths <= max_len).mean(), 3) == 0.749
    assert round(lengths.clip(upper=max_len).sum() / lengths.sum(), 3) == 0.658
    assert round((lengths <= 50).mean(), 3) == 0.308
