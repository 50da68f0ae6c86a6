"""Strict parameters (#35): a key no setting reads stops the run before any node, in one line
naming the key and the nearest valid one."""

from __future__ import annotations

import pytest
from kedro.config import OmegaConfigLoader

from clue_pipeline.config import check_parameters, unknown_keys
from clue_pipeline.settings import CONFIG_LOADER_ARGS
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def params() -> dict:
    return OmegaConfigLoader(str(REPO_ROOT / "conf"), **CONFIG_LOADER_ARGS)["parameters"]


@pytest.mark.parametrize(
    "env", [None, "beauty", "sports", "ml-100k", "ml-1m", "lastfm", "peterrec"]
)
def test_every_environment_has_only_known_keys(env):
    loaded = OmegaConfigLoader(str(REPO_ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
    assert unknown_keys(loaded["parameters"]) == []


RUN_RECIPES = sorted(
    path.name for path in (REPO_ROOT / "conf" / "recipes").glob("*.yml") if path.stem != "ladder"
)


@pytest.mark.parametrize("name", RUN_RECIPES)
def test_every_run_recipe_has_only_known_keys(params, name):
    import yaml

    from clue_pipeline.experiments.recipes import merge

    recipe = yaml.safe_load((REPO_ROOT / "conf" / "recipes" / name).read_text())
    assert unknown_keys(merge(params, recipe["run"]["params"])) == []


@pytest.mark.parametrize(
    ("block", "key", "nearest"),
    [
        ("ingest", {"formatt": "generic"}, "ingest.format"),
        ("pretrain", {"train": {"epoch": 3}}, "pretrain.train.epochs"),
        ("finetune", {"next_item": {"readuot": "ur"}}, "finetune.next_item.readout"),
        ("finetune", {"methods": {"clue": {"backbon": "gru"}}}, "finetune.methods.clue.backbone"),
        (
            "finetune",
            {"overrides": {"clue_probe": {"lrr": 0.1}}},
            "finetune.overrides.clue_probe.lr",
        ),
        (
            "sequences",
            {"profiling": {"tasks": {"age": {"bin": [18]}}}},
            "sequences.profiling.tasks.age.bins",
        ),
    ],
)
def test_a_typo_is_refused_naming_the_nearest_key(params, block, key, nearest):
    typo = {**params, block: _merge(params[block], key)}
    with pytest.raises(ValueError, match=rf"did you mean '{nearest}'\?") as error:
        check_parameters(typo)
    assert "\n" not in str(error.value)


def test_open_maps_take_new_names(params):
    """A new method, task or profiling attribute is a name the user chooses, not a typo."""
    extended = {
        **params,
        "finetune": _merge(params["finetune"], {"methods": {"my_gru": {"name": "my_gru"}}}),
        "sequences": _merge(
            params["sequences"], {"profiling": {"tasks": {"zip": {"column": "z"}}}}
        ),
    }
    assert unknown_keys(extended) == []


def test_an_old_name_is_refused_naming_the_new_one(params):
    old = {**params, "finetune": {**params["finetune"], "next_item_rows": "prefix"}}
    with pytest.raises(ValueError, match="it is now 'finetune.next_item.rows'"):
        check_parameters(old)


def test_runtime_params_with_a_typo_stop_a_real_session_before_any_node(tmp_path):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from clue_pipeline.config.hooks import UnknownParameterError

    bootstrap_project(REPO_ROOT)
    ran = []
    with KedroSession.create(
        project_path=REPO_ROOT, runtime_params={"ingest": {"formatt": "generic"}}
    ) as session:
        session._hook_manager.register(_NodeSpy(ran))
        with pytest.raises(UnknownParameterError, match=r"'ingest.formatt' \(did you mean"):
            session.run(pipeline_names=["ingest"])
    assert ran == []


class _NodeSpy:
    def __init__(self, ran: list) -> None:
        self.ran = ran

    from kedro.framework.hooks import hook_impl

    @hook_impl
    def before_node_run(self, node) -> None:
        self.ran.append(node.name)


def _merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for key, value in change.items():
        out[key] = _merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out
