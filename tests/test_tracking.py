"""The pyfunc user-vector model and the child runs per job against a real sqlite store."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from clue_pipeline.models.encoders import EncoderConfig, build_encoder, encoder_to_checkpoint
from clue_pipeline.tracking import (
    PARENT_RUN_TAG,
    ChildRuns,
    Job,
    LiveEpochMetrics,
    UserVectorConfig,
    UserVectorModel,
    job_history_metrics,
    job_of,
    job_params,
    job_seed,
    job_test_metrics,
    log_user_vector_model,
    parent_run_name,
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
    assert list(vectors.columns) == [*(f"u{i}" for i in range(hidden)), "unknown_items"]
    assert vectors.shape == (3, hidden + 1)
    assert vectors["unknown_items"].tolist() == [[], [], [424242]]
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
    served = vectors.drop(columns="unknown_items").to_numpy()
    np.testing.assert_allclose(served, direct, rtol=1e-5, atol=1e-6)
    assert not np.allclose(direct[0], direct[1])  # the inputs really reach the encoder

    client = MlflowClient(sqlite_store)
    versions = client.search_model_versions("name='clue-user-vectors'")
    assert [int(v.version) for v in versions] == [1]
    signature = loaded.metadata.signature
    assert signature.inputs.input_names() == ["items"]
    assert signature.outputs.input_names()[-1] == "unknown_items"
    assert len(signature.outputs.input_names()) == hidden + 1


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


# --- child runs per job --------------------------------------------------------------------

PARAMS = {
    "encoder": {"hidden": 64, "dropout": 0.5},
    "pretrain": {
        "train": {"epochs": 10, "lr": 0.001, "seed": 42},
        "simsiam": {"proj_dim": 256},
        "masked_item": {"mask_ratio": 0.2},
        "distributed": {"nproc_per_node": 1},
    },
    "finetune": {
        "train": {"epochs": 15, "lr": 0.001, "seed": 42},
        "tasks": {"next_item": {"monitor": "ndcg@10"}, "coldstart": {"monitor": "mrr@10"}},
        "overrides": {"clue_probe": {"lr": 0.01, "seed": 7}},
        "exclude_history": False,
        "next_item_rows": "user",
        "methods": {
            "clue": {"name": "clue", "backbone": "transformer"},
            "clue_probe": {"name": "clue_probe", "backbone": "transformer", "freeze": True},
            "nfm": {"name": "nfm", "backbone": "nfm"},
        },
        "baselines": {"nfm": {"factors": 8}},
    },
    "evaluate": {"exclude_history": False},
}


def test_jobs_are_read_from_the_catalog_names_of_their_outputs():
    assert job_of(["next_item__clue_encoder", "next_item__clue_pretrain_history"]) == (
        Job("pretrain", "next_item", "clue"),
        "train",
    )
    assert job_of(["next_item__clue_zero_model", "next_item__clue_zero_history"]) == (
        Job("finetune", "next_item", "clue_zero"),
        "train",
    )
    assert job_of(["coldstart__mip_probe_metrics"]) == (
        Job("finetune", "coldstart", "mip_probe"),
        "evaluate",
    )
    assert job_of(["metrics_summary", "metrics_table"]) is None
    assert job_of(["view_policy"]) is None


def test_a_job_logs_only_the_parameters_it_used():
    clue = job_params(Job("pretrain", "next_item", "clue"), PARAMS, views={"strategies": ["mask"]})
    assert clue["simsiam.proj_dim"] == "256" and clue["views.strategies"] == "['mask']"
    assert not any(key.startswith(("masked_item", "finetune", "method")) for key in clue)
    mip = job_params(Job("pretrain", "next_item", "mip"), PARAMS)
    assert mip["masked_item.mask_ratio"] == "0.2" and "simsiam.proj_dim" not in mip

    probe = Job("finetune", "next_item", "clue_probe")
    params = job_params(probe, PARAMS, init="next_item__clue_encoder")
    # the merged training settings: shared, then the task's, then the method's overrides
    assert params["train.lr"] == "0.01" and params["train.monitor"] == "ndcg@10"
    assert params["init"] == "next_item__clue_encoder"
    assert params["method.freeze"] == "True" and params["next_item_rows"] == "user"
    assert not any(k.startswith(("methods", "overrides", "simsiam", "baseline")) for k in params)
    assert job_seed(probe, PARAMS) == 7
    nfm = job_params(Job("finetune", "coldstart", "nfm"), PARAMS, init="random")
    assert nfm["baseline.factors"] == "8" and nfm["init"] == "random"
    assert "next_item_rows" not in nfm and nfm["train.monitor"] == "mrr@10"


def test_every_job_uses_the_same_metric_names():
    history = [
        {"epoch": 0, "loss": 5.0, "sequences_per_s": 900.0, "wall_s": 2.0, "ndcg@10": 0.01},
        {
            "epoch": 1,
            "loss": 4.0,
            "sequences_per_s": 950.0,
            "wall_s": 2.0,
            "ndcg@10": 0.02,
            "history_excluded": 0.0,
            "n_users": 610,
        },
    ]
    rows = job_history_metrics(Job("finetune", "next_item", "gru"), history, timestamp_ms=1)
    assert {(m.key, m.step) for m in rows} == {
        (key, step)
        for step in (0, 1)
        for key in ("train/loss", "train/sequences_per_s", "train/epoch_s", "valid/ndcg_at_10")
    }
    pretrain = [{"epoch": 0, "loss": -0.9, "z_std": 0.1, "wall_s": 1.0, "sequences_per_s": 5.0}]
    keys = {m.key for m in job_history_metrics(Job("pretrain", "next_item", "clue"), pretrain)}
    assert keys == {"train/loss", "train/z_std", "train/epoch_s", "train/sequences_per_s"}
    profiling = {"gender": [{"epoch": 0, "loss": 0.7, "accuracy": 0.6}]}
    keys = {m.key for m in job_history_metrics(Job("finetune", "profiling", "clue"), profiling)}
    assert keys == {"train/gender/loss", "valid/gender/accuracy"}
    assert job_history_metrics(Job("finetune", "profiling", "clue"), {"skipped": "no users"}) == []

    record = {"metrics": {"ndcg@10": 0.03, "recall@10": 0.05, "history_excluded": False}}
    assert job_test_metrics(record) == {"test/ndcg_at_10": 0.03, "test/recall_at_10": 0.05}
    nested = {"metrics": {"gender": {"accuracy": 0.7}}}
    assert job_test_metrics(nested) == {"test/gender/accuracy": 0.7}


def test_the_parent_run_is_named_for_what_ran():
    assert parent_run_name("ml-100k", ["__default__"]) == "ml-100k: full chain"
    assert parent_run_name("beauty", ["pretrain", "finetune"]) == "beauty: pretrain+finetune"
    assert parent_run_name("d", ["__default__"], ["a.x", "b.y"]) == "d: a.x+b.y"
    assert parent_run_name("d", ["__default__"], [f"n{i}" * 20 for i in range(20)]) == (
        "d: 20 nodes"
    )


def test_child_runs_nest_under_the_parent_with_tags_params_and_metrics(sqlite_store, request):
    client = MlflowClient(sqlite_store)
    experiment_id = mlflow.get_experiment_by_name(request.node.name).experiment_id
    with mlflow.start_run(run_name="d: full chain") as parent:
        children = ChildRuns(client, parent.info.run_id, experiment_id)
        for method in ("clue", "clue_zero"):
            job = Job("finetune", "next_item", method)
            children.child(job, "d", 42, {"train.lr": "0.001", "method.name": method}, 1_000)
            children.log_history(job, [{"epoch": 0, "loss": 3.0, "ndcg@10": 0.1}])
            children.finish(job)
            # evaluation comes later, into the same (already finished) child
            assert children.child(job, "d", 42, {}) == children._runs[job]
            children.log_evaluation(job, {"task": "next_item", "metrics": {"ndcg@10": 0.2}})
            children.finish(job)
        assert mlflow.active_run().info.run_id == parent.info.run_id, "the parent stays active"

    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent.info.run_id}'"
    )
    assert sorted(r.info.run_name for r in runs) == [
        "next_item clue seed 42",
        "next_item clue_zero seed 42",
    ]
    for run in runs:
        tags = run.data.tags
        assert {tags[k] for k in ("dataset", "task", "stage", "seed")} == {
            "d",
            "next_item",
            "finetune",
            "42",
        }
        assert run.data.params == {"train.lr": "0.001", "method.name": tags["method"]}
        assert run.data.metrics == {
            "train/loss": 3.0,
            "valid/ndcg_at_10": 0.1,
            "test/ndcg_at_10": 0.2,
        }
        assert run.info.status == "FINISHED" and run.info.start_time == 1_000
        assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["metrics.json"]
    assert client.get_run(parent.info.run_id).data.metrics == {}


def test_the_hook_names_the_parent_and_opens_one_child_per_job(sqlite_store, request):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Node, Pipeline

    from clue_pipeline.hooks import MlflowOutputsHook

    def _node(outputs, name, inputs=("params:finetune",)):
        return Node(lambda *a: None, inputs=list(inputs), outputs=outputs, name=name)

    finetune_params = {**PARAMS["finetune"], "train": {"epochs": 2, "seed": 3}}
    catalog = DataCatalog(
        {
            "params:dataset_name": MemoryDataset("toy"),
            "params:encoder": MemoryDataset(PARAMS["encoder"]),
            "params:finetune": MemoryDataset(finetune_params),
            "params:evaluate": MemoryDataset(PARAMS["evaluate"]),
        }
    )
    train = _node(["next_item__clue_model", "next_item__clue_history"], "finetune_clue")
    evaluate = _node("next_item__clue_metrics", "evaluate_clue", ["next_item__clue_model"])
    summary = _node("metrics_summary", "summarise", ["next_item__clue_metrics"])
    skipped = _node(["profiling__clue_model", "profiling__clue_history"], "finetune_profiling")
    hook = MlflowOutputsHook()
    run_params = {"pipeline_names": ["finetune", "evaluate"], "node_names": None, "env": None}
    with mlflow.start_run() as parent:
        hook.before_pipeline_run(run_params, Pipeline([train, evaluate, summary]), catalog)
        inputs = {"params:finetune": finetune_params, "next_item__clue_encoder": {}}
        hook.before_node_run(train, catalog, inputs)
        history = [{"epoch": 0, "loss": 2.0, "ndcg@10": 0.1}]
        hook.after_node_run(train, catalog, inputs, {"next_item__clue_history": history})
        record = {"task": "next_item", "metrics": {"ndcg@10": 0.3}}
        hook.after_node_run(evaluate, catalog, {}, {"next_item__clue_metrics": record})
        hook.after_node_run(summary, catalog, {}, {"metrics_summary": {}})
        hook.after_node_run(skipped, catalog, {}, {"profiling__clue_history": {"skipped": "no"}})

    client = MlflowClient(sqlite_store)
    assert client.get_run(parent.info.run_id).info.run_name == "toy: finetune+evaluate"
    experiment_id = mlflow.get_experiment_by_name(request.node.name).experiment_id
    (child,) = client.search_runs(
        [experiment_id], filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent.info.run_id}'"
    )
    assert child.info.run_name == "next_item clue seed 3"
    assert child.data.tags["method"] == "clue" and child.data.tags["dataset"] == "toy"
    assert child.data.params["init"] == "next_item__clue_encoder"
    assert child.data.metrics == {
        "train/loss": 2.0,
        "valid/ndcg_at_10": 0.1,
        "test/ndcg_at_10": 0.3,
    }


def test_training_epochs_reach_the_child_run_while_the_job_trains(sqlite_store, request):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Node, Pipeline

    from clue_pipeline.hooks import MlflowOutputsHook
    from clue_pipeline.training import TrainConfig, fit
    from clue_pipeline.training.loop import announce_part, epoch_records
    from tests.training._resume_script import build_task

    client = MlflowClient(sqlite_store)
    catalog = DataCatalog(
        {
            "params:dataset_name": MemoryDataset("toy"),
            "params:encoder": MemoryDataset(PARAMS["encoder"]),
            "params:finetune": MemoryDataset({**PARAMS["finetune"], "train": {"seed": 3}}),
        }
    )
    train = Node(lambda x: None, "params:finetune", "next_item__clue_history", name="ft")
    profile = Node(lambda x: None, "params:finetune", "profiling__clue_history", name="pf")
    hook = MlflowOutputsHook()
    run_params = {"pipeline_names": ["finetune"], "node_names": None, "env": None}
    seen_live: list[dict[str, float]] = []

    experiment_id = mlflow.get_experiment_by_name(request.node.name).experiment_id

    def child_metrics(task: str):
        (run,) = client.search_runs([experiment_id], filter_string=f"tags.task = '{task}'")
        return run

    def validate(task: str):
        def read(model):  # called after every epoch: what MLflow holds by then
            seen_live.append(dict(child_metrics(task).data.metrics))
            return {"ndcg@10": float(len(seen_live))}

        return read

    config = TrainConfig(epochs=3, batch_size=32, seed=3, device="cpu")
    with mlflow.start_run():
        hook.before_pipeline_run(run_params, Pipeline([train, profile]), catalog)
        hook.before_node_run(train, catalog, {})
        task = build_task(rows=64)
        history = fit(task.model, task.dataset, task.step_fn, config, validate("next_item"))
        hook.after_node_run(train, catalog, {}, {"next_item__clue_history": history.history})

        hook.before_node_run(profile, catalog, {})
        histories = {}
        for attribute in ("age", "gender"):
            announce_part(attribute)
            task = build_task(rows=64)
            fitted = fit(task.model, task.dataset, task.step_fn, config, validate("profiling"))
            histories[attribute] = fitted.history
        hook.after_node_run(profile, catalog, {}, {"profiling__clue_history": histories})

    listeners = [h for h in epoch_records.handlers if isinstance(h, LiveEpochMetrics)]
    assert listeners == [], "the listeners leave with their nodes"
    # before epoch 1's validation, epoch 0 is in MLflow; before epoch 0's, nothing is
    assert seen_live[0] == {} and "valid/ndcg_at_10" in seen_live[2]
    assert seen_live[2]["valid/ndcg_at_10"] == 2.0
    run = child_metrics("next_item")
    steps = client.get_metric_history(run.info.run_id, "valid/ndcg_at_10")
    assert [(m.step, m.value) for m in steps] == [(0, 1.0), (1, 2.0), (2, 3.0)], "each once"
    assert run.info.status == "FINISHED"
    run = child_metrics("profiling")
    assert "valid/age/ndcg_at_10" in seen_live[5] and "valid/gender/ndcg_at_10" in seen_live[8]
    steps = client.get_metric_history(run.info.run_id, "valid/gender/ndcg_at_10")
    assert [m.step for m in steps] == [0, 1, 2]


def _one_job_node_started(output: str):
    """A hook inside a fresh parent run, with one training node of ``output`` started."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Node, Pipeline

    from clue_pipeline.hooks import MlflowOutputsHook

    catalog = DataCatalog({"params:finetune": MemoryDataset(PARAMS["finetune"])})
    node = Node(lambda x: None, "params:finetune", output, name="job")
    hook = MlflowOutputsHook()
    run_params = {"pipeline_names": ["finetune"], "node_names": None, "env": None}
    parent = mlflow.start_run()
    hook.before_pipeline_run(run_params, Pipeline([node]), catalog)
    hook.before_node_run(node, catalog, {})
    return hook, node, catalog, parent


def _children_of(store: str, parent) -> list:
    return MlflowClient(store).search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent.info.run_id}'",
    )


def test_a_job_that_skips_leaves_no_child_run(sqlite_store):
    hook, node, catalog, parent = _one_job_node_started("profiling__clue_history")
    hook.after_node_run(node, catalog, {}, {"profiling__clue_history": {"skipped": "no"}})
    mlflow.end_run()
    assert _children_of(sqlite_store, parent) == []


def test_a_job_interrupted_mid_training_leaves_its_child_killed_not_running(sqlite_store):
    hook, _, _, parent = _one_job_node_started("next_item__clue_history")
    hook._abandon()  # what the exit handler does when Ctrl-C ends the process here
    mlflow.end_run()
    (child,) = _children_of(sqlite_store, parent)
    assert child.info.status == "KILLED"
    hook._abandon()  # nothing left open: a second call changes nothing
    assert MlflowClient(sqlite_store).get_run(child.info.run_id).info.status == "KILLED"
