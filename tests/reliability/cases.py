"""The table of bad inputs, and how one runs through the real ingest and sequences pipelines.

Each case writes its files under ``data/01_raw/bad/`` of a sandbox project, points the
parameters at them and runs the project's own pipelines (its conf/, its catalog, Kedro's
``SequentialRunner``). A case states the error it must end in and the fragments the message
must hold: the file, and the line, column or parameter at fault. The benchmark
``benchmarks/reliability_figure.py`` runs the same table to publish the figure in the README.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gzip
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from clue_pipeline.config import encoder_config, train_config
from clue_pipeline.data.errors import DataError
from clue_pipeline.pipelines.ingest import create_pipeline as ingest_pipeline
from clue_pipeline.pipelines.sequences import create_pipeline as sequences_pipeline
from tests.conftest import EMBEDDED_DATA, REPO_ROOT

BAD = "data/01_raw/bad"
EVENTS_HEADER = b"user_id,item_id,timestamp,rating\n"
GENERIC_COLUMNS = {"user_id": "user_id", "item_id": "item_id", "timestamp": "timestamp"}
NOBODY_UID = 65534
MESSAGE_CHARS = 500  # a clear error is one line a terminal shows whole, whatever the input
UNREADABLE = Path(tempfile.gettempdir()) / f"clue-reliability-{os.getpid()}" / "unreadable.txt"


@dataclass(frozen=True)
class Case:
    """One bad input: files to write, parameters that point at them, and what must happen.

    ``files`` maps paths relative to the sandbox to bytes; ``prepare`` makes what bytes cannot
    (folders, symbolic links, permissions). ``ingest`` and ``params`` override the project's
    parameters. ``check`` runs instead of the pipelines for parameter blocks consumed later
    than ingest. ``error`` None marks an input that must be read correctly instead.
    """

    name: str
    error: type[Exception] | None
    fragments: tuple[str, ...]
    files: dict[str, bytes] = field(default_factory=dict)
    ingest: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None
    check: Callable[[], Any] | None = None
    sequences: bool = False
    as_nobody: bool = False
    accepted: Callable[[dict[str, pd.DataFrame]], None] | None = None


def s3rec(name: str, text: bytes, error, *fragments: str, **extra) -> Case:
    """``names_file=False`` for errors about parameters, which name the parameter instead."""
    path = f"{BAD}/{name}.txt"
    file_fragment = (f"{name}.txt",) if extra.pop("names_file", True) else ()
    return Case(
        f"s3rec: {name}",
        error,
        (*file_fragment, *fragments),
        files={path: text},
        ingest={"format": "s3rec", "path": path},
        **extra,
    )


def peterrec(name: str, text: bytes, error, *fragments: str, **extra) -> Case:
    path = f"{BAD}/{name}.csv"
    return Case(
        f"peterrec: {name}",
        error,
        (f"{name}.csv", *fragments),
        files={path: text},
        ingest={"format": "peterrec", "path": path, **extra.pop("ingest", {})},
        **extra,
    )


def generic(name: str, text: bytes, error, *fragments: str, **extra) -> Case:
    suffix = extra.pop("suffix", ".csv")
    path = f"{BAD}/{name}{suffix}"
    columns = dict(GENERIC_COLUMNS)
    if b"rating" in text.split(b"\n", 1)[0]:
        columns["rating"] = "rating"
    return Case(
        f"generic: {name}",
        error,
        (f"{name}{suffix}", *fragments),
        files={path: text},
        ingest=_merge(
            {"format": "generic", "path": path, "generic": {"columns": columns}},
            extra.pop("ingest", {}),
        ),
        **extra,
    )


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _events(*rows: str) -> bytes:
    return EVENTS_HEADER + "".join(f"{row}\n" for row in rows).encode()


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    with tempfile.NamedTemporaryFile(suffix=".parquet") as handle:
        frame.to_parquet(handle.name, index=False)
        return Path(handle.name).read_bytes()


def _movielens_folder(ratings: bytes) -> dict[str, bytes]:
    movies = (EMBEDDED_DATA / "movies.csv").read_bytes()
    return {f"{BAD}/ml/ratings.csv": ratings, f"{BAD}/ml/movies.csv": movies}


def _symlink_loop(root: Path) -> None:
    folder = root / BAD
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loop-a.txt").symlink_to(folder / "loop-b.txt")
    (folder / "loop-b.txt").symlink_to(folder / "loop-a.txt")


def _fifo(root: Path) -> None:
    """A named pipe: opening it would wait for a writer forever."""
    folder = root / BAD
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.csv")


def _link_to_dev_zero(root: Path) -> None:
    """Endless NUL bytes behind an ordinary-looking name."""
    folder = root / BAD
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dev-zero.csv").symlink_to("/dev/zero")


def _unreadable(root: Path) -> None:
    """A file nobody may read, in a folder everybody may enter (the sandbox itself is 0700)."""
    UNREADABLE.parent.mkdir(exist_ok=True)
    UNREADABLE.parent.chmod(0o755)
    UNREADABLE.write_bytes(b"1 2 3 4 5 6\n")
    UNREADABLE.chmod(0)


def _kept(expected_rows: int) -> Callable[[dict[str, pd.DataFrame]], None]:
    def check(outputs: dict[str, pd.DataFrame]) -> None:
        events = outputs["interactions"]
        assert len(events) == expected_rows, f"{len(events)} events kept, not {expected_rows}"
        assert str(events["user_id"].dtype) == "int64"

    return check


def _distinct_spellings(outputs: dict[str, pd.DataFrame]) -> None:
    """Under ``string_ids``, 7, 007 and 0007 are three users, each kept under its own text."""
    users = dict(zip(outputs["users"]["source_user_id"], outputs["users"]["user_id"], strict=True))
    assert sorted(users) == ["0007", "007", "7"], sorted(users)
    spelt = [users[text] for text in ("7", "007", "0007")]
    assert outputs["interactions"]["user_id"].tolist() == spelt


def _same_as_plain(outputs: dict[str, pd.DataFrame]) -> None:
    events = outputs["interactions"]
    assert events["user_id"].tolist() == [1, 1, 2]
    assert events["item_id"].tolist() == [10, 11, 12]


_ONE_EVENT_USERS = "".join(f"{user} {user + 100}\n" for user in range(1, 40)).encode()
_DUPLICATED = _events("1,10,5,4.0", "1,10,5,3.0", "2,11,6,2.0")
_LEADING_ZEROS = b"user_id,item_id,timestamp\n7,1,10\n007,2,11\n0007,3,12\n"
_SECONDS_THEN_MILLISECONDS = (
    b"user_id,item_id,timestamp\n1,1,1577836800\n1,2,1577836900\n2,1,1577837000000\n"
)
_WIDE_HEADER = ",".join(f"c{i}" for i in range(200_000)).encode() + b"\n1,2,3\n"
_LONG_NAME = f"{BAD}/{'a' * 300}.csv"  # over the 255 bytes a file name may have

CASES: list[Case] = [
    # --- S3-Rec: one user per line, ids separated by spaces ---------------------------------
    s3rec("empty", b"", DataError, "empty"),
    s3rec("blank-lines", b"\n   \n\t\n", DataError, "only blank lines"),
    s3rec("binary", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00", DataError, "line 1", "decoded"),
    s3rec("all-nul", b"\x00" * (3 << 20), DataError, "line 1", "NUL bytes"),
    s3rec("latin-1", b"1 2 3\n2 caf\xe9 4\n", DataError, "line 2", "0xe9", "utf-8"),
    s3rec("comma-separated", b"1,2,3\n", DataError, "line 1", "','-separated"),
    s3rec("non-integer-id", b"1 2 3\n2 x7 4\n", DataError, "line 2", "'x7'"),
    s3rec("negative-id", b"1 2 3\n2 -4 5\n", DataError, "line 2", "'-4'"),
    s3rec("overflowing-id", b"1 2 99999999999999999999\n", DataError, "line 1", "64-bit"),
    s3rec("user-without-items", b"1 2 3\n\n7\n", DataError, "line 3", "without items"),
    s3rec(
        "every-user-one-event",
        _ONE_EVENT_USERS,
        DataError,
        "sequences.min_seq_len",
        sequences=True,
        names_file=False,
    ),
    s3rec(
        "absurd-min-seq-len",
        b"1 2 3 4 5 6\n",
        DataError,
        "sequences.min_seq_len",
        "-3",
        params={"sequences": {"min_seq_len": -3}},
        sequences=True,
        names_file=False,
    ),
    Case(
        "s3rec: symbolic link loop",
        DataError,
        ("loop-a.txt", "symbolic link loop", "ingest.path"),
        ingest={"format": "s3rec", "path": f"{BAD}/loop-a.txt"},
        prepare=_symlink_loop,
    ),
    Case(
        "s3rec: folder given for a file",
        DataError,
        ("bad/folder", "is a folder", "ingest.path"),
        files={f"{BAD}/folder/1.txt": b"1 2 3\n"},
        ingest={"format": "s3rec", "path": f"{BAD}/folder"},
    ),
    Case(
        "s3rec: unreadable permissions",
        DataError,
        ("unreadable.txt", "Permission denied"),
        ingest={"format": "s3rec", "path": str(UNREADABLE)},
        prepare=_unreadable,
        as_nobody=True,
    ),
    Case(
        "s3rec: path does not exist",
        DataError,
        ("missing.txt", "does not exist", "ingest.path"),
        ingest={"format": "s3rec", "path": f"{BAD}/missing.txt"},
    ),
    # --- PeterRec: item,item,...[,,targets] -------------------------------------------------
    peterrec("empty", b"", DataError, "empty"),
    peterrec("non-integer", b"0,1,2,,5\n0,3,abc,,6\n", DataError, "line 2", "'abc'"),
    peterrec(
        "label-missing",
        b"0,1,2,,1\n0,3,4\n",
        DataError,
        "line 2",
        "ingest.peterrec.targets",
        ingest={"peterrec": {"targets": "label"}},
    ),
    peterrec("utf-16", "1,2,,3\n".encode("utf-16"), DataError, "line 1", "decoded"),
    # --- generic CSV / parquet event logs ---------------------------------------------------
    generic("empty", b"", DataError, "empty"),
    generic("blank-header", b"\n\n1,2,3\n", DataError, "line 1", "header line is blank"),
    generic("missing-column", b"user_id,item_id\n1,2\n", DataError, "line 1", "'timestamp'"),
    generic(
        "semicolons", b"user_id;item_id;timestamp\n1;2;3\n", DataError, "line 1", "';'-separated"
    ),
    generic("ragged-row", _events("1,2,3,4.0", "4,5"), DataError, "line 3", "found 2 field"),
    generic("non-integer-id", _events("1,abc,3,4.0"), DataError, "line 2", "column 'item_id'"),
    generic("negative-id", _events("1,2,3,4.0", "-1,2,3,4.0"), DataError, "line 3", "'user_id'"),
    generic(
        "overflowing-id",
        _events("99999999999999999999,2,3,4.0"),
        DataError,
        "line 2",
        "column 'user_id'",
        "64-bit",
    ),
    generic("missing-id", _events("1,,3,4.0"), DataError, "line 2", "column 'item_id'", "missing"),
    generic("nan-rating", _events("1,2,3,nan"), DataError, "line 2", "column 'rating'"),
    generic("inf-rating", _events("1,2,3,4.0", "1,3,4,inf"), DataError, "line 3", "infinite"),
    generic(
        "timestamp-as-text",
        _events("1,2,2021-01-05 10:00:00,4.0"),
        DataError,
        "line 2",
        "column 'timestamp'",
    ),
    generic("latin-1-row", _events("1,2,3,4.0") + b"2,3,4,5.0 \xe9\n", DataError, "line 3", "0xe9"),
    generic("binary", b"PK\x03\x04\x14\x00\x00\x00\xff\xd8\x00", DataError, "line 1", "decoded"),
    generic("gzip-of-nothing", gzip.compress(b""), DataError, "empty", suffix=".csv.gz"),
    generic(
        "parquet-text-ids",
        _parquet_bytes(
            pd.DataFrame({"user_id": ["1", "u2"], "item_id": [1, 2], "timestamp": [1, 2]})
        ),
        DataError,
        "row 2",
        "column 'user_id'",
        suffix=".parquet",
    ),
    generic(
        "duplicates-error",
        _DUPLICATED,
        DataError,
        "ingest.duplicates",
        "user_id=1, item_id=10",
        ingest={"duplicates": "error"},
    ),
    Case(
        "generic: folder given for a file",
        DataError,
        ("bad/events", "is a folder", "ingest.path"),
        files={f"{BAD}/events/part-0.csv": _events("1,2,3,4.0")},
        ingest={
            "format": "generic",
            "path": f"{BAD}/events",
            "generic": {"columns": {"user_id": "user_id", "item_id": "item_id"}},
        },
    ),
    # ids that would silently merge or change meaning, and files that are not event logs
    generic("leading-zeros", _LEADING_ZEROS, DataError, "line 3", "'007'", "string_ids"),
    generic(
        "boolean-ids",
        _parquet_bytes(
            pd.DataFrame({"user_id": [True, False], "item_id": [1, 2], "timestamp": [10, 11]})
        ),
        DataError,
        "column 'user_id'",
        "booleans",
        suffix=".parquet",
    ),
    generic(
        "duplicated-header",
        b"user_id,item_id,user_id,timestamp\n1,2,3,10\n",
        DataError,
        "line 1",
        "column 'user_id'",
        "appears 2 times",
    ),
    generic(
        "seconds-then-milliseconds",
        _SECONDS_THEN_MILLISECONDS,
        DataError,
        "line 4",
        "column 'timestamp'",
        "milliseconds",
    ),
    generic("all-nul", b"\x00" * (3 << 20), DataError, "line 1", "NUL bytes"),
    generic("wide-header", _WIDE_HEADER, DataError, "column 'user_id'", "(200000 in all)"),
    Case(
        "generic: named pipe (FIFO)",
        DataError,
        ("fifo.csv", "named pipe (FIFO)", "not a regular file"),
        ingest={"format": "generic", "path": f"{BAD}/fifo.csv"},
        prepare=_fifo,
    ),
    Case(
        "generic: symbolic link to /dev/zero",
        DataError,
        ("dev-zero.csv", "character device", "/dev/zero"),
        ingest={"format": "generic", "path": f"{BAD}/dev-zero.csv"},
        prepare=_link_to_dev_zero,
    ),
    Case(
        "generic: 300-character file name",
        OSError,
        ("File name too long", "aaa.csv"),
        ingest={"format": "generic", "path": _LONG_NAME},
    ),
    # --- MovieLens folders ------------------------------------------------------------------
    Case(
        "ml-latest-small: file given for the folder",
        DataError,
        ("ratings.csv", "is a file, not a folder", "ingest.path"),
        files=_movielens_folder((EMBEDDED_DATA / "ratings.csv").read_bytes()[:2000]),
        ingest={"format": "ml-latest-small", "path": f"{BAD}/ml/ratings.csv"},
    ),
    Case(
        "ml-latest-small: ratings without timestamp",
        DataError,
        ("ratings.csv", "line 1", "'timestamp'"),
        files=_movielens_folder(b"userId,movieId,rating\n1,1,4.0\n"),
        ingest={"format": "ml-latest-small", "path": f"{BAD}/ml"},
    ),
    # --- parameters -------------------------------------------------------------------------
    Case(
        "ingest.format unknown",
        DataError,
        ("ingest.format", "movielens"),
        ingest={"format": "movielens"},
    ),
    Case(
        "ingest.duplicates unknown",
        DataError,
        ("ingest.duplicates", "'sometimes'"),
        ingest={"duplicates": "sometimes"},
    ),
    Case(
        "ingest.duplicate_key without item_id",
        DataError,
        ("ingest.duplicate_key",),
        ingest={"duplicate_key": ["user_id"]},
    ),
    Case(
        "ingest.generic.encoding unknown",
        DataError,
        ("ingest.generic.encoding", "'klingon'"),
        files={f"{BAD}/klingon.csv": _events("1,2,3,4.0")},
        ingest={
            "format": "generic",
            "path": f"{BAD}/klingon.csv",
            "generic": {"encoding": "klingon"},
        },
    ),
    Case(
        "pretrain.encoder.hidden = 0",
        ValueError,
        ("pretrain.encoder.hidden", "positive integer"),
        check=lambda: encoder_config({"hidden": 0}, 10, "pretrain.encoder"),
    ),
    Case(
        "pretrain.encoder: hidden not divisible by heads",
        ValueError,
        ("pretrain.encoder", "divisor of hidden"),
        check=lambda: encoder_config({"hidden": 10, "heads": 4}, 10, "pretrain.encoder"),
    ),
    Case(
        "pretrain.train.lr = 1e9",
        ValueError,
        ("pretrain.train.lr", "learning rate"),
        check=lambda: train_config({"lr": 1e9}, "pretrain.train"),
    ),
    Case(
        "pretrain.train.epochs = 'ten'",
        ValueError,
        ("pretrain.train.epochs", "'ten'"),
        check=lambda: train_config({"epochs": "ten"}, "pretrain.train"),
    ),
    Case(
        "finetune.train: misspelt key",
        ValueError,
        ("finetune.train", "'epoch'"),
        check=lambda: train_config({"epoch": 3}, "finetune.train"),
    ),
    # --- inputs that look odd but are valid: read exactly as their plain form ---------------
    s3rec("byte-order-mark", "\ufeff1 10 11\n2 12\n".encode(), None, accepted=_same_as_plain),
    s3rec("crlf", b"1 10 11\r\n2 12\r\n", None, accepted=_same_as_plain),
    generic(
        "byte-order-mark",
        "\ufeffuser_id,item_id,timestamp\n1,10,1\n1,11,2\n2,12,3\n".encode(),
        None,
        accepted=_same_as_plain,
    ),
    generic(
        "crlf",
        b"user_id,item_id,timestamp\r\n1,10,1\r\n1,11,2\r\n2,12,3\r\n",
        None,
        accepted=_same_as_plain,
    ),
    generic(
        "leading-zeros-as-strings",
        _LEADING_ZEROS,
        None,
        accepted=_distinct_spellings,
        ingest={"generic": {"string_ids": True}},
    ),
    generic("duplicates-keep-last", _DUPLICATED, None, accepted=_kept(2)),
    generic(
        "duplicates-keep-first",
        _DUPLICATED,
        None,
        accepted=_kept(2),
        ingest={"duplicates": "keep_first"},
    ),
]


# --- running a case ---------------------------------------------------------------------------


def make_sandbox(root: Path) -> Path:
    """conf/ and the embedded data, with one good ingest already written under data/.

    The earlier outputs make "no partial output" checkable: a failed run must leave every one
    of them as it was, not half-replaced.
    """
    shutil.copytree(REPO_ROOT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    shutil.copytree(EMBEDDED_DATA, root / "data" / "01_raw" / EMBEDDED_DATA.name)
    with _cwd(root):
        catalog, _ = _catalog({}, {})
        SequentialRunner().run(ingest_pipeline(), catalog)
    return root


def run_case(case: Case, root: Path) -> BaseException | None:
    """Write the case's files, run it, and return the exception it ended in (None: no error)."""
    for relative, content in case.files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    if case.prepare is not None:
        case.prepare(root)
    with _cwd(root):
        catalog, outputs = _catalog(case.ingest, case.params, memory_outputs=True)
        pipeline = ingest_pipeline()
        if case.sequences:
            pipeline += sequences_pipeline().only_nodes("sequences.filter_and_order_interactions")
        try:
            with _as_nobody(case.as_nobody):
                if case.check is not None:
                    case.check()
                    return None
                SequentialRunner().run(pipeline, catalog)
        except Exception as error:  # noqa: BLE001 - the case decides what is right
            return error
    if case.accepted is not None:
        case.accepted({name: catalog.load(name) for name in outputs})
    return None


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (symbolic links by their target)."""
    digests = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_symlink():
            digests[relative] = "link:" + os.readlink(path)
        elif path.is_file():
            with _readable(path):
                digests[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _catalog(
    ingest: dict[str, Any], params: dict[str, Any], memory_outputs: bool = False
) -> tuple[DataCatalog, list[str]]:
    """The project's catalog and parameters from conf/, with the case's overrides."""
    catalog_config, parameters = _project_config(Path.cwd())
    parameters = copy.deepcopy(parameters)
    parameters["ingest"] = _merge(parameters["ingest"], ingest)
    for key, block in params.items():
        parameters[key] = _merge(parameters[key], block)
    catalog = DataCatalog.from_config(copy.deepcopy(catalog_config))
    for key, value in parameters.items():
        catalog[f"params:{key}"] = MemoryDataset(value, copy_mode="assign")
    outputs = ["interactions", "users", "items"]
    if memory_outputs:  # accepted inputs are checked in memory: data/ stays as it was
        for name in (*outputs, "filtered_interactions"):
            catalog[name] = MemoryDataset(copy_mode="assign")
    return catalog, outputs


@functools.cache
def _project_config(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sandbox's catalog and parameters, read once: conf/ does not change between cases."""
    config = OmegaConfigLoader(str(root / "conf"), base_env="base", default_run_env="local")
    return config["catalog"], config["parameters"]


@contextlib.contextmanager
def _cwd(folder: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _as_nobody(enabled: bool) -> Iterator[None]:
    """Permissions mean nothing to root: drop to 'nobody' (effective uid only) for the read."""
    if not enabled or os.geteuid() != 0:
        yield
        return
    os.seteuid(NOBODY_UID)
    try:
        yield
    finally:
        os.seteuid(0)


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    mode = path.stat().st_mode
    if os.access(path, os.R_OK):
        yield
        return
    path.chmod(mode | 0o400)
    try:
        yield
    finally:
        path.chmod(mode)
