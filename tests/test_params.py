"""One declaration per stage: the options, params.yaml checking and the docs' parameter tables all come from it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from dghc.cli import dghc
from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.core.params import params_of
from dghc.stages.options import params_table, parse_config
from tests.environment import REPO

PARAM_FILES = [REPO / "params.yaml", *sorted((REPO / "configs").glob("*.yaml"))]
# params.yaml section -> the command whose config reads it
SECTIONS = {"demo_data": "demo-data", "detect": "detect", "extract": "extract", "train": "train",
            "evaluate": "evaluate"}


def command(name: str) -> click.Command:
    return dghc.get_command(click.Context(dghc), name)


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_every_section_builds_its_stage_config(path: Path):
    params = yaml.safe_load(path.read_text())
    assert set(params) == {"data", "cross", *SECTIONS}
    for entry in (params["cross"] or {}).values():  # other data sets to score the trained model on
        assert set(entry) == {"test", "images"}
    assert set(params["data"]) == {"train", "dev", "test", "images"}
    extra = {"evaluate": ["model", "data.txt"]}  # required arguments the pipeline gives on its command line
    for section, name in SECTIONS.items():
        config = parse_config(command(name), [*extra.get(section, []), "--params", str(path)])
        for key, value in params[section].items():
            read = getattr(config, key)  # a choice written as a YAML boolean (word_shape: false) is its name
            assert read == value or str(read) == str(value) or str(read) == str(value).lower(), (section, key)


def test_values_are_typed_by_the_declaration(tmp_path):
    params = tmp_path / "params.yaml"
    # YAML 1.1 reads 3e-5 (no dot) as a string and a quoted "false" as a string: both are converted
    params.write_text('train:\n  lr_encoder: 3e-5\n  use_image: "false"\n  epochs: "3"\n  log_file: null\n'
                      '  precision: no\n  word_shape: true\n')  # unquoted `no` (as `dvc exp run -S` writes it)
    # and `true` are YAML 1.1's booleans: a choice of that name is meant
    config = parse_config(command("train"), ["--params", str(params)])
    assert (config.lr_encoder, config.use_image, config.epochs, config.log_file) == (3e-5, False, 3, None)
    assert config.precision == "no" and config.word_shape == "true"
    print(f"from {params.read_text()!r}: lr_encoder={config.lr_encoder!r} use_image={config.use_image!r}")


def test_defaults_then_params_then_set_then_options(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  epochs: 5\n  batch_size: 4\n  seed: 9\n")
    assert parse_config(command("train"), []).epochs == 30
    config = parse_config(command("train"), ["--params", str(params), "--set", "batch_size=8", "--set", "seed=1",
                                             "--seed", "2"])
    assert (config.epochs, config.batch_size, config.seed) == (5, 8, 2)
    assert parse_config(command("train"), ["--no-use-image"]).use_image is False


def test_the_params_file_s_data_section_gives_the_stages_their_files(tmp_path):
    """`dghc train --params configs/x.yaml` trains on x's data (it took the demo defaults and failed on data/demo);
    the stage's own section, --set and options still win, in that order."""
    params = tmp_path / "params.yaml"
    params.write_text("data:\n  train: t17/train.txt\n  dev: t17/valid.txt\n  test: t17/test.txt\n"
                      "  images: t17/images\ntrain:\n  epochs: 2\nextract:\n  dtype: float32\n")
    config = parse_config(command("train"), ["--params", str(params)])
    assert (str(config.train_file), str(config.dev_file)) == ("t17/train.txt", "t17/valid.txt")
    # data named on the command line: none of the section's (its dev split or images would mix two data sets)
    mine = parse_config(command("train"), ["--params", str(params), "--train", "mine.txt"])
    assert (str(mine.train_file), str(mine.dev_file)) == ("mine.txt", "data/demo/valid.txt")
    for name in ("detect", "extract"):
        config = parse_config(command(name), ["--params", str(params)])
        assert [str(f) for f in config.files] == ["t17/train.txt", "t17/valid.txt", "t17/test.txt"], name
        assert str(config.images) == "t17/images"
        given = parse_config(command(name), ["a.txt", "--params", str(params)])
        assert [str(f) for f in given.files] == ["a.txt"] and given.images is None, name
    # the stage's own section holds either way
    assert parse_config(command("extract"), ["a.txt", "--params", str(params)]).dtype == "float32"
    assert parse_config(command("train"), ["--params", str(params), "--train", "mine.txt"]).epochs == 2
    params.write_text("data:\n  train: t17/train.txt\ntrain:\n  train_file: own.txt\n")
    assert str(parse_config(command("train"), ["--params", str(params)]).train_file) == "own.txt"
    assert str(parse_config(command("train"), []).train_file) == "data/demo/train.txt"  # no params file: defaults


