"""`kedro run --pipelines=tune`: a persistent Optuna study that resumes, trials as nested
MLflow runs under the tuning run, best parameters written in the shape of conf/."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.project import kedro_run

pytestmark = pytest.mark.slow

TINY_STUDY = (
    "--params=tune.n_trials=3,tune.budget.pretrain_epochs=1,tune.budget.finetune_epochs=2,"
    "tune.storage=sqlite:///data/07_model_output/optuna-test.db"
)


def test_study_resumes_and_nests_trials_under_the_tuning_run(finished_project: Path):
    for _ in range(2):
        result = kedro_run(finished_project, "--pipelines=tune", TINY_STUDY)
        assert result.returncode == 0, result.stderr[-3000:]

    storage = f"sqlite:///{finished_project / 'data' / '07_model_output' / 'optuna-test.db'}"
    study = optuna.load_study(study_name="clue-dropout-ml-latest-small", storage=storage)
    assert len(study.trials) == 6
    assert all(0.1 <= t.params["dropout"] <= 0.9 for t in study.trials)

    client = MlflowClient(tracking_uri=f"sqlite:///{finished_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("clue-pipeline")
    tuning_runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`mlflow.runName` = 'ml-latest-small: tune'",
    )
    assert len(tuning_runs) == 2
    for parent in tuning_runs:
        children = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        )
        assert len(children) == 3
        assert all("dropout" in child.data.params for child in children)

    best_folder = finished_project / "data" / "08_reporting" / "ml-latest-small" / "tuning"
    version = sorted((best_folder / "best_parameters.yml").iterdir())[-1]
    best = yaml.safe_load((version / "best_parameters.yml").read_text())
    assert best["encoder"]["dropout"] == pytest.approx(study.best_trial.params["dropout"])
    assert (best_folder / "dropout_sensitivity.png").read_bytes()[:4] == b"\x89PNG"
