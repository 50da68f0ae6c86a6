"""Download against a real HTTP server on 127.0.0.1 serving a zip built by the test."""

import hashlib
import io
import socket
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from clue_pipeline.data.download import DownloadSpec, ensure_downloaded
from clue_pipeline.data.errors import DataError

FILES = {"u.data": "1\t1\t5\t881250949\n", "u.user": "1|24|M|technician|85711\n"}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on an ephemeral port; yields (base URL, folder, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            requests.append(self.path)
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    httpd.shutdown()
    httpd.server_close()


def _zip(files: dict[str, str], member_dir: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr(f"{member_dir}/", "")
        for name, text in files.items():
            zipped.writestr(f"{member_dir}/{name}", text)
        zipped.writestr("other/ignored.txt", "not part of the dataset")
        zipped.writestr("../escape.txt", "must never be written")
    return buffer.getvalue()


def _spec(url: str, payload: bytes, **extra) -> DownloadSpec:
    params = {
        "url": url,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "archive_member_dir": "ml-100k",
        "timeout_s": 5,
    } | extra
    return DownloadSpec.from_params(params)


def test_download_checks_extracts_and_caches(server, tmp_path):
    base, root, requests = server
    payload = _zip(FILES, "ml-100k")
    (root / "ml-100k.zip").write_bytes(payload)
    cache = tmp_path / "data" / "01_raw" / "ml-100k"
    spec = _spec(f"{base}/ml-100k.zip", payload)

    assert ensure_downloaded(spec, cache, tuple(FILES)) == cache
    assert {p.name for p in cache.iterdir()} == set(FILES)
    assert (cache / "u.data").read_text() == FILES["u.data"]
    assert not (tmp_path / "data" / "01_raw" / "escape.txt").exists()
    assert not list(cache.parent.glob(".download-*"))  # temp folder cleaned up
    assert requests == ["/ml-100k.zip"]

    ensure_downloaded(spec, cache, tuple(FILES))  # cached: no second request
    assert requests == ["/ml-100k.zip"]


def test_checksum_mismatch_leaves_no_cache(server, tmp_path):
    base, root, _ = server
    payload = _zip(FILES, "ml-100k")
    (root / "ml-100k.zip").write_bytes(payload)
    cache = tmp_path / "cache"
    spec = _spec(f"{base}/ml-100k.zip", payload, sha256="0" * 64)
    with pytest.raises(DataError) as info:
        ensure_downloaded(spec, cache, tuple(FILES))
    assert info.value.parameter == "ingest.download.sha256"
    assert hashlib.sha256(payload).hexdigest() in str(info.value)
    assert not cache.exists()


def test_wrong_member_dir_is_named(server, tmp_path):
    base, root, _ = server
    payload = _zip(FILES, "ml-100k")
    (root / "a.zip").write_bytes(payload)
    spec = _spec(f"{base}/a.zip", payload, archive_member_dir="ml-1m")
    with pytest.raises(DataError, match=r"lacks u.data, u.user under 'ml-1m'"):
        ensure_downloaded(spec, tmp_path / "cache", tuple(FILES))


def test_offline_says_to_place_files_by_hand(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ml-100k.zip"
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        ensure_downloaded(_spec(url, b""), cache, tuple(FILES))
    message = str(info.value)
    assert url in message and "by hand" in message and str(cache) in message
    assert not cache.exists()


def test_partly_filled_cache_is_completed(server, tmp_path):
    base, root, _ = server
    payload = _zip(FILES, "ml-100k")
    (root / "z.zip").write_bytes(payload)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "u.data").write_text("stale")
    (cache / "notes.txt").write_text("kept")
    ensure_downloaded(_spec(f"{base}/z.zip", payload), cache, tuple(FILES))
    assert (cache / "u.user").read_text() == FILES["u.user"]
    assert (cache / "notes.txt").read_text() == "kept"


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"url": "ftp.example/x.zip"}, "ingest.download.url"),
        ({"sha256": "abc"}, "ingest.download.sha256"),
        ({"timeout_s": 0}, "ingest.download.timeout_s"),
    ],
)
def test_bad_download_parameters(params, parameter):
    good = {"url": "http://127.0.0.1/x.zip", "sha256": "a" * 64}
    with pytest.raises(DataError) as info:
        DownloadSpec.from_params(good | params)
    assert info.value.parameter == parameter


def test_not_a_zip(server, tmp_path):
    base, root, _ = server
    payload = b"<html>a login page</html>"
    (root / "x.zip").write_bytes(payload)
    with pytest.raises(DataError, match="not a zip archive"):
        ensure_downloaded(_spec(f"{base}/x.zip", payload), tmp_path / "c", ("u.data",))


def test_existing_files_need_no_network(tmp_path: Path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for name, text in FILES.items():
        (cache / name).write_text(text)
    spec = _spec("http://127.0.0.1:9/never.zip", b"")
    assert ensure_downloaded(spec, cache, tuple(FILES)) == cache
