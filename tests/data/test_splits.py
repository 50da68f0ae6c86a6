"""Leave-one-out and the seeded, stratified user splits of profiling."""

import logging

import numpy as np
import pandas as pd
import pytest

from clue_pipeline.data.errors import DataError
from clue_pipeline.data.sequences import to_list_series
from clue_pipeline.data.splits import assign_splits, next_item_split, profile_split

RATIOS = {"train": 0.8, "valid": 0.05, "test": 0.15}
TASKS = {
    "gender": {"column": "gender"},
    "age": {"column": "age", "bins": [18, 25, 35, 45, 50, 56]},
}


def _sequences(cells: list[list[int]], user_ids=None) -> pd.DataFrame:
    lengths = np.array([len(cell) for cell in cells])
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    values = np.array([item for cell in cells for item in cell], dtype=np.int32)
    users = np.arange(1, len(cells) + 1) if user_ids is None else np.asarray(user_ids)
    return pd.DataFrame(
        {"user_id": users.astype(np.int64), "items": to_list_series(values, offsets)}
    )


def test_leave_one_out_targets_are_the_last_two_items():
    table, dropped = next_item_split(_sequences([[1, 2, 3, 4], [5, 6], [7, 8, 9]]))
    assert dropped == 1
    assert table["user_id"].tolist() == [1, 3]
    assert [list(cell) for cell in table["train"]] == [[1, 2], [7]]
    assert table["valid_target"].tolist() == [3, 8]
    assert table["test_target"].tolist() == [4, 9]
    assert table["valid_target"].dtype == np.int32 and table["test_target"].dtype == np.int32


def test_split_sizes_are_exact_per_stratum():
    strata = np.repeat([0, 1, 2], [1000, 200, 40])
    codes = assign_splits(
        len(strata), np.array([0.8, 0.05, 0.15]), np.random.default_rng(0), strata
    )
    for stratum, size in [(0, 1000), (1, 200), (2, 40)]:
        counts = np.bincount(codes[strata == stratum], minlength=3)
        assert counts.tolist() == [round(size * 0.8), round(size * 0.05), round(size * 0.15)]


def test_split_is_seeded_and_shuffled():
    ratios = np.array([0.5, 0.25, 0.25])
    first = assign_splits(400, ratios, np.random.default_rng(7))
    assert np.array_equal(first, assign_splits(400, ratios, np.random.default_rng(7)))
    assert not np.array_equal(first, assign_splits(400, ratios, np.random.default_rng(8)))
    assert not np.array_equal(first, np.sort(first))  # not simply the first rows as train


