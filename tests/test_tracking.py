"""The pyfunc user-vector model and the metric-history helpers against a real sqlite store."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from clue_pipeline.models.encoders import EncoderConfig, build_encoder, encoder_to_checkpoint
from clue_pipeline.tracking import (
    UserVectorConfig,
    UserVectorModel,
    history_to_metrics,
    log_metric_history,
    log_user_vector_model,
    read_metric_history,
    sequences_to_batch,
    ur_token,
)

NUM_ITEMS = 7
MAX_LEN = 4


def _encoder_and_loader() -> tuple[torch.nn.Module, dict, str]:
    """A small real encoder, its checkpoint and the loader the served model resolves."""
    torch.manual_seed(0)
    config = EncoderConfig(num_items=NUM_ITEMS, max_len=MAX_LEN, hidden=8, blocks=1, heads=2)
    encoder = build_encoder(config)
    return encoder, encoder_to_checkpoint(encoder), UserVectorConfig().encoder_loader


@pytest.fixture
def item_index() -> pd.DataFrame:
    # Original ids are sparse and unordered, tokens 1..N.
    ids = np.array([501, 17, 900, 42, 3, 77, 1000], dtype=np.int64)
    return pd.DataFrame({"item_id": ids, "token": np.arange(1, NUM_ITEMS + 1, dtype=np.int32)})


@pytest.fixture(scope="module")
def _store_uri(tmp_path_factory) -> str:
    """One sqlite store per module: creating its schema takes seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def sqlite_store(_store_uri, tmp_path, monkeypatch, request):
    """A fresh experiment (artifacts in tmp_path) in a real sqlite store; globals restored."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(_store_uri)
    experiment_id = MlflowClient(_store_uri).create_experiment(
        request.node.name, artifact_location=(tmp_path / "mlruns").as_uri()
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    yield _store_uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def test_sequences_to_batch_skips_unknown_truncates_and_appends_ur(item_index):
    lookup = pd.Index(item_index["item_id"])
    tokens = item_index["token"].to_numpy(np.int64)
    items = pd.Series([[501, 17], [3, 999, 77, 1000, 42, 900], [], None, [12345]])

    batch, unknown = sequences_to_batch(items, lookup, tokens, max_len=MAX_LEN, ur_token=10)

    expected = np.array(
        [
            [0, 0, 1, 2, 10],  # left-padded, time order kept
            [6, 7, 4, 3, 10],  # 999 skipped, the 4 most recent known kept
            [0, 0, 0, 0, 10],
            [0, 0, 0, 0, 10],  # null row = empty sequence
            [0, 0, 0, 0, 10],  # only unknown ids
        ]
    )
    np.testing.assert_array_equal(batch, expected)
    np.testing.assert_array_equal(unknown, [0, 1, 0, 0, 1])
    assert batch.dtype == np.int64


def test_sequences_to_batch_rejects_non_integer_ids(item_index):
    lookup = pd.Index(item_index["item_id"])
    with pytest.raises(ValueError, match="'items': expected lists of integer item ids"):
        sequences_to_batch(pd.Series([["a", "b"]]), lookup, np.arange(1, 8), 4, 10)


def test_logged_model_loads_predicts_like_the_encoder_and_is_registered(sqlite_store, item_index):
    encoder, checkpoint, loader = _encoder_and_loader()
    example = pd.DataFrame({"items": [[501, 17, 900], [42, 3, 77, 1000, 501, 31337]]})
    requests = pd.DataFrame({"items": [[1000, 3], [17, 17, 42, 900, 77, 3, 501], [424242, 3]]})

    info = log_user_vector_model(
        checkpoint,
        item_index,
        registered_model_name="clue-user-vectors",
        input_example=example,
        config=UserVectorConfig(device="cpu", encoder_loader=loader),
    )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    vectors = loaded.predict(requests)

    hidden = encoder.config.hidden
    assert list(vectors.columns) == [f"u{i}" for i in range(hidden)]
    assert vectors.shape == (3, hidden)
    batch, unknown = sequences_to_batch(
        requests["items"],
        pd.Index(item_index["item_id"]),
        item_index["token"].to_numpy(np.int64),
        max_len=MAX_LEN,
        ur_token=ur_token(NUM_ITEMS),
    )
    assert batch[1].tolist() == [3, 6, 5, 1, ur_token(NUM_ITEMS)]
    np.testing.assert_array_equal(unknown, [0, 0, 1])
    with torch.inference_mode():
        direct = encoder.eval()(torch.from_numpy(batch)).user.numpy()
    np.testing.assert_allclose(vectors.to_numpy(), direct, rtol=1e-5, atol=1e-6)
    assert not np.allclose(direct[0], direct[1])  # the inputs really reach the encoder

    client = MlflowClient(sqlite_store)
    versions = client.search_model_versions("name='clue-user-vectors'")
    assert [int(v.version) for v in versions] == [1]
    signature = loaded.metadata.signature
    assert signature.inputs.input_names() == ["items"]
    assert len(signature.outputs.input_names()) == hidden


def test_model_input_without_items_column_says_what_is_expected(tmp_path, item_index):
    _, checkpoint, loader = _encoder_and_loader()
    torch.save(checkpoint, tmp_path / "enc.pt")
    item_index.to_parquet(tmp_path / "index.parquet")
    model = UserVectorModel(UserVectorConfig(device="cpu", encoder_loader=loader))
    model.setup(tmp_path / "enc.pt", tmp_path / "index.parquet")
    with pytest.raises(ValueError, match="column 'items' is missing"):
        model.predict(None, pd.DataFrame({"sequence": [[1, 2]]}))


def test_item_index_without_token_column_names_the_file(tmp_path):
    _, checkpoint, loader = _encoder_and_loader()
    torch.save(checkpoint, tmp_path / "enc.pt")
    pd.DataFrame({"item_id": [1, 2]}).to_parquet(tmp_path / "bad.parquet")
    model = UserVectorModel(UserVectorConfig(device="cpu", encoder_loader=loader))
    with pytest.raises(ValueError, match=r"bad\.parquet: item index lacks column\(s\) \['token'\]"):
        model.setup(tmp_path / "enc.pt", tmp_path / "bad.parquet")


def test_metric_history_round_trips_with_epoch_steps(sqlite_store):
    history = [
        {"epoch": 1, "loss": 2.5, "z_std": 0.10, "note": "warmup", "improved": True},
        {"epoch": 2, "loss": 1.5, "z_std": 0.12},
        {"epoch": 3, "loss": 1.0, "z_std": 0.13, "hr@10": 0.2},
    ]
    with mlflow.start_run() as run:
        log_metric_history(history, prefix="pretrain")
    read_back = read_metric_history(run.info.run_id, "pretrain")

    assert read_back == [
        {"epoch": 1, "loss": 2.5, "z_std": 0.10},
        {"epoch": 2, "loss": 1.5, "z_std": 0.12},
        {"epoch": 3, "hr_10": 0.2, "loss": 1.0, "z_std": 0.13},
    ]
    keys = MlflowClient(sqlite_store).get_run(run.info.run_id).data.metrics
    assert set(keys) == {"pretrain/loss", "pretrain/z_std", "pretrain/hr_10"}


def test_metric_history_outside_a_run_logs_nothing(sqlite_store, request):
    assert mlflow.active_run() is None
    log_metric_history([{"epoch": 0, "loss": 1.0}], prefix="pretrain")
    assert mlflow.active_run() is None
    experiment_id = mlflow.get_experiment_by_name(request.node.name).experiment_id
    assert MlflowClient(sqlite_store).search_runs([experiment_id]) == []


def test_history_without_epoch_key_uses_position_as_step():
    metrics = history_to_metrics([{"loss": 3.0}, {"loss": 2.0}], prefix="", timestamp_ms=5)
    assert [(m.key, m.value, m.step, m.timestamp) for m in metrics] == [
        ("loss", 3.0, 0, 5),
        ("loss", 2.0, 1, 5),
    ]
