"""A newcomer's mistakes with input files: each answered in one line naming the file, exit 1, nothing left behind."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from dghc.cli import dghc

LEGACY_MODEL = "tests/fixtures/checkpoint-0.1.0"  # a model folder written by dghc 0.1.0 (tests/test_tagger_api.py)


def run(args: list[str]):
    result = CliRunner().invoke(dghc, [str(a) for a in args])
    lines = result.stderr.strip().splitlines()
    print(args[0], result.exit_code, lines)
    return result.exit_code, lines


@pytest.mark.parametrize("stage", ["detect", "extract", "train", "evaluate"])
def test_an_empty_conll_file_is_one_line_and_exit_1_in_every_stage(stage, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    args = {"detect": ["detect", empty, "--out", tmp_path / "d.h5", "--no-progress", "--device", "cpu"],
            "extract": ["extract", empty, "--detections", tmp_path / "d.h5", "--out", tmp_path / "f.h5", "--quiet",
                        "--device", "cpu"],
            "train": ["train", "--train", empty, "--dev", empty, "--out", tmp_path / "model", "--state",
                      tmp_path / "state", "--log", "", "--no-use-image", "--device", "cpu"],
            "evaluate": ["evaluate", LEGACY_MODEL, empty, "--device", "cpu"]}[stage]
    code, lines = run(args)
    errors = [line for line in lines if line.startswith("Error:")]
    assert code == 1 and len(errors) == 1 and str(empty) in errors[0] and "no posts" in errors[0], lines
    assert not any("Traceback" in line for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]  # nothing written, nothing left behind