def _population(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    sequences = _sequences([list(rng.integers(1, 50, 6)) for _ in range(n)])
    users = pd.DataFrame(
        {
            "user_id": np.arange(n, 0, -1),  # another order than the sequences
            "gender": rng.choice(["F", "M"], n, p=[0.3, 0.7]),
            "age": rng.integers(10, 70, n),
        }
    )
    return sequences, users


def test_profile_split_is_stratified_with_named_classes():
    sequences, users = _population(2000)
    table, classes = profile_split(sequences, users, TASKS, RATIOS, 42, 20, "toy")
    assert classes["gender"] == ["F", "M"]
    assert classes["age"] == ["<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]
    gender = table[table["task"] == "gender"]
    assert len(gender) == 2000 and set(gender["split"]) == {"train", "valid", "test"}
    for code in (0, 1):
        rows = gender[gender["label"] == code]
        share = rows["split"].value_counts(normalize=True)
        assert abs(share["train"] - 0.8) < 0.002 and abs(share["test"] - 0.15) < 0.002
    # labels are those of the user, not of the row position
    merged = gender.merge(users, on="user_id")
    assert (np.array(classes["gender"])[merged["label"]] == merged["gender"]).all()
    ages = table[table["task"] == "age"].merge(users, on="user_id")
    assert (ages.loc[ages["age"] < 18, "label"] == 0).all()
    assert (ages.loc[ages["age"].between(25, 34), "label"] == 2).all()
    # items travel with their user
    first = table[(table["task"] == "age") & (table["user_id"] == 5)]["items"].iloc[0]
    assert list(first) == list(sequences.loc[sequences["user_id"] == 5, "items"].iloc[0])


def test_profile_split_is_reproducible_per_seed():
    sequences, users = _population(300)
    a, _ = profile_split(sequences, users, TASKS, RATIOS, 1, 20, "toy")
    b, _ = profile_split(sequences, users, TASKS, RATIOS, 1, 20, "toy")
    c, _ = profile_split(sequences, users, TASKS, RATIOS, 2, 20, "toy")
    assert a["split"].tolist() == b["split"].tolist()
    assert a["split"].tolist() != c["split"].tolist()


def test_ml1m_age_codes_and_raw_ages_share_brackets():
    sequences = _sequences([[1, 2, 3]] * 7)
    codes = pd.DataFrame({"user_id": range(1, 8), "age": [1, 18, 25, 35, 45, 50, 56]})
    table, classes = profile_split(sequences, codes, {"age": TASKS["age"]}, RATIOS, 0, 1, "ml-1m")
    assert table["label"].tolist() == list(range(7))
    raw = codes.assign(age=[12, 20, 30, 40, 47, 52, 60])
    table_raw, classes_raw = profile_split(sequences, raw, {"age": TASKS["age"]}, RATIOS, 0, 1, "x")
    assert table_raw["label"].tolist() == table["label"].tolist() and classes == classes_raw


def test_small_classes_fall_back_to_random_with_a_warning(caplog):
    sequences, users = _population(100)
    users.loc[users.index[:3], "gender"] = "X"
    with caplog.at_level(logging.WARNING):
        table, classes = profile_split(sequences, users, TASKS, RATIOS, 0, 20, "toy")
    assert "plain random" in caplog.text and "'gender'" in caplog.text
    assert classes["gender"] == ["F", "M", "X"]
    assert table[table["task"] == "gender"]["split"].value_counts()["train"] == 80


def test_missing_labels_and_unknown_users_are_left_out():
    sequences = _sequences([[1, 2, 3]] * 4)
    users = pd.DataFrame({"user_id": [1, 2, 3], "gender": ["F", None, "M"]})
    table, _ = profile_split(sequences, users, {"gender": {"column": "gender"}}, RATIOS, 0, 1, "t")
    assert sorted(table["user_id"]) == [1, 3]


def test_dataset_without_attributes_is_skipped_not_failed(caplog):
    sequences = _sequences([[1, 2, 3]])
    with caplog.at_level(logging.INFO):
        table, classes = profile_split(
            sequences, pd.DataFrame({"user_id": [1]}), TASKS, RATIOS, 0, 20, "ml-latest-small"
        )
    assert len(table) == 0 and classes == {}
    assert list(table.columns) == ["user_id", "items", "task", "label", "split"]
    assert "profiling skipped: ml-latest-small has no user attributes (gender, age)" in caplog.text


@pytest.mark.parametrize(
    "ratios",
    [
        {"train": 0.8, "valid": 0.1, "test": 0.15},
        {"train": 0.8, "test": 0.2},
        {"train": -0.1, "valid": 0.6, "test": 0.5},
    ],
)
def test_bad_ratios_are_refused(ratios):
    sequences, users = _population(10)
    with pytest.raises(DataError, match="sequences.profiling.ratios"):
        profile_split(sequences, users, TASKS, ratios, 0, 20, "toy")


def test_non_numeric_age_with_bins_names_the_column():
    sequences = _sequences([[1, 2, 3]])
    users = pd.DataFrame({"user_id": [1], "age": ["old"]})
    with pytest.raises(DataError, match="column 'age'"):
        profile_split(sequences, users, {"age": TASKS["age"]}, RATIOS, 0, 1, "t")


def test_movielens_100k_profiles(shared_data):
    users = pd.read_csv(
        shared_data / "movielens-100k" / "u.user",
        sep="|",
        names=["user_id", "age", "gender", "occupation", "zip"],
    )
    sequences = _sequences([[1, 2, 3]] * len(users), user_ids=users["user_id"])
    tasks = {**TASKS, "occupation": {"column": "occupation"}}
    table, classes = profile_split(sequences, users, tasks, RATIOS, 42, 20, "ml-100k")
    gender = table[table["task"] == "gender"]
    assert len(gender) == 943 and classes["gender"] == ["F", "M"]
    assert (gender["label"] == 0).sum() == 273
    counts = gender.groupby(["label", "split"]).size()
    assert counts[(0, "train")] == round(273 * 0.8) and counts[(1, "train")] == round(670 * 0.8)
    assert len(classes["occupation"]) == 21
