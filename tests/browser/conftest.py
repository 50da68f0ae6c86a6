"""Headless Chromium for the browser tests: locate it, serve pages, read the rendered DOM.

The pages under test (Kedro-Viz, the MLflow UI) are React apps: the HTML a server sends
holds no content, so the tests read the DOM Chromium has built after running the scripts
(``--dump-dom`` with a virtual time budget that lets the app fetch its data and render).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("CLUE_CHROMIUM", "/usr/bin/chromium"))
# Virtual time runs ahead of the wall clock when the page is idle, so a generous budget
# costs little; the wall-clock limit guards against a hung browser on a loaded machine.
VIRTUAL_TIME_BUDGET_MS = 20_000
CHROMIUM_TIMEOUT_S = 180
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Chromium's path; missing: a skip locally, a failure in CI (which installs it)."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = (
        f"headless Chromium not found at {CHROMIUM}; install it with scripts/install_browser.sh"
    )
    if _in_ci():
        pytest.fail(f"{message} (CI=true: the CI script must install it before the tests)")
    pytest.skip(message)


def dump_dom(
    chromium: Path, url: str, profile_dir: Path, window: tuple[int, int] | None = None
) -> str:
    """The DOM of ``url`` after its scripts ran, as HTML text.

    ``window`` (width, height) matters to tables that draw only the columns in view.
    """
    command = [
        str(chromium),
        *CHROMIUM_FLAGS,
        *([f"--window-size={window[0]},{window[1]}"] if window else []),
        f"--user-data-dir={profile_dir}",
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise AssertionError(
            f"chromium --dump-dom {url} exited {result.returncode} with no page; "
            f"stderr tail: {result.stderr[-2000:]}"
        )
    return result.stdout


def screenshot(
    chromium: Path, url: str, path: Path, profile_dir: Path, window: tuple[int, int] = (1600, 1000)
) -> Path:
    """A PNG of ``url`` after its scripts ran, at ``window`` pixels (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        str(chromium),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile_dir}",
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        "--hide-scrollbars",
        f"--window-size={window[0]},{window[1]}",
        f"--screenshot={path}",
        url,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S, check=False
    )
    if result.returncode != 0 or not path.is_file():
        raise AssertionError(
            f"chromium --screenshot {url} exited {result.returncode} without {path}; "
            f"stderr tail: {result.stderr[-2000:]}"
        )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return path


def keep_screenshot(png: Path) -> None:
    """Copies ``png`` into ``$CLUE_SCREENSHOTS`` (``make screenshots``: docs/images) if set.

    The README's pictures come from the browser tests; a plain ``make test`` leaves the
    checkout as it was.
    """
    folder = os.environ.get("CLUE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(folder) / png.name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serves ``root`` on 127.0.0.1 at an ephemeral port for the block; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def running_process(
    command: Sequence[str], ready_url: str, log_path: Path, timeout_s: float, env: dict[str, str]
) -> Iterator[subprocess.Popen]:
    """Starts ``command`` in its own process group, waits until ``ready_url`` answers 200.

    The group is stopped on exit whatever happened (SIGTERM, then SIGKILL after a grace
    period), so a server's worker processes never outlive the test.
    """
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        _wait_until_ready(process, ready_url, log_path, timeout_s)
        yield process
    finally:
        _stop_group(process)


MLFLOW_CLI = Path(sys.executable).with_name("mlflow")
MLFLOW_START_TIMEOUT_S = 240  # the server imports much of MLflow; slow on a busy 2-core box


@contextmanager
def mlflow_server(store: Path, artifacts: Path, log_path: Path) -> Iterator[str]:
    """The MLflow UI over the sqlite ``store`` on a free local port; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    command = [
        *(str(MLFLOW_CLI), "server", "--backend-store-uri", f"sqlite:///{store}"),
        *("--default-artifact-root", artifacts.as_uri()),
        *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
    ]
    base = f"http://127.0.0.1:{port}"
    with running_process(command, f"{base}/health", log_path, MLFLOW_START_TIMEOUT_S, env):
        yield base


def _wait_until_ready(
    process: subprocess.Popen, url: str, log_path: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"{process.args[0]} exited with {process.returncode} before {url} answered; "
                f"log tail: {log_path.read_text(errors='replace')[-2000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(
        f"{url} did not answer within {timeout_s:.0f} s; "
        f"log tail: {log_path.read_text(errors='replace')[-2000:]}"
    )


def _stop_group(process: subprocess.Popen, grace_s: float = 20.0) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace_s)
