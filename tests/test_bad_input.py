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


@pytest.fixture(scope="module")
def posts(tmp_path_factory):
    """Two small demo splits with their images."""
    from dghc.pipeline.demo.config import DemoConfig
    from dghc.pipeline.demo.writer import write_demo_data

    root = tmp_path_factory.mktemp("posts")
    write_demo_data(DemoConfig(out=root, train=6, valid=3, test=3, image_size=96))
    return root


@pytest.mark.parametrize("stage", ["detect", "extract"])
@pytest.mark.parametrize("own", ["text", "hdf5"])
def test_the_user_s_own_file_given_as_out_is_left_untouched(stage, own, posts, tmp_path):
    import h5py

    mine = tmp_path / "mine.h5"
    if own == "text":
        mine.write_text("my notes, not dghc's\n")
    else:
        with h5py.File(mine, "w") as handle:
            handle["table"] = [1, 2, 3]
    before = mine.read_bytes()
    extra = ["--detections", tmp_path / "none.h5", "--quiet"] if stage == "extract" else ["--no-progress"]
    code, lines = run([stage, posts / "train.txt", "--out", mine, "--device", "cpu", *extra])
    what = {"detect": "detections", "extract": "features"}[stage]
    assert code == 1 and lines[-1].startswith(f"Error: --out {mine} is not a {what} file dghc wrote (")
    assert "it was left untouched" in lines[-1] and mine.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.h5"]


def test_detect_says_when_it_rebuilds_a_file_made_from_other_inputs(posts, tmp_path):
    out = tmp_path / "detections.h5"
    common = ["--out", out, "--no-progress", "--device", "cpu", "--imgsz", "96", "--grounding", "none"]
    code, _ = run(["detect", posts / "train.txt", *common])
    assert code == 0
    code, lines = run(["detect", posts / "valid.txt", *common])
    assert code == 0 and f"detect: {out} was made from other inputs or settings (images_sha256): it is rebuilt" \
        in lines, lines
    code, lines = run(["detect", posts / "valid.txt", *common])  # up to date now: nothing to say
    assert code == 0 and not any("rebuilt" in line for line in lines)


def conll(path, posts):
    """Write posts [(id, [(token, tag), ...]), ...] as CoNLL."""
    path.write_text("".join(f"IMGID:{post_id}\n" + "".join(f"{t}\t{g}\n" for t, g in tokens) + "\n"
                            for post_id, tokens in posts))
    return path


def test_a_rare_type_one_edit_from_a_common_one_is_named_with_its_line(tmp_path):
    from dghc.pipeline.data.conll import read_conll
    from dghc.pipeline.data.entity_types import likely_typos, one_edit_apart, type_uses

    posts = [(f"p{i}", [("Paris", "B-LOC"), ("is", "O")]) for i in range(12)]
    posts.insert(5, ("typo", [("Seen", "O"), ("Lyon", "B-LCO")]))  # after 5 posts of 4 lines: IMGID 21, Lyon 23
    read, _ = read_conll(conll(tmp_path / "train.txt", posts))
    messages = likely_typos(type_uses(read), tmp_path / "train.txt")
    print(messages)
    assert messages == [f"{tmp_path / 'train.txt'}:23: B-LCO: type LCO appears 1 time(s) and LOC 12 times: a typo "
                        "of LOC? (fix the tag; a real type of its own needs more examples to be learned)"]
    assert all(one_edit_apart(a, b) for a, b in [("LCO", "LOC"), ("PRE", "PER"), ("ORGG", "ORG"), ("per", "PER")])
    assert not any(one_edit_apart(a, b) for a, b in [("MISC", "LOC"), ("ORG", "PER"), ("OTHER", "ORG")])


def test_train_refuses_a_dev_type_that_training_never_sees(tmp_path):
    train = conll(tmp_path / "train.txt", [(f"p{i}", [("Paris", "B-LOC")]) for i in range(3)])
    dev = conll(tmp_path / "dev.txt", [("d1", [("Paris", "B-LOC")]), ("d2", [("in", "O"), ("Lyon", "B-LCO")])])
    code, lines = run(["train", "--train", train, "--dev", dev, "--out", tmp_path / "model", "--state",
                       tmp_path / "state", "--log", "", "--no-use-image", "--device", "cpu"])
    assert code == 1 and lines[-1] == (f"Error: {dev}:6: B-LCO: type LCO is not one the model learns (LOC): fix "
                                       "the tag, or give --allow-unseen-types to score such entities as missed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.txt", "train.txt"]


def test_evaluate_refuses_a_type_the_model_never_learned(tmp_path):
    data = conll(tmp_path / "test.txt", [("t1", [("Paris", "B-LOC")]), ("t2", [("Jordan", "B-PRE")])])
    code, lines = run(["evaluate", LEGACY_MODEL, data, "--device", "cpu", "--metrics", tmp_path / "m.json"])
    assert code == 1 and lines[-1].startswith(f"Error: {data}:5: B-PRE: type PRE is not one the model learns (")
    assert lines[-1].endswith("or give --allow-unseen-types to score such entities as missed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.txt"]


def test_a_failed_train_leaves_no_empty_folders_behind(tmp_path, monkeypatch):
    """Train's default outputs (cache/model, cache/train_state) need cache/ for their locks: a run that fails before
    writing anything (here: an encoder folder that is not there) takes it away again."""
    monkeypatch.chdir(tmp_path)
    conll(tmp_path / "train.txt", [(f"p{i}", [("Paris", "B-LOC")]) for i in range(3)])
    code, lines = run(["train", "--train", "train.txt", "--dev", "train.txt", "--no-use-image", "--device", "cpu",
                       "--encoder", str(tmp_path / "no-such-encoder"), "--log", "", "--metrics", ""])
    assert code == 1 and lines[-1].startswith(f"Error: cannot load text encoder '{tmp_path / 'no-such-encoder'}'")
    assert len([line for line in lines if line.startswith("Error")]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.txt"]
