"""Optional download of a dataset archive into the raw-data cache.

Only used when ``ingest.download`` is set and the cache folder lacks a required file. The
archive's checksum is verified before anything lands in the cache, and the cache is filled
by a rename, so an interrupted run never leaves a half-extracted dataset behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from clue_pipeline.data.errors import DataError

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class DownloadSpec:
    """Where an archive lives, what it must hash to, and which folder inside it to keep."""

    url: str
    sha256: str
    archive_member_dir: str = ""
    timeout_s: float = 60.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DownloadSpec:
        prefix = "ingest.download"
        url = str(params.get("url") or "")
        if not url.startswith(("http://", "https://", "file://")):
            raise DataError(
                f"{url!r} is not a URL", parameter=f"{prefix}.url", expected="an http(s) URL"
            )
        digest = str(params.get("sha256") or "").lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DataError(
                f"{digest!r} is not a SHA-256 digest",
                parameter=f"{prefix}.sha256",
                expected="64 hexadecimal characters",
            )
        timeout = params.get("timeout_s", cls.timeout_s)
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise DataError(
                f"{timeout!r} is not a time",
                parameter=f"{prefix}.timeout_s",
                expected="a positive number of seconds",
            )
        member_dir = str(params.get("archive_member_dir") or "").strip("/")
        return cls(url, digest, member_dir, float(timeout))


def ensure_downloaded(spec: DownloadSpec, cache_dir: Path, required: Sequence[str]) -> Path:
    """``cache_dir`` holding every file of ``required``, downloading the archive if needed."""
    missing = missing_files(cache_dir, required)
    if not missing:
        logger.info("using cached %s", cache_dir)
        return cache_dir
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache_dir.parent) as work:
        archive = Path(work) / "archive.zip"
        fetch(spec, archive, cache_dir, required)
        staged = Path(work) / "extracted"
        extract_member_dir(archive, spec.archive_member_dir, staged, spec.url)
        still_missing = missing_files(staged, required)
        if still_missing:
            raise DataError(
                f"the archive lacks {', '.join(still_missing)} under "
                f"{spec.archive_member_dir or 'its top level'!r}",
                file=spec.url,
                parameter="ingest.download.archive_member_dir",
                expected="the folder inside the zip that holds the dataset's files",
            )
        _publish(staged, cache_dir)
    logger.info("downloaded %s into %s", spec.url, cache_dir)
    return cache_dir


def missing_files(folder: Path, required: Sequence[str]) -> list[str]:
    return [name for name in required if not (folder / name).is_file()]


def fetch(spec: DownloadSpec, target: Path, cache_dir: Path, required: Sequence[str]) -> None:
    """Stream ``spec.url`` to ``target`` and check its SHA-256."""
    digest = hashlib.sha256()
    try:
        with (
            urllib.request.urlopen(spec.url, timeout=spec.timeout_s) as response,
            target.open("wb") as out,
        ):
            while chunk := response.read(_CHUNK_BYTES):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DataError(
            f"cannot download {spec.url}: {reason}; place the files "
            f"{', '.join(required) or '(the dataset)'} in {cache_dir} by hand",
            parameter="ingest.download.url",
            expected="a reachable URL, or the files already in the cache folder",
        ) from err
    if digest.hexdigest() != spec.sha256:
        raise DataError(
            f"downloaded archive has SHA-256 {digest.hexdigest()}, not {spec.sha256}",
            file=spec.url,
            parameter="ingest.download.sha256",
            expected="the published checksum; the file may be corrupt or a different release",
        )


def extract_member_dir(archive: Path, member_dir: str, target: Path, source: str) -> None:
    """Extract the files under ``member_dir`` of the zip, flattened to ``target``."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            prefix = PurePosixPath(member_dir) if member_dir else None
            target.mkdir(parents=True)
            for info in zipped.infolist():
                name = PurePosixPath(info.filename)
                if info.is_dir() or name.is_absolute() or ".." in name.parts:
                    continue
                if prefix is not None and name.parent != prefix:
                    continue
                if prefix is None and len(name.parts) != 1:
                    continue
                with zipped.open(info) as src, (target / name.name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK_BYTES)
    except zipfile.BadZipFile as err:
        raise DataError(f"not a zip archive: {err}", file=source, expected="a .zip file") from err


def _publish(staged: Path, cache_dir: Path) -> None:
    """Move the extracted files into place by rename: all at once, or file by file."""
    if cache_dir.exists() and not any(cache_dir.iterdir()):
        cache_dir.rmdir()
    if not cache_dir.exists():
        os.replace(staged, cache_dir)
        return
    for path in staged.iterdir():
        os.replace(path, cache_dir / path.name)
