"""RecBole 1.2.1 SASRec as an epoch-by-epoch worker of ``compare.py`` (RecBole's own venv).

    benchmarks/peers/.venv-recbole/bin/python benchmarks/peers/recbole_side.py \
        --atomic DIR --dataset NAME --workdir DIR [--threads 1] [--settings JSON]

It builds RecBole's dataset, dataloaders, SASRec and Trainer exactly as ``run_recbole`` does,
then runs RecBole's own ``Trainer._train_epoch`` and ``Trainer._valid_epoch`` one epoch per
``go`` (see protocol.py), so every timed step is RecBole's code. Early stopping is decided by the
parent with the same rule on both sides (stop after ``patience`` epochs without a strictly higher
validation NDCG@10); the best epoch's weights are kept in memory and restored for the test.

Extra commands: ``dump_split`` writes RecBole's view of the leave-one-out split (users, targets,
histories as our tokens) to an ``.npz`` for the parent to compare user by user; ``metric_check``
runs a fixed score matrix from an ``.npy`` file through RecBole's collector and evaluator.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

# RecBole 1.2.1 reloads its checkpoints with torch.load's pre-2.6 default.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from protocol import Channel, load_average, peak_rss_gib  # noqa: E402

# Settings of the comparison; compare.py passes its own (the same it gives our side).
DEFAULT_SETTINGS = {
    "max_len": 50,
    "hidden": 64,
    "blocks": 2,
    "heads": 4,
    "ffn_hidden": 64,
    "activation": "relu",
    "dropout": 0.5,
    "lr": 1e-3,
    "batch_size": 256,
    "eval_batch_size": 4096,
    "seed": 0,
    "device": "cpu",
}


def recbole_config(atomic: Path, dataset: str, workdir: Path, settings: dict) -> dict:
    """RecBole's config dict for SASRec with CE over all items and our leave-one-out split."""
    use_gpu = settings["device"] == "cuda" and torch.cuda.is_available()
    return {
        "data_path": str(atomic),
        "dataset": dataset,
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]},
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "MAX_ITEM_LIST_LENGTH": settings["max_len"],
        "n_layers": settings["blocks"],
        "n_heads": settings["heads"],
        "hidden_size": settings["hidden"],
        "inner_size": settings["ffn_hidden"],
        "hidden_act": settings["activation"],
        "hidden_dropout_prob": settings["dropout"],
        "attn_dropout_prob": settings["dropout"],
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "learning_rate": settings["lr"],
        "weight_decay": 0.0,
        "train_batch_size": settings["batch_size"],
        "eval_batch_size": settings["eval_batch_size"],
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "mode": "full",
            "group_by": "user",
        },
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "metric_decimal_place": 10,
        "seed": settings["seed"],
        "reproducibility": True,
        "use_gpu": use_gpu,
        "worker": 0,
        "show_progress": False,
        "checkpoint_dir": str(workdir / "saved"),
        "log_wandb": False,
    }


