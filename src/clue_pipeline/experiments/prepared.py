"""A dataset's next-item data as the project prepares it: the catalog's outputs of
`kedro run --env <env> --pipelines ingest,sequences`, read back, never rebuilt outside Kedro.

So a benchmark or a GPU check trains on the split and item index that the pipelines would, with
the run-environment's own settings (``sequences.min_seq_len``, ``encoder.max_len``...). Reading
needs pandas and pyarrow only; preparing goes through the runner's ``kedro run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clue_pipeline.data.tokens import special_tokens
from clue_pipeline.tasks.batching import model_inputs
from clue_pipeline.tasks.task_data import NextItemData, next_item_data

# Where the catalog writes them (conf/base/catalog_sequences.yml), relative to the project,
# with {dataset} = the run-environment's `globals.dataset`.
PREPARED_PATHS = {
    "item_index": "data/03_primary/{dataset}/item_index.parquet",
    "next_item_split": "data/05_model_input/{dataset}/next_item_split.parquet",
}


@dataclass
class NextItemDataset:
    name: str
    item_index: pd.DataFrame
    split: pd.DataFrame

    @property
    def num_items(self) -> int:
        return len(self.item_index)

    @property
    def num_users(self) -> int:
        return len(self.split)

    def task(self, max_len: int) -> NextItemData:
        """Fine-tuning rows, validation and test inputs, as the finetune pipeline builds them."""
        return next_item_data(self.split, max_len, self.num_items)

    def pretrain_tokens(self, max_len: int) -> np.ndarray:
        """(U, max_len + 1): each user's training part, then [UR] (the pre-training corpus)."""
        return model_inputs(self.split["train"], max_len, special_tokens(self.num_items).user)


def read_prepared(project_dir: Path, dataset: str) -> NextItemDataset:
    """The prepared outputs under ``project_dir``; missing ones say how to make them."""
    paths = {
        key: Path(project_dir) / template.format(dataset=dataset)
        for key, template in PREPARED_PATHS.items()
    }
    absent = [str(path) for path in paths.values() if not path.is_file()]
    if absent:
        raise FileNotFoundError(
            f"{', '.join(absent)} not found: prepare the dataset first with "
            f"`kedro run --env {dataset} --pipelines ingest,sequences` in {project_dir}"
        )
    return NextItemDataset(
        dataset,
        pd.read_parquet(paths["item_index"]),
        pd.read_parquet(paths["next_item_split"]),
    )


def prepared_next_item(dataset: str, project_dir: Path, env: str | None = None) -> NextItemDataset:
    """Run the dataset's ingest and sequences pipelines (run-environment ``env``, by default
    :func:`dataset_environment`'s), then read what they wrote."""
    from clue_pipeline.experiments.runner import RunnerConfig, prepare

    envs = {dataset: env or dataset_environment(dataset, project_dir)}
    prepare(dataset, RunnerConfig(project_dir=Path(project_dir), envs=envs))
    return read_prepared(project_dir, dataset)


def dataset_environment(dataset: str, project_dir: Path) -> str | None:
    """The run-environment that prepares ``dataset``: Kedro's default one (None) for the data
    conf/base itself names (``globals.yml``'s ``dataset``, the embedded set, which has no
    folder of its own), else the environment of the dataset's name (``conf/<dataset>``)."""
    import yaml

    base = yaml.safe_load((Path(project_dir) / "conf" / "base" / "globals.yml").read_text())
    return None if dataset == base.get("dataset") else dataset
