"""`kedro run --pipelines=tune` on the embedded data: a persistent Optuna study that resumes,
trials as nested MLflow runs under the tuning run, and the best trial written as the recipe
`conf/recipes/tuned_<dataset>.yml` that a run loads.

The project is prepared by `ingest` and `sequences` only (what `tune` reads); each trial is one
pre-training and two fine-tuning epochs on one thread.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from clue_pipeline.config.tuning import KNOB_PARAMETERS
from tests.project import copy_project, kedro_run

pytestmark = pytest.mark.slow

DATASET = "ml-latest-small"
STUDY = f"clue-recipe-{DATASET}"
TINY_STUDY = {
    "tune": {
        "storage": "sqlite:///data/07_model_output/optuna-test.db",
        "n_trials": 2,
        "budget": {"pretrain_epochs": 1, "finetune_epochs": 2},
        "search_space": {
            "dropout": [0.1, 0.9],
            "finetune_lr": [0.0005, 0.005],
            "blocks": [1, 2],
            "max_len": [30, 50],
        },
    }
}


@pytest.fixture(scope="module")
def tuned_project(tmp_path_factory) -> SimpleNamespace:
    """The embedded data prepared, then one tune run of two trials (a tiny study in
    conf/local, as a user would set one: lists cannot go through --params); what that run
    wrote is kept here, as a later test adds trials."""
    project = copy_project(tmp_path_factory.mktemp("tune"))
    (project / "conf" / "local" / "parameters_tune.yml").write_text(yaml.safe_dump(TINY_STUDY))
    for args in (("--pipelines=ingest,sequences",), ("--pipelines=tune",)):
        result = kedro_run(project, *args)
        assert result.returncode == 0, result.stderr[-3000:]
    study = _study(project)
    text, params = _recipe(project)
    return SimpleNamespace(
        path=project, trials=len(study.trials), best=study.best_trial, text=text, params=params
    )


def _study(project: Path) -> optuna.Study:
    storage = f"sqlite:///{project / 'data' / '07_model_output' / 'optuna-test.db'}"
    return optuna.load_study(study_name=STUDY, storage=storage)


def _recipe(project: Path) -> tuple[str, dict]:
    text = (project / "conf" / "recipes" / f"tuned_{DATASET}.yml").read_text()
    return text, yaml.safe_load(text)["run"]["params"]


def _at(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


def test_the_best_trial_is_written_as_a_recipe_with_its_study_in_the_header(tuned_project):
    best, params = tuned_project.best, tuned_project.params

    assert tuned_project.trials == 2
    assert best.params.keys() == TINY_STUDY["tune"]["search_space"].keys()
    for knob, value in best.params.items():
        assert _at(params, KNOB_PARAMETERS[knob]) == pytest.approx(value), knob
    header = tuned_project.text.split("\nrun:")[0]
    assert f"study {STUDY!r} in sqlite:///data/07_model_output/optuna-test.db" in header
    assert f"trial {best.number} of 2" in header
    assert f"validation ndcg@10 {best.value:.6f}" in header
    assert "UTC" in header and "written 20" in header


def test_the_recipe_loads_as_a_run_configuration(tuned_project):
    """What `kedro run --config <recipe>` does: its params are the session's runtime
    parameters, checked by the strict hook and merged over the run-environment's."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = tuned_project.path
    _, params = _recipe(project)
    tracking_uri = mlflow.get_tracking_uri()  # kedro-mlflow points it at the project's
    bootstrap_project(project)
    try:
        with KedroSession.create(project_path=project, runtime_params=params) as session:
            merged = session.load_context().params
    finally:
        mlflow.set_tracking_uri(tracking_uri)
    for dotted in ("encoder.dropout", "encoder.blocks", "encoder.max_len", "finetune.train.lr"):
        assert _at(merged, dotted) == _at(params, dotted), dotted
    assert merged["finetune"]["train"]["epochs"] == 15  # the rest keeps the environment's


def test_a_second_run_adds_trials_to_the_same_study_nested_under_its_run(tuned_project):
    project = tuned_project.path
    result = kedro_run(project, "--pipelines=tune", "--params=tune.n_trials=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trial 2 (1 of 1 this run)" in result.stderr  # progress, one line a trial

    study = _study(project)
    assert len(study.trials) == 3
    assert all(0.1 <= t.params["dropout"] <= 0.9 for t in study.trials)
    text, params = _recipe(project)
    assert f"trial {study.best_trial.number} of 3" in text
    assert params["encoder"]["dropout"] == pytest.approx(study.best_trial.params["dropout"])

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("clue-pipeline")
    tuning_runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.runName` = '{DATASET}: tune'",
        order_by=["attributes.start_time ASC"],
    )
    children = [
        client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        )
        for parent in tuning_runs
    ]
    assert [len(c) for c in children] == [2, 1]
    assert all("dropout" in child.data.params for c in children for child in c)

    best_folder = project / "data" / "08_reporting" / DATASET / "tuning"
    version = sorted((best_folder / "best_parameters.yml").iterdir())[-1]
    best = yaml.safe_load((version / "best_parameters.yml").read_text())
    assert best["encoder"]["dropout"] == pytest.approx(study.best_trial.params["dropout"])
    assert (best_folder / "dropout_sensitivity.png").read_bytes()[:4] == b"\x89PNG"