class RecBoleWorker:
    def __init__(self, args: argparse.Namespace) -> None:
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.model.sequential_recommender import SASRec
        from recbole.trainer import Trainer
        from recbole.utils import init_seed

        settings = {**DEFAULT_SETTINGS, **json.loads(args.settings)}
        started = time.perf_counter()
        config = Config(
            model="SASRec",
            dataset=args.dataset,
            config_dict=recbole_config(args.atomic, args.dataset, args.workdir, settings),
        )
        torch.set_num_threads(args.threads)
        init_seed(config["seed"], config["reproducibility"])
        self.dataset = create_dataset(config)
        self.train_data, self.valid_data, self.test_data = data_preparation(config, self.dataset)
        init_seed(config["seed"], config["reproducibility"])
        self.model = SASRec(config, self.train_data._dataset).to(config["device"])
        self.trainer = Trainer(config, self.model)
        torch.set_num_threads(args.threads)  # after RecBole's own setup, which may change it
        self.setup_s = time.perf_counter() - started
        self.epoch = 0
        self.best_score: float | None = None
        self.best_state: dict | None = None
        self.best_epoch = -1
        self.info = {
            "setup_s": self.setup_s,
            "users": int(self.dataset.user_num - 1),
            "items": int(self.dataset.item_num - 1),
            "train_rows": len(self.train_data._dataset),
            "valid_rows": len(self.valid_data._dataset),
            "test_rows": len(self.test_data._dataset),
            "threads": torch.get_num_threads(),
            "device": str(config["device"]),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "config": {
                k: _jsonable(v)
                for k, v in recbole_config(
                    args.atomic, args.dataset, args.workdir, settings
                ).items()
            },
        }

    def go(self) -> dict:
        """One training epoch then one validation, both RecBole's own code, timed apart."""
        load = load_average()
        start = time.perf_counter()
        loss = self.trainer._train_epoch(self.train_data, self.epoch, show_progress=False)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        score, result = self.trainer._valid_epoch(self.valid_data, show_progress=False)
        eval_s = time.perf_counter() - start
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = float(score), self.epoch
            self.best_state = copy.deepcopy(self.model.state_dict())
        record = {
            "epoch": self.epoch,
            "train_s": train_s,
            "eval_s": eval_s,
            "loss": float(loss) if not isinstance(loss, tuple) else float(sum(loss)),
            "valid": _metrics(result),
            "load_average": load,
        }
        self.epoch += 1
        return record

    def test(self) -> dict:
        self.model.load_state_dict(self.best_state)
        start = time.perf_counter()
        result = self.trainer.evaluate(self.test_data, load_best_model=False)
        return {
            "best_epoch": self.best_epoch,
            "test": _metrics(result),
            "test_eval_s": time.perf_counter() - start,
        }

    def dump_split(self, path: Path) -> dict:
        """RecBole's rows per phase as our tokens: user, target, history (left-aligned)."""
        arrays = {}
        for phase, loader in (
            ("train", self.train_data),
            ("valid", self.valid_data),
            ("test", self.test_data),
        ):
            feat = loader._dataset.inter_feat
            arrays[f"{phase}_user"] = _tokens(self.dataset, "user_id", feat["user_id"])
            arrays[f"{phase}_target"] = _tokens(self.dataset, "item_id", feat["item_id"])
            lists = feat["item_id_list"].numpy()
            lengths = feat["item_length"].numpy()
            keep = np.arange(lists.shape[1])[None, :] < lengths[:, None]
            arrays[f"{phase}_history"] = _tokens(self.dataset, "item_id", lists[keep])
            arrays[f"{phase}_length"] = lengths.astype(np.int64)
        np.savez(path, **arrays)
        return {
            "written": str(path),
            "rows": {p: int(len(arrays[f"{p}_user"])) for p in ("train", "valid", "test")},
        }

    def metric_check(self, scores_path: Path, targets_path: Path) -> dict:
        """Fixed scores (U, N) over our item indices through RecBole's collector + evaluator.

        RecBole's columns are its internal ids (0 = padding); our column j is token j + 1,
        so the matrix is permuted into RecBole's id order before collection.
        """
        scores = torch.from_numpy(np.load(scores_path)).float()
        targets = torch.from_numpy(np.load(targets_path)).long()
        num_users, num_items = scores.shape
        token_ids = self.dataset.token2id("item_id", [str(t) for t in range(1, num_items + 1)])
        full = torch.full((num_users, self.dataset.item_num), -np.inf)
        full[:, torch.as_tensor(token_ids)] = scores
        positive_i = torch.as_tensor(token_ids)[targets]
        collector = self.trainer.eval_collector
        collector.eval_batch_collect(full, None, torch.arange(num_users), positive_i)
        result = self.trainer.evaluator.evaluate(collector.get_data_struct())
        return {"metrics": _metrics(result)}


def _tokens(dataset, field: str, ids) -> np.ndarray:
    """RecBole internal ids -> our integer tokens (RecBole keeps tokens as strings)."""
    ids = np.asarray(ids.numpy() if hasattr(ids, "numpy") else ids)
    return dataset.field2id_token[field][ids].astype(np.int64)


def _metrics(result) -> dict:
    return {
        "hr@10": float(result["hit@10"]),
        "ndcg@10": float(result["ndcg@10"]),
        "mrr@10": float(result["mrr@10"]),
    }


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--atomic", type=Path, required=True, help="folder holding NAME/NAME.inter")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", default="{}", help="JSON overrides of DEFAULT_SETTINGS")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.workdir)  # RecBole writes log/ and log_tensorboard/ in the working folder
    channel = Channel()
    worker = RecBoleWorker(args)
    channel.send({"ready": True, **worker.info})
    while True:
        message = channel.receive()
        cmd = message["cmd"]
        if cmd == "go":
            channel.send(worker.go())
        elif cmd == "stop":
            channel.send({"finished": True, "epochs": worker.epoch})
        elif cmd == "test":
            channel.send(worker.test())
        elif cmd == "dump_split":
            channel.send(worker.dump_split(Path(message["path"])))
        elif cmd == "metric_check":
            channel.send(worker.metric_check(Path(message["scores"]), Path(message["targets"])))
        elif cmd == "quit":
            channel.send({"peak_rss_gib": peak_rss_gib()})
            return 0
        else:
            channel.send({"error": f"unknown command {cmd!r}"})


if __name__ == "__main__":
    sys.exit(main())
