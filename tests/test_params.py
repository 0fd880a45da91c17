"""params.yaml and the paper configurations: every key is a parameter some stage knows."""
from __future__ import annotations

from pathlib import Path

import click
import pytest
import yaml

from pipeline.training.trainer import TrainConfig
from stages.params import build_config
from tests.conftest import REPO

PARAM_FILES = [REPO / "params.yaml", *sorted((REPO / "configs").glob("*.yaml"))]


def command_options(name: str) -> set[str]:
    from cli import dghc

    command = dghc.get_command(click.Context(dghc), name)
    return {p.name for p in command.params}


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_every_section_is_known_to_its_stage(path: Path):
    params = yaml.safe_load(path.read_text())
    assert set(params) == {"data", "demo_data", "detect", "extract", "train", "evaluate"}
    assert set(params["data"]) == {"train", "dev", "test", "images"}
    build_config(TrainConfig, params["train"], {}, str(path))  # raises on an unknown key
    for section, command in (("detect", "detect"), ("extract", "extract"), ("evaluate", "evaluate"),
                             ("demo_data", "demo-data")):
        unknown = set(params[section]) - command_options(command)
        assert not unknown, f"{path.name}: {section} has keys no option takes: {unknown}"


def test_paper_configs_follow_the_paper():
    for name, epochs in (("twitter2015", 30), ("twitter2017", 35)):
        params = yaml.safe_load((REPO / "configs" / f"{name}-paper.yaml").read_text())
        train = params["train"]
        assert (train["encoder"], train["epochs"], train["batch_size"], train["lr_encoder"]) == (
            "bert-base-cased", epochs, 16, 3e-5)
        assert params["extract"]["model"] == "openai/clip-vit-base-patch32"
        assert params["detect"]["m"] == 3
