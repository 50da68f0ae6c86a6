"""Bad input is refused before anything is written, saying where and what was expected."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clue_pipeline.data import csv_diagnosis, validation
from clue_pipeline.data.errors import DataError
from clue_pipeline.data.readers import known_formats, read_dataset
from clue_pipeline.data.validation import (
    check_contract,
    drop_duplicate_events,
    parse_ingest_params,
)

RATINGS_HEADER = "userId,movieId,rating,timestamp\n"
MOVIES = 'movieId,title,genres\n1,A (1995),Comedy\n2,"B, The (1996)",Drama\n'


def _ml_small(tmp_path: Path, ratings: str) -> Path:
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_text(ratings)
    (folder / "movies.csv").write_text(MOVIES)
    return folder


def _read(fmt: str, path: Path, **extra):
    return read_dataset(
        parse_ingest_params({"format": fmt, "path": str(path), **extra}, known_formats())
    )


def _ml100k(tmp_path: Path, u_data: str) -> Path:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text(u_data)
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    (folder / "u.genre").write_text("unknown|0\nComedy|1\n\n")
    (folder / "u.item").write_bytes(
        "1|Caf\xe9 (1995)|01-Jan-1995||http://x|0|1\n".encode("latin-1")
    )
    return folder


def test_wrong_field_count_names_the_line(tmp_path):
    folder = _ml100k(tmp_path, "1\t1\t5\t881250949\n2\t1\t4\n")
    with pytest.raises(DataError) as info:
        _read("ml-100k", folder)
    err = info.value
    assert err.line == 2 and err.file.endswith("u.data")
    assert "found 3 field(s)" in str(err) and "user_id\titem_id" in str(err)


def test_blank_lines_do_not_shift_line_numbers(tmp_path):
    folder = _ml100k(tmp_path, "1\t1\t5\t881250949\n\n\n2\t1\tx\t881250950\n")
    with pytest.raises(DataError) as info:
        _read("ml-100k", folder)
    assert info.value.line == 4
    assert info.value.column == "rating"
    assert "'x' is not a number" in str(info.value)


def test_comma_file_read_as_tab_hints_the_separator(tmp_path):
    folder = _ml100k(tmp_path, "1,1,5,881250949\n")
    with pytest.raises(DataError, match=r"line 1: found 1 field.*looks ','-separated, not '\\t'"):
        _read("ml-100k", folder)


def test_non_numeric_id_names_line_and_column(tmp_path):
    folder = _ml_small(tmp_path, RATINGS_HEADER + "1,1,4.0,964982703\n1,abc,4.0,964981247\n")
    with pytest.raises(DataError) as info:
        _read("ml-latest-small", folder)
    assert (info.value.line, info.value.column) == (3, "movieId")
    assert "'abc' is not a non-negative integer" in str(info.value)


def test_negative_id_and_timestamp_are_refused(tmp_path):
    folder = _ml_small(tmp_path, RATINGS_HEADER + "1,1,4.0,964982703\n-7,2,4.0,1\n")
    with pytest.raises(DataError) as info:
        _read("ml-latest-small", folder)
    assert (info.value.line, info.value.column) == (3, "userId")
    assert "negative value -7" in str(info.value)
    (folder / "ratings.csv").write_text(RATINGS_HEADER + "1,1,4.0,-5\n")
    with pytest.raises(DataError, match=r"line 2, column 'timestamp': negative value -5"):
        _read("ml-latest-small", folder)


def test_missing_values_and_nan_are_refused(tmp_path):
    folder = _ml_small(tmp_path, RATINGS_HEADER + "1,1,4.0,964982703\n1,2,,964982704\n")
    with pytest.raises(DataError, match=r"ratings.csv, line 3, column 'rating': missing value"):
        _read("ml-latest-small", folder)
    (folder / "ratings.csv").write_text(RATINGS_HEADER + "1,1,4.0,1\n\n1,2,NaN,2\n")
    with pytest.raises(DataError) as info:
        _read("ml-latest-small", folder)
    assert (info.value.line, info.value.column) == (4, "rating")


def test_missing_column_lists_the_header(tmp_path):
    folder = _ml_small(tmp_path, "userId,movieId,rating\n1,1,4.0\n")
    with pytest.raises(DataError) as info:
        _read("ml-latest-small", folder)
    assert info.value.column == "timestamp" and info.value.line == 1
    assert "['userId', 'movieId', 'rating']" in str(info.value)


def test_unknown_format_lists_the_known_ones(tmp_path):
    with pytest.raises(DataError) as info:
        parse_ingest_params({"format": "csvv", "path": str(tmp_path)}, known_formats())
    assert info.value.parameter == "ingest.format"
    for name in ("generic", "ml-100k", "ml-1m-partial", "peterrec", "s3rec"):
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"duplicates": "keep_some"}, "ingest.duplicates"),
        ({"duplicate_key": ["user_id"]}, "ingest.duplicate_key"),
        ({"ml1m_partial": {"scope": "everything"}}, "ingest.ml1m_partial.scope"),
        ({"peterrec": {"targets": "both"}}, "ingest.peterrec.targets"),
        ({"path": None}, "ingest.path"),
        ({"format": "generic", "generic": {"columns": {"user_id": "u"}}}, "ingest.generic.columns"),
        ({"format": "generic", "generic": {"columns": "u,i"}}, "ingest.generic.columns"),
        (
            {
                "format": "generic",
                "generic": {"columns": {"user_id": "u", "item_id": "i"}, "sep": ""},
            },
            "ingest.generic.sep",
        ),
    ],
)
def test_absurd_parameters_name_the_parameter(tmp_path, params, parameter):
    with pytest.raises(DataError) as info:
        parse_ingest_params({"format": "ml-100k", "path": str(tmp_path), **params}, known_formats())
    assert info.value.parameter == parameter


def test_missing_path_names_the_parameter(tmp_path):
    with pytest.raises(DataError, match=r"ingest.path.*does not exist"):
        _read("ml-100k", tmp_path / "nowhere")


def _events(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"]).astype(
        {"user_id": "int64", "item_id": "int64", "timestamp": "int64", "rating": "float64"}
    )


def test_duplicates_keep_last_keep_first_and_error(caplog):
    events = _events([(1, 1, 10, 1.0), (1, 2, 11, 2.0), (1, 1, 10, 3.0), (2, 1, 10, 4.0)])
    key = ("user_id", "item_id", "timestamp")
    with caplog.at_level("INFO"):
        last = drop_duplicate_events(events, "keep_last", key, "f.csv")
    assert last["rating"].tolist() == [2.0, 3.0, 4.0]
    assert "dropped 1 duplicate" in caplog.text
    first = drop_duplicate_events(events, "keep_first", key, "f.csv")
    assert first["rating"].tolist() == [1.0, 2.0, 4.0]
    with pytest.raises(DataError) as info:
        drop_duplicate_events(events, "error", key, "f.csv")
    assert "user_id=1, item_id=1, timestamp=10 at events 1 and 3" in str(info.value)
    assert drop_duplicate_events(events.iloc[[0, 1, 3]], "error", key, "f.csv").shape[0] == 3


def test_duplicates_in_a_file_follow_the_policy(tmp_path):
    rows = "1,1,4.0,964982703\n1,1,2.0,964982703\n"
    folder = _ml_small(tmp_path, RATINGS_HEADER + rows)
    raw = _read("ml-latest-small", folder)
    assert (
        len(
            drop_duplicate_events(
                raw.interactions, "keep_last", ("user_id", "item_id", "timestamp"), "x"
            )
        )
        == 1
    )


def test_empty_result_is_an_error(tmp_path):
    folder = _ml_small(tmp_path, RATINGS_HEADER)
    from clue_pipeline.pipelines.ingest.nodes import validate_dataset

    raw = _read("ml-latest-small", folder)
    params = {"format": "ml-latest-small", "path": str(folder)}
    with pytest.raises(DataError, match="no interactions left"):
        validate_dataset(raw.interactions, raw.users, raw.items, params)


def test_contract_dtypes_are_checked():
    events = _events([(1, 1, 10, 1.0)]).astype({"timestamp": "float64"})
    users = pd.DataFrame({"user_id": [1]})
    items = pd.DataFrame({"item_id": [1]})
    with pytest.raises(DataError, match=r"column 'timestamp'.*float64.*expected int64"):
        check_contract(events, users, items)


@pytest.mark.parametrize("keep", ["first", "last"])
def test_duplicate_mask_matches_pandas(keep, monkeypatch):
    rng = np.random.default_rng(7)
    n = 5_000
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, n),
            "item_id": rng.integers(0, 30, n),
            "timestamp": rng.integers(0, 3, n),
            "rating": rng.choice([-0.0, 0.0, 1.5], n),
            "domain": rng.choice(["source", "target"], n),
        }
    )
    key = ["user_id", "item_id", "timestamp", "rating", "domain"]
    expected = frame.duplicated(subset=key, keep=keep).to_numpy()
    assert 0 < expected.sum() < n
    np.testing.assert_array_equal(validation.duplicate_mask(frame, key, keep), expected)
    # every row colliding on the digest: the exact comparison still decides
    monkeypatch.setattr(validation, "row_digest", lambda f, k: np.zeros(len(f), dtype=np.uint64))
    np.testing.assert_array_equal(validation.duplicate_mask(frame, key, keep), expected)


def test_undecodable_byte_names_line_and_encoding(tmp_path):
    events = tmp_path / "log.csv"
    events.write_text("u,i,t\n1,2,3\n")
    items = tmp_path / "items.csv"
    items.write_bytes(b"iid,name\n1,Plain\n2,Caf\xe9\n")
    generic = {
        "columns": {"user_id": "u", "item_id": "i", "timestamp": "t"},
        "items": {"path": str(items), "columns": {"item_id": "iid", "title": "name"}},
    }
    with pytest.raises(DataError) as info:
        _read("generic", events, generic=generic)
    assert info.value.line == 3 and "byte 0xe9 cannot be decoded as utf-8" in str(info.value)
    generic["items"]["encoding"] = "latin-1"
    assert _read("generic", events, generic=generic).items["title"].tolist() == ["Plain", "Café"]


def test_line_numbers_hold_across_streamed_blocks(tmp_path, monkeypatch):
    """Diagnosis streams the file in blocks; shrink them so a few lines span many blocks."""
    monkeypatch.setattr(csv_diagnosis, "BLOCK_BYTES", 64)
    rows = [f"{u},{u % 7},4.0,{1000 + u}\n" + ("\n" if u % 5 == 0 else "") for u in range(1, 60)]
    folder = _ml_small(tmp_path, RATINGS_HEADER + "".join(rows) + "3,x,4.0,1\n")
    with pytest.raises(DataError) as info:
        _read("ml-latest-small", folder)
    assert info.value.line == 1 + 59 + 11 + 1  # header, rows, blank lines, the bad one
    rows[-1] = "-59,1,4.0,1\n"
    (folder / "ratings.csv").write_text(RATINGS_HEADER + "".join(rows))
    with pytest.raises(DataError) as info:
        _read("ml-latest-small", folder)
    assert (info.value.line, info.value.column) == (1 + 58 + 11 + 1, "userId")
    text = "u,i,t\n" + "1,2,3\n" * 20 + "4,é,5\n"  # the bad bytes sit in a later block
    events = tmp_path / "log.csv"
    events.write_bytes(text.encode("utf-8").replace("é".encode(), b"\xe9\xe9"))
    with pytest.raises(DataError) as info:
        _read("generic", events, generic={"columns": {"user_id": "u", "item_id": "i"}})
    assert info.value.line == 22 and "0xe9" in str(info.value)


def test_count_missing_counts_distinct_keys():
    users = pd.DataFrame({"user_id": [1, 2]})
    assert validation.count_missing(pd.Series([1, 3, 3, 4, 2]), users, "user_id") == 2
    assert validation.count_missing(pd.Series([1, 1]), users, "user_id") == 0
