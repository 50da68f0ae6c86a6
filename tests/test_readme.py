"""README is a guide that works: every code block in it is a command the project supports,
its configuration exists, its own-data example ingests a file, and its links lead somewhere.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from clue_pipeline.pipeline_registry import pipeline_names
from clue_pipeline.pipelines.ingest import create_pipeline as create_ingest_pipeline
from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
MAX_LINES = 350
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
CONF_FILE = re.compile(r"^#\s*(conf/[\w.-]+/[\w.-]+\.ya?ml)\s*$")
KEDRO_RUN_OPTIONS = {"--pipelines", "--pipeline", "--env", "-e", "--params", "--config"}
EMBEDDED_MOVIES = REPO_ROOT / "data" / "01_raw" / "ml-latest-small" / "movies.csv"


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def readme_blocks(language: str | set[str]) -> list[str]:
    wanted = {language} if isinstance(language, str) else language
    return [body for lang, body in blocks(README.read_text()) if lang in wanted]


def command_lines(body: str) -> Iterator[list[str]]:
    """Each shell command of a block as words: continuations joined, comments dropped."""
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            yield words


def written_conf_files() -> dict[str, str]:
    """The conf files README asks the reader to create: yaml blocks headed by their path."""
    files = {}
    for body in readme_blocks("yaml"):
        first = body.splitlines()[0] if body.strip() else ""
        if match := CONF_FILE.match(first):
            files[match.group(1)] = body
    return files


def written_envs() -> set[str]:
    return {Path(path).parts[1] for path in written_conf_files()}


def base_config() -> dict[str, Any]:
    from clue_pipeline.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(REPO_ROOT / "conf"), **CONFIG_LOADER_ARGS)
    return {"parameters": loader["parameters"], "globals": loader["globals"]}


def missing_keys(given: Any, known: Any, prefix: str = "") -> list[str]:
    """Keys of ``given`` that ``known`` (conf/base) lacks, as dotted paths."""
    if not isinstance(given, dict) or not isinstance(known, dict):
        return []
    missing = []
    for key, value in given.items():
        path = f"{prefix}{key}"
        if key not in known:
            missing.append(path)
        else:
            missing += missing_keys(value, known[key], f"{path}.")
    return missing


def makefile_targets_and_variables() -> tuple[set[str], set[str]]:
    text = (REPO_ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", text, re.MULTILINE))
    variables = set(re.findall(r"^(\w+)\s*[?:]?=", text, re.MULTILINE))
    variables |= set(re.findall(r"\$\((\w+)\)", text))
    return targets, variables


def split_env_assignments(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words[0].split("=", 1)
        env[name] = value
        words = words[1:]
    return env, words


def options(words: list[str]) -> list[tuple[str, str | None]]:
    """``--name=value`` and ``--name value`` pairs (a lone flag gets None)."""
    pairs, i = [], 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-"):
            raise AssertionError(f"unexpected argument {word!r} in {' '.join(words)!r}")
        if "=" in word:
            pairs.append(tuple(word.split("=", 1)))
            i += 1
        elif i + 1 < len(words) and not words[i + 1].startswith("-"):
            pairs.append((word, words[i + 1]))
            i += 2
        else:
            pairs.append((word, None))
            i += 1
    return pairs


def expand_braces(name: str) -> list[str]:
    """``a.{json,md}`` -> ``a.json``, ``a.md`` (the shell's brace expansion, one level)."""
    match = re.search(r"\{([^{}]*)\}", name)
    if not match:
        return [name]
    head, tail = name[: match.start()], name[match.end() :]
    return [f"{head}{part}{tail}" for part in match.group(1).split(",")]


# --- the checks, one per kind of command ---------------------------------------------------


def check_make(args: list[str]) -> None:
    targets, variables = makefile_targets_and_variables()
    for arg in args:
        if "=" in arg:
            assert arg.split("=", 1)[0] in variables, f"make: the Makefile has no {arg!r}"
        else:
            assert arg in targets, f"make {arg}: no such target in the Makefile"


def check_kedro(args: list[str], parameters: dict[str, Any]) -> None:
    assert args[:1] == ["run"], f"kedro {' '.join(args)}: README documents `kedro run` only"
    envs = {p.name for p in (REPO_ROOT / "conf").iterdir() if p.is_dir()} | written_envs()
    for name, value in options(args[1:]):
        assert name in KEDRO_RUN_OPTIONS, f"kedro run {name}: not an option README may use"
        assert value, f"kedro run {name}: needs a value"
        if name in ("--pipelines", "--pipeline"):
            unknown = set(value.split(",")) - {*pipeline_names(), "__default__"}
            assert not unknown, f"kedro run {name}={value}: no pipeline {sorted(unknown)}"
        elif name in ("--env", "-e"):
            assert value in envs, f"kedro run --env {value}: no conf/{value}/"
        elif name == "--config":
            assert (REPO_ROOT / value).is_file(), f"kedro run --config {value}: no such file"
        elif name == "--params":
            for pair in value.split(","):
                key, _, given = pair.partition("=")
                assert given, f"--params {pair}: expected key=value"
                nested: dict[str, Any] = {}
                node = nested
                *parents, leaf = key.split(".")
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = given
                assert not missing_keys(nested, parameters), f"--params {key}: not in conf/base"


def check_serve(args: list[str], env: dict[str, str], config: dict[str, Any]) -> int:
    assert args[:2] == ["models", "serve"], f"mlflow {' '.join(args)}: only `models serve`"
    given = dict(options(args[2:]))
    model = given.get("-m") or given.get("--model-uri") or ""
    name = config["parameters"]["tracking"]["registered_model_name"]
    assert re.fullmatch(rf"models:/{re.escape(name)}/(latest|\d+)", model), model
    mlflow_conf = yaml.safe_load((REPO_ROOT / "conf" / "base" / "mlflow.yml").read_text())
    assert env.get("MLFLOW_TRACKING_URI") == mlflow_conf["server"]["mlflow_tracking_uri"]
    assert given.get("--env-manager") == "local"
    return int(given["--port"])


def check_curl(args: list[str], port: int | None) -> None:
    url = next(a for a in args if a.startswith("http"))
    assert port is not None and urlparse(url).port == port, "curl: not the served port"
    assert urlparse(url).path == "/invocations"
    payload = json.loads(args[args.index("-d") + 1])
    table = payload["dataframe_split"]
    assert table["columns"] == ["items"]
    with EMBEDDED_MOVIES.open() as movies:
        known = {int(row["movieId"]) for row in csv.DictReader(movies)}
    for row in table["data"]:
        (items,) = row
        assert items and all(isinstance(i, int) and i in known for i in items), row


def check_module(args: list[str]) -> None:
    module = args[args.index("-m") + 1]
    assert importlib.util.find_spec(module) is not None, f"-m {module}: no such module"


# --- the tests -----------------------------------------------------------------------------


def test_readme_is_a_short_guide():
    lines = README.read_text().count("\n")
    assert lines < MAX_LINES, f"README.md has {lines} lines; keep it under {MAX_LINES}"


def test_every_code_block_has_a_known_language():
    for language, body in blocks(README.read_text()):
        assert language in {"bash", "yaml", "python", "text"}, f"```{language}:\n{body}"


def test_every_shell_line_is_a_command_the_project_supports():
    config = base_config()
    port = None
    seen = set()
    for body in readme_blocks({"bash", "sh", "shell"}):
        for words in command_lines(body):
            env, words = split_env_assignments(words)
            program, args = Path(words[0]).name, words[1:]
            seen.add(program)
            if program == "make":
                check_make(args)
            elif program == "kedro":
                check_kedro(args, config["parameters"])
            elif program == "mlflow":
                port = check_serve(args, env, config)
            elif program == "curl":
                check_curl(args, port)
            elif program in {"torchrun", "python"}:
                check_module(args)
            else:
                raise AssertionError(f"README runs {program!r}, which no check here knows")
    assert {"make", "kedro", "mlflow", "curl"} <= seen


def test_yaml_blocks_parse_and_name_keys_of_conf_base():
    config = base_config()
    files = written_conf_files()
    assert files, "README's own-data example names the conf files it creates"
    for body in readme_blocks("yaml"):
        yaml.safe_load(body)
    for path, body in files.items():
        content = yaml.safe_load(body)
        known = config["globals"] if Path(path).name == "globals.yml" else config["parameters"]
        assert not missing_keys(content, known), f"{path}: {missing_keys(content, known)}"


def test_python_blocks_compile():
    for body in readme_blocks("python"):
        compile(body, "README.md", "exec")


def test_the_layout_names_rooms_that_exist():
    """Names before the description; indented ones live in the folder the block opened with."""
    (layout,) = [body for language, body in blocks(README.read_text()) if language == "text"]
    first, *rest = layout.splitlines()
    package = REPO_ROOT / first.strip()
    assert package.is_dir(), first
    for line in rest:
        names = re.split(r"\s{2,}", line.strip())[0].split()
        parent = package if line.startswith(" ") else REPO_ROOT
        for name in names:
            assert (parent / name).exists(), f"Layout names {name!r}, not in {parent}"


def test_the_own_data_example_ingests_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The README's conf files, as written, over a copy of conf/: a small CSV in the example's
    columns goes through the ingest pipeline into the example dataset's own folder."""
    from clue_pipeline.settings import CONFIG_LOADER_ARGS

    shutil.copytree(REPO_ROOT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    (tmp_path / "conf" / "local").mkdir()
    for path, body in written_conf_files().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body)
    (env,) = written_envs()
    runs = [
        words
        for body in readme_blocks("bash")
        for words in command_lines(body)
        if Path(words[0]).name == "kedro" and ("--env", env) in options(words[2:])
    ]
    assert runs, f"README never runs the example's environment {env!r}"

    loader = OmegaConfigLoader(str(tmp_path / "conf"), **CONFIG_LOADER_ARGS, env=env)
    ingest = loader["parameters"]["ingest"]
    assert ingest["format"] == "generic"
    columns = ingest["generic"]["columns"]
    events = [(7, 101, 1_600_000_300), (7, 102, 1_600_000_100), (8, 101, 1_600_000_200)]
    source = tmp_path / ingest["path"]
    source.parent.mkdir(parents=True)
    names = [columns["user_id"], columns["item_id"], columns["timestamp"]]
    sep = ingest["generic"]["sep"]
    lines = [sep.join(names)] + [sep.join(str(v) for v in event) for event in events]
    source.write_text("\n".join(lines) + "\n")

    monkeypatch.chdir(tmp_path)
    pipeline = create_ingest_pipeline()
    catalog_conf = loader["catalog"]
    catalog = DataCatalog.from_config({n: catalog_conf[n] for n in pipeline.outputs()})
    catalog["params:ingest"] = MemoryDataset(ingest)
    SequentialRunner().run(pipeline, catalog)

    dataset = loader["globals"]["dataset"]
    written = tmp_path / "data" / "02_intermediate" / dataset / "interactions.parquet"
    interactions = pd.read_parquet(written)
    assert sorted(map(tuple, interactions[["user_id", "item_id", "timestamp"]].values)) == sorted(
        events
    )
    assert sorted(pd.read_parquet(written.with_name("users.parquet"))["user_id"]) == [7, 8]


def test_links_in_readme_and_docs_lead_to_files():
    pages = [README, REPO_ROOT / "benchmarks" / "README.md", *sorted(REPO_ROOT.glob("docs/*.md"))]
    for page in pages:
        text = FENCE.sub("", page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists(), f"{page.relative_to(REPO_ROOT)} links to missing {target}"


def test_results_files_named_in_readme_and_docs_exist():
    pages = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
    for page in pages:
        for named in re.findall(r"`(benchmarks/results/[^`\s]+)`", page.read_text()):
            for name in expand_braces(re.sub(r"<[^>]*>", "*", named)):
                found = list(REPO_ROOT.glob(name)) if "*" in name else [REPO_ROOT / name]
                assert found and all(p.exists() for p in found), f"{page.name} names {name}"
        if page is README:
            for name in re.findall(r"`([\w.-]+\.md)`", page.read_text()):
                if name not in {"metrics.md", "report.md", "README.md"}:
                    assert (REPO_ROOT / "benchmarks" / "results" / name).exists(), name
