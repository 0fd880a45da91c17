"""dvc.yaml names what each stage really reads and writes: its code (by imports) and every file of its config."""
from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from dghc.cli import COMMANDS, dghc
from dghc.stages.options import parse_config
from tests.environment import REPO
from tests.imports import project_closure

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
# A `foreach` stage is checked with one made-up entry (params.yaml's `cross` is empty by default).
SAMPLE = {"key": "other", "item": {"test": "data/other/test.txt", "images": "data/other/images"}}


def expand(name: str, stage: dict) -> dict:
    if "foreach" not in stage:
        return stage
    text = yaml.safe_dump(stage["do"])
    text = text.replace("${key}", SAMPLE["key"])
    text = re.sub(r"\$\{item\.(\w+)\}", lambda m: SAMPLE["item"][m.group(1)], text)
    return yaml.safe_load(text)


STAGES = {name: expand(name, stage) for name, stage in DVC["stages"].items()}


def substitute(text: str) -> str:
    """dvc.yaml's ${section.key} variables, from params.yaml."""
    return re.sub(r"\$\{(\w+)\.(\w+)\}", lambda m: str(PARAMS[m.group(1)][m.group(2)]), text)


def paths_of(entries: list) -> set[str]:
    """Paths of a deps/outs/metrics/plots list (entries are strings or one-key mappings)."""
    return {substitute(next(iter(e)) if isinstance(e, dict) else e) for e in entries or []}


def covered(path: str, listed: set[str]) -> bool:
    return any(path == item or path.startswith(item.rstrip("/") + "/") for item in listed)


def commands_of(stage: dict) -> list[tuple[str, list[str]]]:
    """(dghc subcommand, its arguments) of every command of a stage (commands joined by &&)."""
    found = []
    for part in substitute(stage["cmd"]).split("&&"):
        words = shlex.split(part)
        assert words[0] == "dghc", stage["cmd"]
        found.append((words[1], words[2:]))
    return found


# dvc.yaml's commands run the local engine: the Ray engine's code, imported only under --engine ray, is not
# theirs (a stage switched to --engine ray lists pipeline/scale too).
ENGINE_RAY = "pipeline/scale/"
# the package's own __init__.py (the repository root is the package dghc): every module's import runs it first
PACKAGE_INIT = "__init__.py"
CODE = ("pipeline", "stages", "cli.py", PACKAGE_INIT)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_depends_on_all_the_code_it_runs(name):
    stage = STAGES[name]
    ray = any("--engine" in args and args[args.index("--engine") + 1] == "ray" for _, args in commands_of(stage))
    code = {str(p.relative_to(REPO)) for command, _ in commands_of(stage)
            for p in project_closure(COMMANDS[command].split(":")[0]) | project_closure("dghc.cli")}
    code = {path for path in code if ray or not path.startswith(ENGINE_RAY)} | {PACKAGE_INIT}
    deps = paths_of(stage["deps"])
    missing = sorted(path for path in code if not covered(path, deps))
    assert not missing, f"stage {name} runs {missing} but dvc.yaml does not list them as deps"
    stale = sorted(d for d in deps if d.split("/")[0] in CODE and not (REPO / d).exists())
    assert not stale, f"stage {name} lists code that does not exist: {stale}"


# Written by a stage but no output of it: DVC deletes a stage's outputs before it runs it, and a rerun after a crash
# resumes from this folder (and a persist output would keep the stage out of DVC's run cache).
KEPT_BY_DVC = {"cache/train_state"}


def test_training_state_survives_a_rerun_of_its_stage():
    train = STAGES["train"]
    (_, args), = commands_of(train)
    assert args[args.index("--state") + 1] in KEPT_BY_DVC
    outputs = paths_of(train.get("outs")) | paths_of(train.get("metrics")) | paths_of(train.get("plots"))
    assert not any(covered(path, outputs) for path in KEPT_BY_DVC), outputs


@pytest.mark.parametrize("name", sorted(STAGES))
def test_command_names_every_file_its_stage_reads_or_writes(name):
    stage = STAGES[name]
    listed = paths_of(stage.get("deps")) | paths_of(stage.get("outs")) | paths_of(stage.get("metrics")) \
        | paths_of(stage.get("plots"))
    files, all_args = [], []
    for command, args in commands_of(stage):
        config = parse_config(dghc.get_command(click.Context(dghc), command), args)
        all_args += args
        for field in dataclasses.fields(config):
            value = getattr(config, field.name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, Path):
                    files.append(str(item))
    print(f"{name}: {files}")
    assert files, f"stage {name}: its config has no file at all"
    unlisted = [f for f in files if not covered(f, listed) and f not in KEPT_BY_DVC]
    assert not unlisted, f"stage {name} reads or writes {unlisted}, which dvc.yaml does not list"
    # and the converse: every data file dvc.yaml lists is given on the command line, not left to a default
    data = {p for p in listed if p.split("/")[0] not in CODE}
    unnamed = sorted(p for p in data if p not in all_args)
    assert not unnamed, f"stage {name}: dvc.yaml lists {unnamed}, but its command leaves them to defaults"
