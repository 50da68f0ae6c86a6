"""Generic ingest refuses what would otherwise go silently wrong (issue 35, item 2).

Each test builds the bad file in ``tmp_path``, reads it as a user would (``ingest.format:
generic``) and asserts one line that names the problem: the column, the line or row, the
kind of file. Without these checks ``7``, ``007`` and ``0007`` became one user, a boolean id
column became users 1 and 0, a duplicated header or a column of seconds beside milliseconds
was read with rc 0, and a pipe or a file of NUL bytes got "file not found" or pyarrow's
"straddling object" message.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clue_pipeline.data.errors import DataError
from clue_pipeline.data.readers import known_formats, read_dataset
from clue_pipeline.data.validation import parse_ingest_params

COLUMNS = {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp"}


def _read(path: Path, **generic):
    block = {"columns": COLUMNS} | generic
    params = {"format": "generic", "path": str(path), "generic": block}
    return read_dataset(parse_ingest_params(params, known_formats()))


def _refused(path: Path, *fragments: str, **generic) -> DataError:
    with pytest.raises(DataError) as info:
        _read(path, **generic)
    text = str(info.value)
    assert "\n" not in text and len(text) < 2000, text
    for fragment in fragments:
        assert fragment in text, text
    return info.value


def _csv(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_ids_with_leading_zeros_are_refused_not_merged(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,timestamp\n7,1,10\n007,2,11\n0007,3,12\n")
    error = _refused(path, "line 3", "column 'user_id'", "'007'", "leading zeros", "string_ids")
    assert error.line == 3


def test_string_ids_keep_each_spelling_its_own_id(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,timestamp\n7,a,10\n007,b,11\n0007,a,12\n7,b,13\n")
    raw = _read(path, string_ids=True)
    assert raw.interactions["user_id"].nunique() == 3
    assert raw.interactions["user_id"].dtype == "int64"
    users = dict(zip(raw.users["source_user_id"], raw.users["user_id"], strict=True))
    assert sorted(users) == ["0007", "007", "7"]
    assert raw.interactions["user_id"].tolist() == [
        users["7"],
        users["007"],
        users["0007"],
        users["7"],
    ]
    assert sorted(raw.items["source_item_id"]) == ["a", "b"]


def test_non_integer_ids_are_refused_unless_string_ids(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,timestamp\n1,sku-9,10\n")
    _refused(path, "line 2", "column 'item_id'", "'sku-9'", "string_ids")
    assert _read(path, string_ids=True).items["source_item_id"].tolist() == ["sku-9"]


def test_string_ids_must_be_a_boolean(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,timestamp\n1,1,10\n")
    _refused(path, "ingest.generic.string_ids", "'yes'", string_ids="yes")


def test_parquet_text_ids_with_leading_zeros_are_refused(tmp_path):
    path = tmp_path / "events.parquet"
    table = pa.table({"user_id": ["1", "01"], "item_id": [1, 2], "timestamp": [10, 11]})
    pq.write_table(table, path)
    _refused(path, "row 2", "column 'user_id'", "'01'", "leading zeros")


def test_duplicated_header_is_refused_naming_the_column(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,user_id,timestamp\n1,2,3,10\n")
    _refused(path, "line 1", "column 'user_id'", "appears 2 times", "fields 1, 3")


def test_duplicated_parquet_column_is_refused(tmp_path):
    path = tmp_path / "events.parquet"
    arrays = [pa.array([1]), pa.array([2]), pa.array([3]), pa.array([10])]
    table = pa.Table.from_arrays(arrays, names=["user_id", "item_id", "item_id", "timestamp"])
    pq.write_table(table, path)
    _refused(path, "column 'item_id'", "appears 2 times")


def test_boolean_parquet_ids_are_refused_naming_the_column(tmp_path):
    path = tmp_path / "events.parquet"
    table = pa.table({"user_id": [True, False], "item_id": [1, 2], "timestamp": [10, 11]})
    pq.write_table(table, path)
    _refused(path, "column 'user_id'", "booleans")
    _refused(path, "column 'user_id'", "booleans", string_ids=True)


def test_timestamps_mixing_seconds_and_milliseconds_are_refused(tmp_path):
    rows = ["1,1,1577836800", "1,2,1577836900", "2,1,1577837000000", "2,2,1577837100"]
    path = _csv(tmp_path, "user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    error = _refused(path, "line 4", "column 'timestamp'", "milliseconds", "seconds", "line 2")
    assert error.column == "timestamp"


def test_ordinal_and_single_unit_timestamps_pass(tmp_path):
    small = _csv(tmp_path, "user_id,item_id,timestamp\n1,1,1\n1,2,2\n", "small.csv")
    assert len(_read(small).interactions) == 2
    millis = _csv(tmp_path, "user_id,item_id,timestamp\n1,1,1577836800000\n1,2,5\n", "ms.csv")
    assert len(_read(millis).interactions) == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_fifo_is_named_not_file_not_found(tmp_path):
    path = tmp_path / "events.csv"
    os.mkfifo(path)
    error = _refused(path, "named pipe (FIFO)", "not a regular file")
    assert "not found" not in str(error)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_symlink_to_a_device_is_named(tmp_path):
    path = tmp_path / "events.csv"
    path.symlink_to("/dev/zero")
    assert stat.S_ISCHR(os.stat(path).st_mode)
    _refused(path, "character device", "/dev/zero", "not a regular file")


def test_all_nul_file_gets_one_line_reason(tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(b"\x00" * (3 << 20))
    error = _refused(path, "NUL", "binary data", "line 1")
    assert "straddl" not in str(error)


def test_all_nul_s3rec_file_gets_one_line_reason(tmp_path):
    path = tmp_path / "sequences.txt"
    path.write_bytes(b"\x00" * (1 << 20))
    params = {"format": "s3rec", "path": str(path)}
    with pytest.raises(DataError, match="NUL") as info:
        read_dataset(parse_ingest_params(params, known_formats()))
    assert "straddl" not in str(info.value)


def test_million_column_header_error_is_cut(tmp_path):
    names = ",".join(f"c{i}" for i in range(1_000_000))
    path = _csv(tmp_path, names + "\n1,2,3\n")
    error = _refused(path, "column 'user_id'", "is missing", "1000000 in all")
    assert len(str(error)) < 1000
