"""The RecBole side-by-side benchmark's own logic: conversion to atomic files with our split,
the user-by-user split comparison, the metric equivalence and the shared stopping rule.

None of these needs RecBole's venv except the last test, which runs RecBole's metric classes
in that venv and is skipped where it has not been built.
"""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks.peers.compare import (
    RECBOLE_PYTHON,
    compare_split,
    fixed_scores,
    project_scores_metrics,
    stop_reason,
    time_to_reach,
)
from benchmarks.peers.to_atomic import (
    atomic_interactions,
    leave_one_out,
    read_atomic_inter,
    write_atomic,
)

MAX_LEN = 3


@pytest.fixture
def five_users() -> pd.DataFrame:
    """Unsorted users, repeated items, a token (7) shared by valid and test of different users."""
    return pd.DataFrame(
        {
            "user_id": [42, 7, 100, 3, 8],
            "train": [[1, 2, 3, 4, 5], [2], [6, 6, 1], [7, 3], [5, 4, 3, 2]],
            "valid_target": [6, 7, 2, 1, 1],
            "test_target": [7, 1, 2, 5, 6],
        }
    )


def test_atomic_file_gives_our_split_in_recbole_order(five_users, tmp_path):
    paths = write_atomic(five_users, num_items=8, folder=tmp_path, name="peer-toy")
    inter = read_atomic_inter(paths["inter"])
    assert list(inter.columns) == ["user_id", "item_id", "timestamp"]
    assert len(inter) == sum(len(t) + 2 for t in five_users["train"])
    # Shuffle the rows: RecBole sorts by time itself, so file order must not matter.
    shuffled = inter.sample(frac=1.0, random_state=0)
    back = leave_one_out(shuffled).set_index("user_id").loc[five_users["user_id"]]
    assert back["valid_target"].tolist() == five_users["valid_target"].tolist()
    assert back["test_target"].tolist() == five_users["test_target"].tolist()
    assert [list(t) for t in back["train"]] == [list(t) for t in five_users["train"]]
    header = paths["inter"].read_text().splitlines()[0]
    assert header == "user_id:token\titem_id:token\ttimestamp:float"
    items = pd.read_csv(paths["item"], sep="\t")
    assert items.iloc[:, 0].tolist() == list(range(1, 9))  # every item, also unseen token 8


def test_timestamps_are_positions_within_each_user(five_users):
    inter = atomic_interactions(five_users)
    first = inter.groupby("user_id")["timestamp"].min()
    assert (first == 0).all()
    steps = inter.groupby("user_id")["timestamp"].diff().dropna()
    assert (steps == 1).all()


def test_conversion_rejects_bad_input(five_users, tmp_path):
    with pytest.raises(ValueError, match="missing column"):
        atomic_interactions(five_users.drop(columns="test_target"))
    empty = five_users.copy()
    empty.at[1, "train"] = []
    with pytest.raises(ValueError, match="user_id 7 has an empty `train` list"):
        atomic_interactions(empty)
    with pytest.raises(ValueError, match=r"1\.\.6"):
        write_atomic(five_users, num_items=6, folder=tmp_path, name="x")


def test_real_split_round_trips(tmp_path):
    """The embedded MovieLens split, built as the pipelines build it, survives the file."""
    from benchmarks.common import load_next_item

    data = load_next_item("ml-latest-small", max_len=50)
    paths = write_atomic(data.split, data.num_items, tmp_path, "peer-small")
    back = leave_one_out(read_atomic_inter(paths["inter"])).set_index("user_id")
    back = back.loc[data.split["user_id"]]
    assert (back["valid_target"].to_numpy() == data.split["valid_target"].to_numpy()).all()
    assert (back["test_target"].to_numpy() == data.split["test_target"].to_numpy()).all()
    ours = np.concatenate(data.split["train"].to_numpy())
    assert np.array_equal(np.concatenate(back["train"].to_numpy()), ours)


