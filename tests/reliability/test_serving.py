"""The registered user-vector model behind a real `mlflow models serve`: a user of whom the
model knows no item (unknown ids, an empty sequence) gets HTTP 400 naming the row and ids,
not the one plausible vector every such user would share; an id no dataset holds (negative)
gets 400 even beside known ids; unknown ids are answered back in `unknown_items`."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from clue_pipeline.models.encoders import EncoderConfig, build_encoder, encoder_to_checkpoint
from clue_pipeline.tracking import UserVectorConfig, log_user_vector_model

pytestmark = pytest.mark.slow

MODEL_NAME = "clue-user-vectors"
KNOWN = [501, 17, 900, 42, 3, 77, 1000]
START_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> str:
    """Registers a small real encoder in a sqlite store and serves version 1 on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("serving")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(num_items=len(KNOWN), max_len=4, hidden=8, heads=2))
    item_index = pd.DataFrame(
        {
            "item_id": np.array(KNOWN, np.int64),
            "token": np.arange(1, len(KNOWN) + 1, dtype=np.int32),
        }
    )
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store)
    try:
        experiment = mlflow.create_experiment(
            "serving", artifact_location=(folder / "mlruns").as_uri()
        )
        mlflow.set_experiment(experiment_id=experiment)
        log_user_vector_model(
            encoder_to_checkpoint(encoder),
            item_index,
            registered_model_name=MODEL_NAME,
            input_example=pd.DataFrame({"items": [[501, 17], [42, 3, 77]]}),
            config=UserVectorConfig(device="cpu"),
        )
    finally:
        mlflow.set_tracking_uri(previous)
    with serve_registered(store, folder) as url:
        yield url


def test_known_ids_get_the_vector_the_model_gives_in_process(served):
    status, body = _invocations(served, [[501, 17], [42, 3, 77, 31337]])
    assert status == 200, body
    rows = json.loads(body)["predictions"]
    assert [row.pop("unknown_items") for row in rows] == [[], [31337]]
    vectors = np.array([list(row.values()) for row in rows])
    assert vectors.shape == (2, 8) and np.isfinite(vectors).all()
    assert not np.allclose(vectors[0], vectors[1])


def test_an_impossible_id_beside_known_ids_is_refused_with_400_naming_it(served):
    status, body = _invocations(served, [[501, 17], [42, -5, 77]])
    assert status == 400, body
    message = json.loads(body)["message"]
    assert "row 1: -5 (negative)" in message


@pytest.mark.parametrize(
    ("sequences", "named"),
    [
        ([[999999999]], "row 0: unknown item id(s) [999999999]"),
        ([[501, 17], []], "row 1: empty sequence"),
        ([[1, 2, 4, 5, 6, 7, 8]], "row 0: unknown item id(s) [1, 2, 4, 5, 6, ...]"),
    ],
    ids=["unknown-id", "empty-sequence", "internal-tokens"],
)
def test_a_user_with_no_known_item_is_refused_with_400_naming_it(served, sequences, named):
    status, body = _invocations(served, sequences)
    assert status == 400, body
    message = json.loads(body)["message"]
    assert named in message
    assert "hold no item id the model knows" in message
    assert "7 known ids, 3..1000" in message


def _invocations(url: str, sequences: list[list[int]]) -> tuple[int, str]:
    payload = json.dumps(
        {"dataframe_split": {"columns": ["items"], "data": [[s] for s in sequences]}}
    )
    request = urllib.request.Request(
        f"{url}/invocations", data=payload.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextlib.contextmanager
def serve_registered(store: str, folder: Path) -> Iterator[str]:
    """``mlflow models serve`` of the registered model's version 1 on a free local port, its
    log in ``folder``; yields the URL once it answers /ping, stops the server after."""
    port = _free_port()
    log = (folder / "serve.log").open("w")
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL_NAME}/1"),
            *("--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)),
            *("--workers", "1"),
        ],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": store,
            "OMP_NUM_THREADS": "1",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            # the scoring server starts `uvicorn` by name: the interpreter's own scripts first
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, server, folder / "serve.log")
        yield url
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


def _wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow models serve exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    pytest.fail(
        f"mlflow models serve not up within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
