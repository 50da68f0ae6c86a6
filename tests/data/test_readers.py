"""Every reader returns the three contract tables with the contract's dtypes."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clue_pipeline.data.errors import DataError
from clue_pipeline.data.readers import RawDataset, known_formats, read_dataset
from clue_pipeline.data.validation import parse_ingest_params


def _read(fmt: str, path: Path, **extra) -> RawDataset:
    params = {"format": fmt, "path": str(path), **extra}
    return read_dataset(parse_ingest_params(params, known_formats()))


def _assert_event_dtypes(interactions: pd.DataFrame) -> None:
    for name in ("user_id", "item_id", "timestamp"):
        assert interactions[name].dtype == np.int64, name
    if "rating" in interactions:
        assert interactions["rating"].dtype == np.float64


def test_registry_lists_every_format():
    assert set(known_formats()) == {
        "generic",
        "ml-100k",
        "ml-1m",
        "ml-1m-partial",
        "ml-latest-small",
        "peterrec",
        "s3rec",
    }


def test_embedded_ml_latest_small(embedded_data):
    raw = _read("ml-latest-small", embedded_data)
    _assert_event_dtypes(raw.interactions)
    assert list(raw.interactions.columns) == ["user_id", "item_id", "timestamp", "rating"]
    assert len(raw.interactions) == 100_836
    assert raw.interactions["user_id"].nunique() == 610
    assert list(raw.users.columns) == ["user_id"] and len(raw.users) == 610
    assert raw.items["item_id"].dtype == np.int64 and len(raw.items) == 9_742
    # CRLF files: no carriage return survives in the last column
    assert not raw.items["genres"].str.contains("\r").any()
    assert not raw.items["genres"].str.contains("no genres listed").any()
    toy = raw.items.set_index("item_id").loc[1]
    assert toy["title"] == "Toy Story (1995)"
    assert toy["genres"] == "Adventure|Animation|Children|Comedy|Fantasy"
    # quoted titles with commas stay whole
    assert raw.items["title"].str.contains(", The").any()


def test_ml_100k_latin1_items_and_genre_flags(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text("1\t2\t5\t881250949\n2\t1\t3\t891717742\n")
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    (folder / "u.genre").write_text("unknown|0\nAction|1\nComedy|2\n\n")
    items = "1|Caf\xe9 (1995)|01-Jan-1995||http://x|0|1|1\n2|Plain (1996)|||http://y|1|0|0\n"
    (folder / "u.item").write_bytes(items.encode("latin-1"))
    raw = _read("ml-100k", folder)
    _assert_event_dtypes(raw.interactions)
    assert raw.interactions["rating"].tolist() == [5.0, 3.0]
    assert raw.users["zip_code"].tolist() == ["85711", "T8H1N"]
    assert raw.users["age"].dtype == np.int64
    assert raw.items["title"].tolist() == ["Café (1995)", "Plain (1996)"]
    assert raw.items["genres"].tolist() == ["Action|Comedy", "unknown"]


def _write_ml1m_meta(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users.dat").write_text(
        "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n"
    )
    movies = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Caf\xe9: A Tale (1995)::Drama\n"
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))


def test_ml_1m_double_colon_separated(tmp_path):
    folder = tmp_path / "ml-1m"
    _write_ml1m_meta(folder)
    (folder / "ratings.dat").write_text("1::1::5::978300760\n2::2::3::978302109\n")
    raw = _read("ml-1m", folder)
    _assert_event_dtypes(raw.interactions)
    assert raw.interactions["item_id"].tolist() == [1, 2]
    assert raw.users["gender"].tolist() == ["F", "M", "M"]
    assert raw.users["occupation"].dtype == np.int64
    assert raw.items["title"].tolist()[1] == "Café: A Tale (1995)"
    assert raw.items["genres"].tolist()[0] == "Animation|Children's|Comedy"


def test_ml_1m_bad_line_is_reported_with_its_number(tmp_path):
    folder = tmp_path / "ml-1m"
    _write_ml1m_meta(folder)
    (folder / "ratings.dat").write_text("1::1::5::978300760\n2::2::3\n")
    with pytest.raises(DataError) as info:
        _read("ml-1m", folder)
    assert info.value.line == 2 and "found 3 field(s) separated by '::'" in str(info.value)


def test_ml_1m_partial_scopes(tmp_path):
    parent = tmp_path / "movielens-1m"
    _write_ml1m_meta(parent)
    partial = parent / "partial"
    partial.mkdir()
    with gzip.open(partial / "cs100_lab4_ratings.dat.gz", "wt") as handle:
        handle.write("1::1::5::978300760\n1::2::3::978302109\n2::1::4::978300000\n")
    pairs = pa.table({"userID": ["1", "1", "2", "3"], "movieID": ["1", "2", "1", "2"]})
    pq.write_table(pairs, partial / "user_movie_pairs_fileorder.parquet")

    timed = _read("ml-1m-partial", partial)
    _assert_event_dtypes(timed.interactions)
    assert timed.interactions["timestamp"].tolist() == [978300760, 978302109, 978300000]
    assert timed.users["user_id"].tolist() == [1, 2]  # only users with events

    every = _read("ml-1m-partial", partial, ml1m_partial={"scope": "all_users"})
    _assert_event_dtypes(every.interactions)
    assert every.interactions["timestamp"].tolist() == [0, 1, 2, 3]
    assert "rating" not in every.interactions
    assert every.users["user_id"].tolist() == [1, 2, 3]


def test_s3rec_positions_are_time(tmp_path):
    path = tmp_path / "Beauty.txt"
    path.write_text("1 5 6 7\n\n2 6 5 \n3 9 9\n")
    raw = _read("s3rec", path)
    _assert_event_dtypes(raw.interactions)
    events = raw.interactions
    assert events["user_id"].tolist() == [1, 1, 1, 2, 2, 3, 3]
    assert events["item_id"].tolist() == [5, 6, 7, 6, 5, 9, 9]
    assert events["timestamp"].tolist() == [0, 1, 2, 0, 1, 0, 1]
    assert raw.items["item_id"].tolist() == [5, 6, 7, 9]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("1 5 6\n\n2 6 x5\n", 3, "item 3: 'x5' is not an integer id"),
        ("1 5 6\n2\n", 2, "a user without items"),
    ],
)
def test_s3rec_bad_lines(tmp_path, text, line, message):
    path = tmp_path / "seq.txt"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        _read("s3rec", path)
    assert info.value.line == line and message in str(info.value)


def test_peterrec_padding_and_target_items(tmp_path):
    path = tmp_path / "finetune.csv"
    path.write_text("0,0,11,12,13,,101,102\n0,14,15,16,17,,103\n21,22,23,24,25\n")
    raw = _read("peterrec", path)
    _assert_event_dtypes(raw.interactions)
    events = raw.interactions
    first = events[events["user_id"] == 1]
    assert first["item_id"].tolist() == [11, 12, 13, 101, 102]
    assert first["timestamp"].tolist() == [2, 3, 4, 5, 6]
    assert first["domain"].tolist() == ["source"] * 3 + ["target"] * 2
    assert (events["item_id"] != 0).all()
    assert events.loc[events["domain"] == "target", "item_id"].tolist() == [101, 102, 103]
    assert raw.users["user_id"].tolist() == [1, 2, 3]


def test_peterrec_labels(tmp_path):
    path = tmp_path / "gender.csv"
    path.write_text("0,11,12,,1\n13,14,15,,0\n")
    raw = _read("peterrec", path, peterrec={"targets": "label"})
    assert raw.users["label"].tolist() == [1, 0]
    assert raw.users["label"].dtype == np.int64
    assert set(raw.interactions["domain"]) == {"source"}
    path.write_text("0,11,12,,1\n13,14,15,,0,1\n")
    with pytest.raises(DataError) as info:
        _read("peterrec", path, peterrec={"targets": "label"})
    assert info.value.line == 2 and "2 labels" in str(info.value)


def test_peterrec_demo_file(shared_data):
    demo = shared_data / "peterrec-demo"
    finetune = demo / "history_sequences_20181014_fajie_transfer_finetune_small.csv"
    raw = _read("peterrec", finetune)
    _assert_event_dtypes(raw.interactions)
    assert raw.interactions["user_id"].nunique() == 30
    targets = raw.interactions[raw.interactions["domain"] == "target"]
    per_user = targets.groupby("user_id").size()
    assert per_user.between(1, 3).all() and len(per_user) == 30
    assert targets[targets["user_id"] == 1]["item_id"].tolist() == [1845, 1846, 1844]
    with pytest.raises(DataError, match="exactly one label"):
        _read("peterrec", finetune, peterrec={"targets": "label"})


def test_generic_csv_with_column_mapping(tmp_path):
    events = tmp_path / "log.csv"
    events.write_text("who;what;when;stars;extra\n7;70;3;4.5;x\n7;71;1;3;y\n8;70;2;1;z\n")
    users = tmp_path / "people.csv"
    users.write_text("uid,sex\n7,F\n8,M\n")
    items = tmp_path / "things.csv"
    items.write_text('iid,name,cats\n70,"Thing, big",A|B\n71,Other,C\n')
    generic = {
        "columns": {"user_id": "who", "item_id": "what", "timestamp": "when", "rating": "stars"},
        "sep": ";",
        "users": {"path": str(users), "columns": {"user_id": "uid", "gender": "sex"}},
        "items": {
            "path": str(items),
            "columns": {"item_id": "iid", "title": "name", "genres": "cats"},
        },
    }
    raw = _read("generic", events, generic=generic)
    _assert_event_dtypes(raw.interactions)
    assert list(raw.interactions.columns) == ["user_id", "item_id", "timestamp", "rating"]
    assert raw.interactions["timestamp"].tolist() == [3, 1, 2]
    assert raw.users.to_dict("list") == {"user_id": [7, 8], "gender": ["F", "M"]}
    assert raw.items["title"].tolist() == ["Thing, big", "Other"]


def test_generic_parquet_casts_and_file_order(tmp_path):
    path = tmp_path / "log.parquet"
    stamps = pd.to_datetime(["2020-01-01", "2020-01-02"]).as_unit("ms")
    table = pa.table({"u": ["1", "2"], "i": [10.0, 11.0], "t": pa.array(stamps)})
    pq.write_table(table, path)
    columns = {"user_id": "u", "item_id": "i", "timestamp": "t"}
    raw = _read("generic", path, generic={"columns": columns})
    _assert_event_dtypes(raw.interactions)
    assert raw.interactions["timestamp"].tolist() == [1577836800, 1577923200]
    raw = _read("generic", path, generic={"columns": {"user_id": "u", "item_id": "i"}})
    assert raw.interactions["timestamp"].tolist() == [0, 1]


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("u", ["1", "b2"], "row 2, column 'u': 'b2' is not a non-negative integer"),
        ("i", [1.0, 1.5], "row 2, column 'i': 1.5 is not a whole number"),
        ("i", [1.0, None], "row 2, column 'i': missing value"),
        ("u", ["1", "-3"], "row 2, column 'u': '-3' is not a non-negative integer"),
    ],
)
def test_generic_parquet_bad_values_name_the_row(tmp_path, column, values, message):
    data = {"u": ["1", "2"], "i": [1.0, 2.0]} | {column: values}
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table(data), path)
    with pytest.raises(DataError, match=message):
        _read("generic", path, generic={"columns": {"user_id": "u", "item_id": "i"}})


def test_generic_missing_column_lists_the_file_columns(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"u": [1], "i": [2]}), path)
    columns = {"user_id": "u", "item_id": "item"}
    with pytest.raises(DataError, match=r"column 'item' \(for item_id\) is missing.*\['u', 'i'\]"):
        _read("generic", path, generic={"columns": columns})