@pytest.mark.parametrize("text, phrases", [
    ("train:\n  epoch: 3\n", ["unknown keys in section 'train'", "epoch", "known:"]),
    ("train:\n  epochs: many\n", ["params.yaml: train.epochs", "'many' is not a valid integer"]),
    ("train:\n  epochs: 0\n", ["params.yaml: train.epochs", "0 is not in the range x>=1"]),
    ("train:\n  batch_size: true\n", ["params.yaml: train.batch_size", "got a boolean"]),
    ("train:\n  text_vector: pooler\n", ["train.text_vector", "'pooler' is not one of 'encoder', 'embeddings'"]),
    ("train:\n  encoder: [a, b]\n", ["train.encoder", "expected one"]),
    ("train: 3\n", ["section 'train' must be a mapping"]),
    ("train: [\n", ["not valid YAML"]),
    ("detect:\n  files: {a: 1}\n", ["detect.files"]),
    # --force / --restart in a params file would recompute or start over on every `dvc repro`
    ("detect:\n  force: true\n", ["params.yaml: detect.force: a command-line option only (--force)"]),
    ("train:\n  restart: true\n", ["params.yaml: train.restart: a command-line option only (--restart)"]),
])
def test_bad_params_name_the_file_section_and_key(tmp_path, text, phrases):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    section = text.split(":")[0]
    with pytest.raises(DghcError) as caught:
        parse_config(command(SECTIONS[section]), ["--params", str(params)])
    for phrase in phrases:
        assert phrase in str(caught.value), str(caught.value)


def test_set_values_are_read_by_the_parameter_type_not_as_yaml_numbers():
    config = parse_config(command("train"), ["--set", "seed=010", "--set", "encoder=0x1f", "--set", "lr_head=3e-4",
                                             "--set", "use_image=false", "--set", "log_file=null"])
    print(config.seed, config.encoder, config.lr_head, config.use_image, config.log_file)
    assert (config.seed, config.encoder, config.lr_head, config.use_image, config.log_file) == (10, "0x1f", 3e-4, False,
                                                                                                None)
    with pytest.raises(DghcError, match="--set seed: '0x10' is not a valid integer"):
        parse_config(command("train"), ["--set", "seed=0x10"])


def test_command_line_only_options_still_work_on_the_command_line():
    assert parse_config(command("detect"), ["x.txt", "--force"]).force is True
    assert parse_config(command("train"), ["--set", "restart=true"]).restart is True


def test_bad_set_and_missing_arguments_are_refused():
    with pytest.raises(DghcError, match="--set: unknown parameter"):
        parse_config(command("train"), ["--set", "epoch=3"])
    with pytest.raises(DghcError, match="--set epochs"):
        parse_config(command("train"), ["--set", "epochs=-1"])
    with pytest.raises(click.UsageError, match="MODEL_DIR, DATA_FILE"):
        parse_config(command("evaluate"), [])


def test_configs_made_in_code_are_checked_too():
    from dghc.pipeline.training.config import TrainConfig

    for bad in ({"eval_mode": "lenient"}, {"epochs": 0}, {"text_vector": "pooler"}, {"warmup_ratio": 2.0}):
        with pytest.raises(DghcError, match=f"train parameter {next(iter(bad))}"):
            TrainConfig(**bad)
    with pytest.raises(DghcError, match="eval_begin_epoch 3 is after the last epoch \\(2\\)"):
        TrainConfig(epochs=2, eval_begin_epoch=3)


def test_parameter_tables_are_the_declarations():
    """The docs' parameter tables are generated (`python -m dghc.stages.param_tables`): they must be current."""
    from dghc.stages.param_tables import DOCS, configured_commands, rewrite

    texts = {path: path.read_text(encoding="utf-8") for path in DOCS}
    assert rewrite(texts) == texts, "parameter tables are stale: run `python -m dghc.stages.param_tables`"
    everything = "\n".join(texts.values())
    for config_class in configured_commands().values():
        assert everything.count(params_table(config_class)) == 1
        assert len(params_table(config_class).splitlines()) == 2 + len(params_of(config_class))


def test_help_loads_no_heavy_library():
    """`dghc --help` and every stage's --help import neither torch nor transformers (they take seconds)."""
    script = ("import sys, click; from click.testing import CliRunner; from dghc.cli import dghc\n"
              "for args in [['--help'], *[[name, '--help'] for name in dghc.list_commands(None)]]:\n"
              "    assert CliRunner().invoke(dghc, args).exit_code == 0, args\n"
              "heavy = sorted(m for m in ('torch', 'transformers', 'ultralytics', 'h5py', 'numpy') if m in sys.modules)\n"
              "print(heavy)")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
