"""The demo set: deterministic bytes, a valid dataset, names only the image can type, images an untrained CLIP separates."""
from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from dghc.cli import dghc
from dghc.pipeline.data.conll import read_conll
from dghc.pipeline.demo.config import DemoConfig
from dghc.pipeline.demo.oracle import majority_types, text_only_ceiling, text_only_predictions
from dghc.pipeline.demo.posts import generate_posts
from dghc.pipeline.demo.vocabulary import AMBIGUOUS, NEUTRAL_TEMPLATES, TYPES, VISUAL_CLASS
from dghc.pipeline.demo.writer import MANIFEST_NAME, write_demo_data
from dghc.pipeline.inference.metrics import entity_scores

SPLITS = ("train", "valid", "test")


def generate(out: Path, *args: str):
    result = CliRunner().invoke(dghc, ["demo-data", str(out), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "demo"
    return out, generate(out).output


@pytest.fixture(scope="module")
def manifest(demo) -> dict:
    return json.loads((demo[0] / MANIFEST_NAME).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def splits() -> dict:
    return generate_posts(DemoConfig())


# ---------------------------------------------------------------------------------------------------------
# Files and determinism


def test_two_runs_give_identical_bytes(demo, tmp_path):
    first, _ = demo
    second = tmp_path / "again"
    generate(second)
    a, b = tree_bytes(first), tree_bytes(second)
    assert sorted(a) == sorted(b)
    assert all(a[name] == b[name] for name in a)
    # Rerunning into a folder that already holds the set changes nothing.
    generate(second)
    assert tree_bytes(second) == a


def test_another_seed_gives_another_set_and_removes_stale_images(demo, tmp_path):
    out = tmp_path / "other"
    generate(out, "--seed", "7", "--train", "30", "--valid", "10", "--test", "10")
    first = tree_bytes(out)
    assert first["train.txt"] != tree_bytes(demo[0])["train.txt"]
    # Regenerating a smaller set in the same folder leaves no image of the larger one behind.
    (out / "images" / "keep-me.jpg").write_bytes(b"a user's file")
    generate(out, "--seed", "7", "--train", "5", "--valid", "2", "--test", "2")
    names = {p.name for p in (out / "images").iterdir()}
    assert "keep-me.jpg" in names
    assert all(re.fullmatch(r"(train-000[0-4]|valid-000[01]|test-000[01])\.jpg", n) for n in names - {"keep-me.jpg"})
    assert not list(out.rglob("*.tmp"))


def test_files_are_a_valid_dataset(demo):
    out, _ = demo
    ids = []
    sizes = {"train": 400, "valid": 100, "test": 100}
    for split in SPLITS:
        posts, report = read_conll(out / f"{split}.txt", invalid_bio="refuse", allowed_types=TYPES)
        assert len(posts) == sizes[split] and report.bio_repairs == 0
        ids += [p.post_id for p in posts]
        with_image = [p for p in posts if p.has_image_file]
        assert 0.75 <= len(with_image) / len(posts) <= 0.95  # about 15% have no image
        types = Counter(label[2:] for p in posts for label in p.labels if label.startswith("B-"))
        assert set(types) == set(TYPES)
    assert len(ids) == len(set(ids))
    images = sorted((out / "images").iterdir())
    for path in images[:: max(1, len(images) // 40)]:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB" and image.size == (224, 224)
    total = sum(len(b) for b in tree_bytes(out).values())
    assert 1_000_000 < total < 10_000_000  # a few MB


def test_posts_hold_invisible_and_decoration_tokens(demo):
    posts, _ = read_conll(demo[0] / "train.txt")
    tokens = [t for p in posts for t in p.tokens]
    assert any(t in ("\ufe0f", "\u200b", "\u200d", "\u00a0", "\u00ad") for t in tokens)
    assert any(t.startswith("#") for t in tokens) and "RT" in tokens


def test_command_prints_counts_and_the_text_only_ceiling(demo, manifest):
    _, output = demo
    for split in SPLITS:
        assert re.search(rf"{split}\s+\d+ posts, \d+ images, \d+ entities .*, \d+ image-dependent", output)
    for split in ("valid", "test"):
        f1 = manifest["text_only_ceiling"][split]["f1"]
        assert f"best F1 of a text-only model on {split}: {100 * f1:.2f}" in output  # in points, like the paper


def test_params_file_gives_defaults_and_options_win(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("demo_data:\n  seed: 5\n  train: 6\n  valid: 3\n  test: 2\n", encoding="utf-8")
    out = tmp_path / "p"
    generate(out, "--params", str(params), "--test", "4")
    counts = {s: len(read_conll(out / f"{s}.txt")[0]) for s in SPLITS}
    assert counts == {"train": 6, "valid": 3, "test": 4}
    assert json.loads((out / MANIFEST_NAME).read_text())["config"]["seed"] == 5
    params.write_text("demo_data:\n  sed: 5\n", encoding="utf-8")
    result = CliRunner().invoke(dghc, ["demo-data", str(out), "--params", str(params)])
    assert result.exit_code != 0 and "unknown keys" in result.output and "sed" in result.output
    assert "Traceback" not in result.output
    for bad, message in (("train: many", "not a valid integer"), ("valid: 0", "0 is not in the range"),
                         ("test: true", "got a boolean"), ("no_image_rate: 2", "not in the range")):
        params.write_text(f"demo_data:\n  {bad}\n", encoding="utf-8")
        result = CliRunner().invoke(dghc, ["demo-data", str(out), "--params", str(params)])
        key = bad.split(":")[0]
        assert result.exit_code != 0 and f"demo_data.{key}" in result.output and message in result.output, bad
        assert str(params) in result.output and "Traceback" not in result.output


def test_every_demo_setting_is_an_option_and_a_params_key(tmp_path):
    from dghc.stages.demo import demo_data_command

    options = {p.name for p in demo_data_command.params}
    assert options == {f.name for f in dataclasses.fields(DemoConfig)} | {"params_file", "overrides"}
    params = tmp_path / "params.yaml"
    params.write_text(f"demo_data:\n  out: {tmp_path / 'from_params'}\n  train: 3\n  valid: 2\n  test: 2\n"
                      f"  image_size: 40\n  no_image_rate: 0.0\n", encoding="utf-8")
    result = CliRunner().invoke(dghc, ["demo-data", "--params", str(params), "--jpeg-quality", "70"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "from_params" / MANIFEST_NAME).read_text())["config"]
    assert (config["image_size"], config["no_image_rate"], config["jpeg_quality"], config["train"]) == (40, 0.0, 70, 3)
    with Image.open(next((tmp_path / "from_params" / "images").glob("*.jpg"))) as image:
        assert image.size == (40, 40)


# ---------------------------------------------------------------------------------------------------------
# The image matters


def test_ambiguous_names_take_several_types_in_the_same_contexts(splits):
    by_name: dict[str, Counter] = defaultdict(Counter)
    dependent_types: Counter = Counter()
    for demo_post in splits["train"]:
        for span in demo_post.image_dependent:
            assert span.name in AMBIGUOUS and span.entity_type in AMBIGUOUS[span.name]
            by_name[span.name][span.entity_type] += 1
            dependent_types[span.entity_type] += 1
            assert " ".join(demo_post.post.tokens[span.start:span.end]) == span.name
            assert all(label == "O" for i, label in enumerate(demo_post.post.labels) if not span.start <= i < span.end)
    # Every ambiguous name shows up, and each that is seen often enough is seen with more than one type.
    assert set(by_name) == set(AMBIGUOUS)
    for name, counts in by_name.items():
        if sum(counts.values()) >= 6:
            assert len(counts) >= 2, (name, counts)
    # Neutral contexts hold persons, places and organisations alike.
    assert {"PER", "LOC", "ORG"} <= set(dependent_types)
    assert len(NEUTRAL_TEMPLATES) >= 8


def test_image_shows_the_type_only_it_can_tell(splits):
    for split, posts in splits.items():
        dependent = 0
        for demo_post in posts:
            for span in demo_post.image_dependent:
                dependent += 1
                assert demo_post.visual_class == VISUAL_CLASS[span.entity_type]
            if demo_post.visual_class is None:  # no image: nothing depends on it
                assert demo_post.image_dependent == []
            assert len(demo_post.image_dependent) <= 1
        assert dependent >= len(posts) // 5, split


def test_unambiguous_names_are_seen_in_train(splits):
    train_names = {(e.name, e.entity_type) for p in splits["train"] for e in p.entities}
    for split in ("valid", "test"):
        for demo_post in splits[split]:
            for span in demo_post.entities:
                if not span.image_dependent:
                    assert (span.name, span.entity_type) in train_names, span


def test_text_only_ceiling_matches_an_independent_count(splits, manifest):
    ceiling = text_only_ceiling(splits)
    assert ceiling == manifest["text_only_ceiling"]
    majority = majority_types(splits["train"])
    for split in ("valid", "test"):
        posts = splits[split]
        entities = sum(len(p.entities) for p in posts)
        wrong = sum(majority[s.name] != s.entity_type for p in posts for s in p.image_dependent)
        assert wrong > 0
        # The oracle finds every span; a wrong type is one false positive and one false negative: P = R = F1.
        assert ceiling[split]["f1"] == pytest.approx((entities - wrong) / entities, abs=1e-4)
        assert ceiling[split]["precision"] == ceiling[split]["recall"] == ceiling[split]["f1"]
        assert 0.6 < ceiling[split]["f1"] < 0.9  # the text alone leaves a clear gap
        # Reading the images right closes the gap.
        gold = [p.post.labels for p in posts]
        assert entity_scores(gold, gold)["overall"]["f1"] == 1.0
        predictions = text_only_predictions(posts, majority)
        assert entity_scores(gold, predictions)["overall"]["f1"] == pytest.approx(ceiling[split]["f1"], abs=1e-4)


def test_summary_counts(tmp_path):
    summary = write_demo_data(DemoConfig(out=tmp_path / "s", train=40, valid=10, test=10))
    assert {s: summary.splits[s].posts for s in SPLITS} == {"train": 40, "valid": 10, "test": 10}
    for split in SPLITS:
        s = summary.splits[split]
        assert s.images == len(list((tmp_path / "s" / "images").glob(f"{split}-*.jpg")))
        assert s.entities == sum(s.entities_per_type.values())
        assert sum(s.visual_classes.values()) == s.images


# ---------------------------------------------------------------------------------------------------------
# An untrained CLIP separates the visual classes


@pytest.fixture(scope="module")
def clip_inputs(demo, manifest):
    """The offline default CLIP encoder and the preprocessed train and valid images with their visual classes."""
    from dghc.pipeline.features.clip_encoder import load_clip

    encoder = load_clip()  # untrained CLIP, seed 0
    assert encoder.untrained
    out, _ = demo
    inputs = {}
    for split in ("train", "valid"):
        items = [(p["id"], p["visual_class"]) for p in manifest["posts"][split] if p["visual_class"]]
        images = [Image.open(out / "images" / f"{post_id}.jpg").convert("RGB") for post_id, _ in items]
        inputs[split] = (encoder.processor(images=images, return_tensors="pt")["pixel_values"], [c for _, c in items])
    return encoder, inputs


def _probe_accuracy(train_x, train_y, valid_x, valid_y, torch) -> float:
    """A logistic regression on standardised vectors, trained with full-batch Adam."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, valid_x = (train_x - mean) / std, (valid_x - mean) / std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        probe = torch.nn.Linear(train_x.shape[1], int(train_y.max()) + 1)
    optimizer = torch.optim.Adam(probe.parameters(), lr=0.01, weight_decay=1e-3)
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(probe(train_x), train_y).backward()
        optimizer.step()
    with torch.no_grad():
        return float((probe(valid_x).argmax(1) == valid_y).float().mean())


@pytest.mark.slow
@pytest.mark.parametrize("output", ["projected", "pooled"])
def test_linear_probe_on_untrained_clip_separates_visual_classes(clip_inputs, output):
    import torch

    encoder, inputs = clip_inputs
    encoder = dataclasses.replace(encoder, output=output)
    (train_pixels, train_classes), (valid_pixels, valid_classes) = inputs["train"], inputs["valid"]
    train_x, valid_x = encoder.encode(train_pixels), encoder.encode(valid_pixels)
    assert train_x.shape == (len(train_classes), encoder.dim)
    classes = sorted(set(train_classes))
    assert classes == ["building", "landscape", "objects", "person"]
    train_y = torch.tensor([classes.index(c) for c in train_classes])
    valid_y = torch.tensor([classes.index(c) for c in valid_classes])
    accuracy = _probe_accuracy(train_x, train_y, valid_x, valid_y, torch)
    # The probe can fail: with shuffled training labels it is near chance.
    shuffled = train_y[torch.randperm(len(train_y), generator=torch.Generator().manual_seed(0))]
    chance = _probe_accuracy(train_x, shuffled, valid_x, valid_y, torch)
    print(f"{output}: probe accuracy on valid {accuracy:.3f}; with shuffled labels {chance:.3f}")
    assert accuracy >= 0.9, accuracy
    assert chance < 0.6, chance
