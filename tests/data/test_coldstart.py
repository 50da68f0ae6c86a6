"""Cold-start construction: genre domains, first-g targets, user-level splits."""

import logging

import numpy as np
import pandas as pd
import pytest

from clue_pipeline.data.coldstart import ColdStartSettings, build_coldstart
from clue_pipeline.data.errors import DataError
from clue_pipeline.data.sequences import (
    build_item_index,
    filter_interactions,
    list_values_offsets,
    order_interactions,
)

RATIOS = {"train": 0.8, "valid": 0.05, "test": 0.15}
ITEMS = pd.DataFrame(
    {
        "item_id": [1, 2, 3, 4, 5, 6, 7],
        "genres": ["Drama", "Comedy|Drama", "Action", "Comedy", "Dark Comedy", "Comedy", None],
    }
)
COMEDIES = {2, 4, 6}


def _settings(**changes) -> ColdStartSettings:
    base = dict(
        target_genre="Comedy",
        target_domain="target",
        max_targets=2,
        min_source_items=2,
        max_len=50,
        ratios=RATIOS,
        seed=0,
    )
    return ColdStartSettings(**{**base, **changes})


def _ordered(rows):
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype("int64")
    return order_interactions(frame)


def _build(rows, items=ITEMS, **changes):
    ordered = _ordered(rows)
    return ordered, build_coldstart(
        ordered, items, build_item_index(ordered), _settings(**changes), "toy"
    )


TOY = [
    # user 1: comedies 6 (t=5), 4 (t=2), 2 (t=9) -> first two by time: 4 then 6
    (1, 6, 5), (1, 1, 1), (1, 4, 2), (1, 3, 3), (1, 2, 9), (1, 5, 4), (1, 7, 8),
    # user 2: no comedy -> dropped
    (2, 1, 1), (2, 3, 2), (2, 5, 3),
    # user 3: one comedy but a single source item -> dropped
    (3, 2, 1), (3, 1, 2),
    # user 4: one comedy, three source items
    (4, 3, 1), (4, 6, 2), (4, 1, 3), (4, 7, 4),
]  # fmt: skip


def test_source_never_holds_a_target_domain_item_and_targets_are_the_first_g():
    ordered, data = _build(TOY)
    index = build_item_index(ordered)
    item_of = dict(zip(index["token"], index["item_id"], strict=True))
    assert data.source["user_id"].tolist() == [1, 4]
    sources = [[item_of[t] for t in cell] for cell in data.source["items"]]
    assert sources == [[1, 3, 5, 7], [3, 1, 7]]  # time order, "Dark Comedy" is source
    assert not COMEDIES & {item for cell in sources for item in cell}
    item_of_class = dict(
        zip(data.target_index["target"], data.target_index["item_id"], strict=True)
    )
    targets = data.targets.assign(item=data.targets["target"].map(item_of_class))
    assert targets[targets["user_id"] == 1]["item"].tolist() == [4, 6]
    assert targets[targets["user_id"] == 4]["item"].tolist() == [6]
    assert (data.users_total, data.dropped_without_target, data.dropped_short_source) == (4, 1, 1)
    # classes by frequency: item 6 twice, item 4 once
    assert data.target_index["item_id"].tolist() == [6, 4]
    assert data.targets["target"].dtype == np.int32
    assert data.target_rule == "genre 'Comedy'"


def test_source_is_truncated_to_the_most_recent_items():
    ordered, data = _build(TOY, max_len=2)
    index = build_item_index(ordered)
    item_of = dict(zip(index["token"], index["item_id"], strict=True))
    assert [item_of[t] for t in data.source["items"].iloc[0]] == [5, 7]


def test_all_instances_of_a_user_share_one_split():
    rng = np.random.default_rng(1)
    rows = []
    for user in range(1, 401):
        items = rng.choice([1, 2, 3, 4, 5, 6, 7], size=6)
        rows += [(user, int(item), t) for t, item in enumerate(items)] + [(user, 4, 99)]
    rows += [(user, 1, 100) for user in range(1, 401)] + [(user, 3, 101) for user in range(1, 401)]
    _, data = _build(rows, max_targets=3)
    per_user = data.targets.groupby("user_id")["split"].nunique()
    assert (per_user == 1).all()
    users = data.targets.drop_duplicates("user_id")["split"].value_counts()
    assert users["train"] == round(0.8 * users.sum())


def test_domain_column_replaces_genres():
    ordered = _ordered([(1, 10, 1), (1, 11, 2), (1, 12, 3), (1, 13, 4)])
    ordered["domain"] = ["source", "target", "source", "target"]
    data = build_coldstart(
        ordered, pd.DataFrame({"item_id": [10]}), build_item_index(ordered), _settings(), "peterrec"
    )
    assert data.target_index["item_id"].tolist() == [11, 13]
    assert data.target_rule == "domain == 'target'"
    assert len(data.source["items"].iloc[0]) == 2


def test_unknown_genre_lists_the_known_ones():
    with pytest.raises(DataError, match=r"'Horror'.*'Action', 'Comedy', 'Dark Comedy', 'Drama'"):
        _build(TOY, target_genre="Horror")


@pytest.mark.parametrize("g", [0, 6])
def test_g_outside_one_to_five_is_refused(g):
    with pytest.raises(DataError, match="max_targets"):
        _build(TOY, max_targets=g)


def test_no_usable_user_names_the_parameters():
    with pytest.raises(DataError, match="min_source_items=50"):
        _build(TOY, min_source_items=50)


def test_dataset_without_genres_is_skipped(caplog):
    with caplog.at_level(logging.INFO):
        _, data = _build(TOY, items=pd.DataFrame({"item_id": [1, 2]}))
    assert data.skipped_reason is not None and "cold-start skipped" in caplog.text
    assert len(data.source) == len(data.targets) == len(data.target_index) == 0


def test_ml_latest_small_comedy(embedded_data):
    ratings = pd.read_csv(embedded_data / "ratings.csv")
    log = ratings.rename(columns={"userId": "user_id", "movieId": "item_id"})
    movies = pd.read_csv(embedded_data / "movies.csv").rename(columns={"movieId": "item_id"})
    ordered, _ = filter_interactions(order_interactions(log), k_core=0, min_seq_len=5)
    index = build_item_index(ordered)
    data = build_coldstart(
        ordered, movies, index, _settings(max_targets=3, min_source_items=5), "s"
    )
    comedies = movies.loc[movies["genres"].str.split("|").apply(lambda g: "Comedy" in g), "item_id"]
    comedy_tokens = set(index.loc[index["item_id"].isin(comedies), "token"])
    values, offsets = list_values_offsets(data.source["items"])
    assert not comedy_tokens & set(values.tolist())
    assert set(data.target_index["item_id"]) <= set(comedies)
    assert data.targets.groupby("user_id").size().max() == 3
    assert (
        len(data.source)
        == data.users_total - data.dropped_without_target - data.dropped_short_source
    )
    assert np.diff(offsets).max() == 50
