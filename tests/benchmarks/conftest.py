"""A project whose data/ holds prepared next-item datasets, as the GPU scripts read them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from clue_pipeline.experiments.prepared import PREPARED_PATHS
from tests.project import copy_project, kedro_run

SAMPLE_USERS = 300  # at least one pre-training batch (256)
SAMPLE_HISTORY = 20  # the last items of each row: fewer prefix rows to fine-tune on
EMBEDDED = "ml-latest-small"


@pytest.fixture(scope="session")
def prepared_project(tmp_path_factory) -> Path:
    """The embedded data prepared by `kedro run --pipelines ingest,sequences`, its split cut to
    the first users and their last items (MovieLens rows are long: a small sample keeps the dry
    runs quick), and copied under the Amazon datasets' names too."""
    project = copy_project(tmp_path_factory.mktemp("prepared"))
    result = kedro_run(project, "--pipelines", "ingest,sequences")
    assert result.returncode == 0, result.stderr[-4000:]
    split = project / PREPARED_PATHS["next_item_split"].format(dataset=EMBEDDED)
    sample = pd.read_parquet(split).head(SAMPLE_USERS)
    sample["train"] = [items[-SAMPLE_HISTORY:] for items in sample["train"]]
    sample.to_parquet(split)
    for name in ("beauty", "sports"):
        for template in PREPARED_PATHS.values():
            target = project / template.format(dataset=name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(project / template.format(dataset=EMBEDDED), target)
    return project