def recbole_style_dump(split: pd.DataFrame, max_len: int) -> dict[str, np.ndarray]:
    """What RecBole's SequentialDataset makes of the atomic file, written out plainly:
    every (prefix, next item) of the whole sequence, the last row per user = test, the one
    before = valid; histories are the last ``max_len`` items, left-aligned. Rows of a user
    are contiguous, users in RecBole's own (file) order."""
    rows = {
        p: {"user": [], "target": [], "history": [], "length": []}
        for p in ("train", "valid", "test")
    }
    for user, train, valid, test in split.itertuples(index=False):
        seq = [*train, valid, test]
        for j in range(1, len(seq)):
            phase = "test" if j == len(seq) - 1 else "valid" if j == len(seq) - 2 else "train"
            history = seq[max(0, j - max_len) : j]
            rows[phase]["user"].append(user)
            rows[phase]["target"].append(seq[j])
            rows[phase]["history"].extend(history)
            rows[phase]["length"].append(len(history))
    return {
        f"{p}_{k}": np.asarray(v, dtype=np.int64) for p, r in rows.items() for k, v in r.items()
    }


def test_compare_split_accepts_recbole_rows_and_finds_a_difference(five_users):
    dump = recbole_style_dump(five_users, MAX_LEN)
    report = compare_split(five_users, dump, MAX_LEN)
    assert report["equal"] is True
    assert report["train"]["rows"] == sum(len(t) - 1 for t in five_users["train"])
    assert report["valid"]["rows"] == report["test"]["rows"] == 5

    wrong = {k: v.copy() for k, v in dump.items()}
    wrong["test_target"][2] += 1
    wrong["valid_history"][0] = 8
    report = compare_split(five_users, wrong, MAX_LEN)
    assert report["equal"] is False
    assert report["test"]["targets_differ"] == 1
    assert report["valid"]["histories_differ"] == 1
    assert report["train"]["equal"] is True


def recbole_formula_metrics(scores: np.ndarray, targets: np.ndarray, k: int = 10) -> dict:
    """RecBole's Collector (topk of the scores, positions of the positive item) and its Hit,
    NDCG and MRR formulas with one positive per user, re-stated in torch."""
    s = torch.from_numpy(scores)
    _, topk = torch.topk(s, k, dim=-1)
    pos = (topk == torch.from_numpy(targets)[:, None]).float()  # (U, k)
    rank_weights = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64))
    hit = pos.max(dim=1).values.double()
    ndcg = (pos.double() * rank_weights).sum(1)  # IDCG = 1 with one positive
    mrr = (pos.double() / torch.arange(1, k + 1, dtype=torch.float64)).sum(1)
    return {"hr@10": hit.mean().item(), "ndcg@10": ndcg.mean().item(), "mrr@10": mrr.mean().item()}


def test_fixed_scores_give_the_same_metrics_through_both_formulas(five_users):
    split = pd.DataFrame(
        {
            "user_id": np.arange(300),
            "train": [[1, 2]] * 300,
            "valid_target": np.random.default_rng(1).integers(1, 501, 300),
            "test_target": np.ones(300, dtype=np.int64),
        }
    )
    scores, targets = fixed_scores(split, num_items=500, seed=0, users=300)
    ours = project_scores_metrics(scores, targets)
    theirs = recbole_formula_metrics(scores, targets)
    assert 0.1 < ours["hr@10"] < 0.9  # the boosted targets spread over and beyond the top 10
    for name in ours:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-9)


def test_stop_reason_is_the_shared_rule():
    def epochs(values, seconds=1.0):
        return [{"train_s": seconds, "eval_s": 0.0, "valid": {"ndcg@10": v}} for v in values]

    assert stop_reason([], patience=2, max_epochs=5, budget_s=100) is None
    assert stop_reason(epochs([0.1, 0.2, 0.2]), 2, 5, 100) is None  # ties are not improvements
    assert stop_reason(epochs([0.1, 0.2, 0.2, 0.1]), 2, 5, 100) == "patience"
    assert stop_reason(epochs([0.1, 0.2, 0.3]), 2, 3, 100) == "max_epochs"
    assert stop_reason(epochs([0.1, 0.2], seconds=60), 2, 5, 100) == "budget"


def test_time_to_reach_counts_training_and_validation():
    history = [
        {"train_s": 2.0, "eval_s": 0.5, "valid": {"ndcg@10": 0.1}},
        {"train_s": 2.0, "eval_s": 0.5, "valid": {"ndcg@10": 0.3}},
        {"train_s": 2.0, "eval_s": 0.5, "valid": {"ndcg@10": 0.2}},
    ]
    assert time_to_reach(history, 0.25) == pytest.approx(5.0)
    assert time_to_reach(history, 0.1) == pytest.approx(2.5)
    assert time_to_reach(history, 0.31) is None


