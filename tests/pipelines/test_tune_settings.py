"""`tune`'s settings and recipe file, without a study: absurd ranges are refused naming the
parameter before any trial trains, the best trial's knobs land on the parameters they set, and
the recipe file is replaced whole or not at all."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from kedro.io.core import DatasetError

from clue_pipeline.config import TrainConfig, check_parameters, parse_finetune, parse_tune
from clue_pipeline.config.tuning import check_space_fits_encoder
from clue_pipeline.datasets import RecipeDataset
from clue_pipeline.models.encoders import EncoderConfig
from clue_pipeline.pipelines.tune.nodes import tune_clue
from clue_pipeline.pipelines.tune.recipe import FIRST_LINE, tuned_parameters
from clue_pipeline.tasks.tuning import TrialRecipe

ENCODER = {"kind": "transformer", "hidden": 64, "max_len": 50, "norm": "pre"}


def _tune(**space) -> dict:
    return {"study_name": "s", "search_space": {"dropout": None, **space}}


@pytest.mark.parametrize(
    ("tune", "named"),
    [
        (_tune(finetune_lr=[0.01, 0.001]), "tune.search_space.finetune_lr"),  # low > high
        (_tune(pretrain_lr=[-0.001, 0.01]), "tune.search_space.pretrain_lr"),  # negative lr
        (_tune(dropout=[0.2, 1.5]), "tune.search_space.dropout"),
        (_tune(weight_decay=[-1e-4, 1e-4]), "tune.search_space.weight_decay"),
        (_tune(blocks=[0, 2]), "tune.search_space.blocks"),
        (_tune(blocks=[1.5, 3]), "tune.search_space.blocks"),
        (_tune(finetune_lr=[0.001]), "tune.search_space.finetune_lr"),
        (_tune(heads=[]), "tune.search_space.heads"),
        (_tune(), "tune.search_space: no knob searched"),
        ({**_tune(dropout=[0.1, 0.5]), "n_trials": 0}, "tune.n_trials"),
        ({**_tune(dropout=[0.1, 0.5]), "pruner": {"kind": "hyperband"}}, "tune.pruner.kind"),
        ({**_tune(dropout=[0.1, 0.5]), "budget": {"pretrain_epochs": 0}}, "pretrain_epochs"),
        (_tune(dropuot=[0.1, 0.5]), "tune.search_space: unknown parameter"),
    ],
)
def test_absurd_search_spaces_are_refused_naming_the_parameter(tune, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.").replace("[", r"\[")):
        parse_tune(tune)


@pytest.mark.parametrize(
    ("space", "encoder", "named"),
    [
        ({"heads": [3]}, ENCODER, "tune.search_space.heads"),  # does not divide hidden 64
        ({"heads": [1, 2]}, {**ENCODER, "kind": "gru"}, "encoder.kind 'gru' has no heads"),
        ({"frequency_mix": [0.3, 0.9]}, ENCODER, "needs encoder.norm post"),
        ({"max_len": [50, 200]}, ENCODER, "at most encoder.max_len = 50"),
        ({"frequency_cutoff": [1, 40]}, {**ENCODER, "norm": "post"}, "frequency_cutoff"),
    ],
)
def test_knobs_the_backbone_or_the_data_cannot_take_are_refused(space, encoder, named):
    settings = parse_tune(_tune(**space))
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        check_space_fits_encoder(settings.search_space, encoder)


def test_the_node_refuses_before_reading_any_data():
    # split and item_index are never touched: the ranges are checked first
    with pytest.raises(ValueError, match=r"tune\.search_space\.finetune_lr"):
        tune_clue(None, None, ENCODER, {}, {}, {}, _tune(finetune_lr=[1.0, 0.1]), False, "d")


def test_the_old_lr_key_is_refused_naming_its_new_name():
    with pytest.raises(ValueError, match="tune.search_space.pretrain_lr"):
        check_parameters({"tune": {"search_space": {"lr": [0.001, 0.01]}}})


def test_the_knobs_land_on_the_parameters_that_decide_for_clue_next_item():
    base = TrialRecipe(
        encoder=EncoderConfig(num_items=10, max_len=50),
        views={"strategies": ["dropout"], "mask_ratio": 0.3, "crop_ratio": 0.3},
        pretrain=TrainConfig(epochs=1, batch_size=2),
        finetune=TrainConfig(epochs=1, batch_size=2, monitor="ndcg@10"),
    )
    finetuning = parse_finetune(
        {"train": {"epochs": 1, "batch_size": 2}, "overrides": {"clue": {"lr": 0.1}}}
    )
    knobs = {"dropout": 0.25, "finetune_lr": 0.002, "weight_decay": 1e-5, "max_len": 30}
    knobs |= {"pretrain_lr": 0.003, "strategies": "mask+crop", "ratio": 0.4}
    params = tuned_parameters(knobs, {**ENCODER, "blocks": 2}, base, finetuning)

    assert params["encoder"] == {**ENCODER, "blocks": 2, "dropout": 0.25, "max_len": 30}
    assert params["finetune"]["overrides"]["clue"]["lr"] == 0.002  # where the env sets it
    assert params["finetune"]["train"]["weight_decay"] == 1e-5
    assert params["pretrain"]["train"]["lr"] == 0.003
    views = params["augment"]["views"]
    assert views["strategies"] == ["mask", "crop"] and views["crop_ratio"] == 0.4
    check_parameters(params)  # every key one `kedro run --config` accepts


def test_the_recipe_file_is_replaced_whole_or_not_at_all(tmp_path: Path, monkeypatch):
    path = tmp_path / "recipes" / "tuned_d.yml"
    dataset = RecipeDataset(filepath=str(path))
    dataset.save(
        {"header": f"{FIRST_LINE}\ntrial 3", "run": {"params": {"encoder": {"dropout": 0.2}}}}
    )
    text = path.read_text()
    assert text.startswith(f"# {FIRST_LINE}\n# trial 3\n")
    assert yaml.safe_load(text)["run"]["params"]["encoder"]["dropout"] == 0.2
    assert dataset.load()["header"] == f"{FIRST_LINE}\ntrial 3"

    def killed(fd):
        raise OSError("killed while writing")

    monkeypatch.setattr("clue_pipeline.training.checkpoint.os.fsync", killed)
    with pytest.raises(DatasetError):
        dataset.save({"header": FIRST_LINE, "run": {"params": {"encoder": {"dropout": 0.7}}}})
    assert path.read_text() == text  # the previous recipe, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["tuned_d.yml"]  # no temp file


def test_a_recipe_not_written_by_tune_is_never_replaced(tmp_path: Path):
    path = tmp_path / "tuned_d.yml"
    path.write_text("# my own recipe\nrun:\n  params: {}\n")
    with pytest.raises(DatasetError, match="not written by this pipeline"):
        RecipeDataset(filepath=str(path)).save({"header": FIRST_LINE, "run": {"params": {}}})
    assert path.read_text() == "# my own recipe\nrun:\n  params: {}\n"


def test_no_completed_trial_means_no_recipe():
    from clue_pipeline.pipelines.tune.recipe import recipe_document

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    with pytest.raises(ValueError, match="no completed trial"):
        recipe_document(study, "d", "sqlite:///x.db", ENCODER, None, None, {})
