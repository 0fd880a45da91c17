"""Every reader of outside input, fuzzed with Hypothesis: random and mutated inputs give a clear DghcError or a
valid result, never another exception.

Readers: CoNLL text, params YAML, predict JSONL, the HDF5 attributes of detections and features files, and a
checkpoint's dghc.json. The runs are derandomised (the same examples on every machine), so CI cannot turn red by
chance; raise ``max_examples`` locally to search further.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import h5py
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dghc.cli import dghc
from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.data.conll import read_conll
from dghc.pipeline.detection.store import load_detections
from dghc.pipeline.features.store import FeatureStore
from dghc.pipeline.inference.checkpoint import load_checkpoint
from dghc.pipeline.prediction.inputs import read_posts
from dghc.stages.options import parse_config
from tests.faults.harness import run, stage_args

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
VALID_CONLL = "IMGID:1\nJordan\tB-PER\nscored\tO\n\nIMGID:2\nin\tO\nNew\tB-LOC\nYork\tI-LOC\n"


def mutations(text: str):
    """``text`` with a slice replaced, deleted or repeated, or a character swapped for an odd one."""
    odd = st.sampled_from(["\t", "\n", "\r", "\x00", "IMGID:", "B-", "I-X", "\ufeff", "\u2028", "..", "/", " ", "é"])
    position = st.integers(0, len(text))
    return st.one_of(
        st.builds(lambda i, j, s: text[:min(i, j)] + s + text[max(i, j):], position, position, odd),
        st.builds(lambda i, j: text[:min(i, j)] + text[max(i, j):], position, position),
        st.builds(lambda i, j: text[:max(i, j)] + text[min(i, j):max(i, j)] + text[max(i, j):], position, position),
    )


@FUZZ
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 mutations(VALID_CONLL).map(str.encode)))
def test_conll_reader(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("conll") / "data.txt"
    path.write_bytes(data)
    for invalid_bio in ("repair", "refuse", "keep"):
        try:
            posts, _ = read_conll(path, invalid_bio=invalid_bio)
        except DghcError:
            continue
        assert all(len(p.tokens) == len(p.labels) > 0 for p in posts)


VALID_PARAMS = "train:\n  epochs: 3\n  lr_encoder: 3.0e-5\n  use_image: false\n  encoder: packaged:all-MiniLM-L6-v2\n"


@FUZZ
@given(st.one_of(st.text(max_size=200), mutations(VALID_PARAMS)))
def test_params_yaml(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(text, encoding="utf-8")
    command = dghc.get_command(click.Context(dghc), "train")
    try:
        parse_config(command, ["--params", str(path)])
    except (DghcError, click.UsageError):
        pass


VALID_JSONL = '{"id": "a", "text": "Jordan scored", "image": "x.jpg"}\n{"id": "b", "tokens": ["in", "Paris"]}\n'


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutations(VALID_JSONL).map(str.encode)))
def test_predict_jsonl(data):
    for skip_bad in (False, True):
        try:
            result = read_posts(data.splitlines(keepends=True), source="in.jsonl", base_dir=Path("."),
                                skip_bad=skip_bad)
        except DghcError:
            assert not skip_bad
            continue
        assert all(post.tokens and post.post_id for post in result.posts)


@pytest.fixture(scope="module")
def made_files(tiny_pipeline, tmp_path_factory):
    """A real detections file, features file and checkpoint to mutate."""
    root = tmp_path_factory.mktemp("made")
    assert run(stage_args("train", tiny_pipeline, root / "model")).returncode == 0
    return {"detections": tiny_pipeline["detections"], "features": tiny_pipeline["features"], "model": root / "model"}


ATTRIBUTE_VALUES = st.one_of(st.text(max_size=80), st.integers(-5, 10**6), st.binary(max_size=40),
                             st.sampled_from(['{"m": 3}', "{}", "[]", "null", '{"untrained": "yes"}', "3", "nan"]))


@FUZZ
@given(kind=st.sampled_from(["detections", "features"]),
       name=st.sampled_from(["fingerprint", "fingerprint_sha256", "m", "dim", "sources_run", "format_version"]),
       value=ATTRIBUTE_VALUES)
def test_hdf5_attributes(made_files, tmp_path_factory, kind, name, value):
    path = tmp_path_factory.mktemp("h5") / f"{kind}.h5"
    shutil.copy(made_files[kind], path)
    with h5py.File(path, "r+") as handle:
        try:
            handle.attrs[name] = value
        except (ValueError, TypeError):  # a value HDF5 itself cannot store (an embedded NUL): not an input
            assume(False)
    try:
        if kind == "detections":
            load_detections(path)
        else:
            FeatureStore(path).batch(["train-0000"])
    except DghcError:
        pass


@FUZZ
@given(st.one_of(st.text(max_size=200), st.sampled_from(['{"format_version": 1}', '{"format_version": 1, "model": 3}',
                                                          '{"format_version": 1, "model": {"labels": 5}}', "[]"]),
                 st.builds(json.dumps, st.dictionaries(st.sampled_from(["format_version", "model", "info",
                                                                         "features_fingerprint"]),
                                                       st.one_of(st.integers(), st.text(max_size=10), st.none(),
                                                                 st.dictionaries(st.text(max_size=8), st.integers(),
                                                                                 max_size=3))))))
def test_checkpoint_json(made_files, tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    shutil.copytree(made_files["model"], folder)
    (folder / "dghc.json").write_text(text, encoding="utf-8")
    try:
        load_checkpoint(folder)
    except DghcError:
        pass