def test_recbole_metric_code_agrees_on_fixed_scores(tmp_path):
    """RecBole's own Hit/NDCG/MRR classes (in its venv) against ours on one score matrix."""
    if not RECBOLE_PYTHON.exists():
        pytest.skip(
            f"RecBole venv not built at {RECBOLE_PYTHON} (bash benchmarks/peers/setup_recbole.sh)"
        )
    split = pd.DataFrame(
        {
            "user_id": np.arange(200),
            "train": [[1, 2]] * 200,
            "valid_target": np.random.default_rng(2).integers(1, 301, 200),
            "test_target": np.ones(200, dtype=np.int64),
        }
    )
    scores, targets = fixed_scores(split, num_items=300, seed=3, users=200)
    np.save(tmp_path / "scores.npy", scores)
    np.save(tmp_path / "targets.npy", targets)
    script = f"""
import json, numpy as np, torch
from recbole.evaluator.metrics import Hit, NDCG, MRR
np.float = np.float_  # as recbole.config.Config sets it on construction (numpy >= 1.24)
s = torch.from_numpy(np.load({str(tmp_path / "scores.npy")!r}))
t = torch.from_numpy(np.load({str(tmp_path / "targets.npy")!r}))
_, topk = torch.topk(s, 10, dim=-1)
pos = torch.zeros_like(s, dtype=torch.int); pos[torch.arange(len(t)), t] = 1
pos_idx = torch.gather(pos, 1, topk).numpy().astype(bool)
pos_len = pos.sum(1).numpy()
cfg = {{"topk": [10], "metric_decimal_place": 12}}
out = {{}}
for name, cls in (("hr@10", Hit), ("ndcg@10", NDCG), ("mrr@10", MRR)):
    m = cls(cfg)
    values = m.metric_info(pos_idx, pos_len) if name == "ndcg@10" else m.metric_info(pos_idx)
    out[name] = float(values.mean(axis=0)[9])
print(json.dumps(out))
"""
    result = subprocess.run(
        [str(RECBOLE_PYTHON), "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    theirs = json.loads(result.stdout.strip().splitlines()[-1])
    ours = project_scores_metrics(scores, targets)
    for name in ours:
        assert math.isclose(ours[name], theirs[name], abs_tol=1e-9), (name, ours, theirs)


def fake_runs() -> dict:
    """Two finished runs in the shape compare.alternate + the test/quit replies produce."""

    def epochs(train_s, eval_s, values):
        return [
            {
                "epoch": i,
                "train_s": train_s,
                "eval_s": eval_s,
                "valid": {"hr@10": 2 * v, "ndcg@10": v, "mrr@10": v / 2},
                "load_average": [3.0, 3.0, 3.0],
            }
            for i, v in enumerate(values)
        ]

    def finish(epoch_list, stopped_by, test_ndcg, rows):
        return {
            "epochs": epoch_list,
            "stopped_by": stopped_by,
            "best_epoch": 1,
            "test": {"hr@10": 0.1, "ndcg@10": test_ndcg, "mrr@10": 0.03},
            "test_eval_s": 1.0,
            "peak_rss_gib": 1.5,
            "ready": {"threads": 1, "train_rows": rows},
        }

    return {
        "recbole": finish(epochs(100.0, 8.0, [0.01, 0.02, 0.015]), "budget", 0.05, 1000),
        "ours": finish(epochs(10.0, 1.0, [0.015, 0.03, 0.02, 0.01]), "patience", 0.06, 100),
    }


def test_summary_ratios_and_time_to_recbole_best():
    from benchmarks.peers.compare import summarise

    summary = summarise(fake_runs())
    assert summary["recbole_best_valid_ndcg@10"] == pytest.approx(0.02)
    ours, theirs = summary["sides"]["ours"], summary["sides"]["recbole"]
    assert theirs["time_to_recbole_best_s"] == pytest.approx(216.0)  # 2 x (100 + 8)
    assert ours["time_to_recbole_best_s"] == pytest.approx(22.0)  # epoch 1 reaches 0.03
    ratios = summary["ratios_ours_over_recbole"]
    assert ratios["epoch_ratio"] == pytest.approx(0.1)
    assert ratios["eval_ratio"] == pytest.approx(1 / 8)
    assert ratios["time_to_best_ratio"] == pytest.approx(22 / 216)
    assert summary["targets_met"] == {
        "epoch_ratio": True,
        "eval_ratio": True,
        "time_to_best_ratio": True,
    }
    runs = fake_runs()
    runs["ours"]["test"]["ndcg@10"] = 0.04  # faster but worse: no target counts as met
    assert not any(summarise(runs)["targets_met"].values())


def test_markdown_says_when_recbole_was_capped():
    from benchmarks.peers.compare import markdown

    text = markdown(fake_payload(SHARED))
    assert "capped (budget), not converged" in text
    assert "RecBole 1.2.1, torch 2.13.0+cpu" in text
    assert text.count("\n| ") >= 4 + 4  # results rows and one curve row per epoch


SHARED = {
    "max_len": 50,
    "hidden": 64,
    "blocks": 2,
    "heads": 4,
    "ffn_hidden": 64,
    "dropout": 0.5,
    "lr": 1e-3,
    "batch_size": 256,
    "seed": 0,
    "device": "cpu",
}


def fake_payload(settings: dict) -> dict:
    from benchmarks.peers.compare import summarise

    runs = fake_runs()
    return {
        "dataset": "toy",
        "users": 5,
        "items": 8,
        "settings": settings,
        "stopping": {"patience": 10, "max_epochs": 200, "budget_s": 300, "wall_limit_s": None},
        "checks": {
            "split": {p: {"rows": 3, "equal": True} for p in ("train", "valid", "test")}
            | {"equal": True},
            "metrics": {
                "users": 5,
                "ours": {"hr@10": 0.5, "ndcg@10": 0.3, "mrr@10": 0.2},
                "recbole": {"hr@10": 0.5, "ndcg@10": 0.3, "mrr@10": 0.2},
                "max_abs_diff": 0.0,
            },
        },
        "runs": runs,
        "summary": summarise(runs),
        "recbole_freeze": ["recbole==1.2.1", "torch==2.13.0+cpu"],
    }


def test_markdown_names_our_recipe_and_recbole_s_own_defaults():
    from benchmarks.peers.compare import RECBOLE_SASREC_DEFAULTS, markdown, recbole_settings
    from benchmarks.rungs import recipe

    settings = {
        **SHARED,
        "recipe": {"name": "recbole_block_last_item", **recipe("recbole_block_last_item")},
        "recbole_block": "default",
    }
    theirs = recbole_settings(settings)
    assert theirs["heads"] == 2 and theirs["ffn_hidden"] == 256 and theirs["activation"] == "gelu"
    assert "recipe" not in theirs and "recbole_block" not in theirs  # RecBole reads flat keys
    matched = recbole_settings({**settings, "recbole_block": "matched"})
    assert matched["heads"] == SHARED["heads"] and matched["ffn_hidden"] == 64
    text = markdown(fake_payload(settings))
    assert "RecBole's SASRec with its own SASRec defaults" in text
    assert "2 heads, FFN 256 gelu" in text
    assert "the recipe `recbole_block_last_item`" in text and "ours prefix rows" in text
    assert RECBOLE_SASREC_DEFAULTS["ffn_hidden"] == 256


def test_our_side_trains_the_recipe_it_is_given():
    from benchmarks.peers.compare import epochs_per_recbole_epoch
    from benchmarks.peers.ours_side import side_settings
    from benchmarks.rungs import recipe

    loop = {**SHARED, "max_epochs": 7, "bucket_by_length": True}
    encoder, head, rows, train = side_settings(loop, num_items=30)
    assert (encoder.heads, encoder.ffn_hidden, rows, head.readout) == (4, 64, "user", "ur")
    chosen = recipe("recbole_block_last_item")
    encoder, head, rows, train = side_settings({**loop, "recipe": chosen}, num_items=30)
    assert encoder.norm == "post" and encoder.ffn_hidden == 256 and encoder.heads == 2
    assert head.readout == "last_item" and rows == "prefix"
    assert train.epochs == 7 and train.grad_clip == chosen["train"]["grad_clip"]
    # prefix rows are RecBole's own rows: an epoch of each takes the same steps
    split = pd.DataFrame({"train": [list(range(1, 9))] * 4})
    assert epochs_per_recbole_epoch(split, 2, "prefix") == 1
    assert epochs_per_recbole_epoch(split, 2, "user") > 1


class FakeWorker:
    """Replies like a worker whose epochs take ``epoch_s`` and score ``values`` in turn."""

    def __init__(self, epoch_s: float, values: list[float], timeline=None, mark: str = "") -> None:
        self.epoch_s, self.values, self.log = epoch_s, values, []
        self.timeline, self.mark = timeline if timeline is not None else [], mark

    def request(self, message: dict) -> dict:
        self.log.append(message["cmd"])
        if message["cmd"] == "go":
            self.timeline.append(self.mark)
        if message["cmd"] == "stop":
            return {"finished": True}
        epoch = self.log.count("go") - 1
        if epoch >= len(self.values):
            return {"finished": True}
        return {
            "epoch": epoch,
            "train_s": self.epoch_s,
            "eval_s": 0.0,
            "valid": {"ndcg@10": self.values[epoch]},
        }


def test_turns_let_the_fast_side_train_as_long_as_the_slow_side(tmp_path):
    from benchmarks.peers.compare import Limits, alternate

    timeline = []
    slow = FakeWorker(10.0, [0.1, 0.2, 0.3], timeline, "R")
    fast = FakeWorker(1.0, [0.01 * i for i in range(1, 40)], timeline, "o")
    limits = Limits(patience=5, max_epochs=100, budget_s=1e9)
    runs = alternate({"recbole": slow, "ours": fast}, limits, tmp_path / "p.json")
    assert len(runs["recbole"]["epochs"]) == 3
    # one slow epoch, then ten fast ones (as long), and so on: the fast side is not held
    # to the slow side's number of epochs
    assert "".join(timeline[:23]) == "R" + "o" * 10 + "R" + "o" * 10 + "R"
    assert len(runs["ours"]["epochs"]) == 39
    assert (tmp_path / "p.json").exists()


def test_turns_stop_a_side_by_patience_and_wall_limit(tmp_path):
    from benchmarks.peers.compare import Limits, alternate

    flat = FakeWorker(1.0, [0.5, 0.4, 0.4, 0.4, 0.4, 0.4])
    slow = FakeWorker(10.0, [0.1] * 50)
    runs = alternate(
        {"recbole": slow, "ours": flat},
        Limits(patience=3, max_epochs=100, budget_s=1e9, wall_limit_s=0.0),
        tmp_path / "p.json",
    )
    # the wall limit (0 s here) lets each side run its first epoch, then none
    assert runs["recbole"]["stopped_by"] == "wall_limit" and len(runs["recbole"]["epochs"]) == 1
    flat = FakeWorker(1.0, [0.5, 0.4, 0.4, 0.4, 0.4, 0.4])
    runs = alternate(
        {"recbole": FakeWorker(10.0, [0.1] * 2), "ours": flat},
        Limits(patience=3, max_epochs=100, budget_s=1e9),
        tmp_path / "p.json",
    )
    assert runs["ours"]["stopped_by"] == "patience"
    assert len(runs["ours"]["epochs"]) == 4  # best at epoch 0, three epochs without a gain
    assert flat.log[-1] == "stop"


def test_our_patience_counts_recbole_epochs_of_optimiser_steps(five_users, tmp_path):
    from benchmarks.peers.compare import Limits, alternate, epochs_per_recbole_epoch

    # RecBole rows: 4 + 0 + 2 + 1 + 3 = 10 prefixes, 5 steps of 2; ours: 5 users, 3 steps of 2
    assert epochs_per_recbole_epoch(five_users, batch_size=2) == 2
    assert epochs_per_recbole_epoch(five_users, batch_size=100) == 1
    limits = Limits(patience=2, max_epochs=10, budget_s=1e9, epochs_per_unit={"ours": 4})
    assert limits.for_side("ours") == (8, 40) and limits.for_side("recbole") == (2, 10)
    flat = [0.5] + [0.4] * 20
    runs = alternate(
        {"recbole": FakeWorker(10.0, flat), "ours": FakeWorker(1.0, flat)},
        limits,
        tmp_path / "p.json",
    )
    assert runs["recbole"]["stopped_by"] == "patience" and len(runs["recbole"]["epochs"]) == 3
    assert runs["ours"]["stopped_by"] == "patience" and len(runs["ours"]["epochs"]) == 9
