"""``dghc report``: the HTML page of sampled posts, for real.

A small demo set goes through the real detect (packaged YOLOv8 person detector) and extract (untrained CLIP)
stages, a tiny tagger is trained on it, and the command line writes the page, which headless Chromium renders.
"""
from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dghc.cli import dghc
from dghc.pipeline.data.conll import Post, read_conll
from dghc.pipeline.detection.store import Region
from dghc.pipeline.inference.tagging import PostPrediction
from dghc.pipeline.report.analysis import Effect, MaskedFeatures, choose_samples, entity_errors, image_effect
from dghc.pipeline.report.render import TYPE_COLOURS, ReportItem, ReportSummary, render_report
from tests.environment import require_tool
from tests.tiny_models import save_tiny_bert

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
XSS = "<script>alert(1)</script>"


def write_post(path: Path, post_id: str, tokens: list[str], labels: list[str]) -> None:
    lines = [f"IMGID:{post_id}"] + [f"{t}\t{label}" for t, label in zip(tokens, labels)]
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n" + "\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Demo data -> detect -> extract -> a tiny image model and a tiny text-only model."""
    from dghc.pipeline.demo.config import DemoConfig
    from dghc.pipeline.demo.writer import write_demo_data
    from dghc.pipeline.detection.config import DetectConfig
    from dghc.pipeline.detection.run import run_detect
    from dghc.pipeline.features.config import ExtractConfig
    from dghc.pipeline.features.extract import extract_features
    from dghc.pipeline.training.config import TrainConfig
    from dghc.pipeline.training.trainer import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report")
    demo = root / "demo"
    write_demo_data(DemoConfig(out=demo, train=40, valid=10, test=12, image_size=128))
    splits = [demo / f"{s}.txt" for s in ("train", "valid", "test")]
    detections, features = root / "detections.h5", root / "features.h5"
    run_detect(DetectConfig(files=splits, out=detections, imgsz=160, grounding=None, progress=False,
                            batch_size=16), log=lambda message: None)
    extract_features(ExtractConfig(data=splits, detections=detections, out=features, num_workers=0, device="cpu", progress=False))
    bert = save_tiny_bert(root / "bert", hidden=32, layers=2, heads=2)
    common = dict(train_file=str(splits[0]), dev_file=str(splits[1]), features_file=str(features),
                  detections_file=str(detections), log_file="", encoder=str(bert), batch_size=8, lr_encoder=2e-3,
                  lr_head=5e-3, lr_crf=5e-2, warmup_ratio=0.0, dropout=0.0, prompt_dim=16, progress=False, seed=3,
                  state_dir=root / "state")
    train(TrainConfig(output_dir=str(root / "model"), epochs=12, **common))
    train(TrainConfig(output_dir=str(root / "text_model"), epochs=2, use_image=False, **common))
    # the test split plus posts the caches do not know: a missing image, an unreadable one, and markup in tokens
    data = demo / "test_plus.txt"  # images/ beside it
    shutil.copy(splits[2], data)
    (demo / "images" / "broken_post.jpg").write_bytes(b"not a jpeg at all")
    write_post(data, "xss_post", [XSS, "loves", "Jordan"], ["O", "O", "B-PER"])
    write_post(data, "broken_post", ["Hello", "Tokyo", '"&"'], ["O", "B-LOC", "O"])
    shutil.copy(next(iter(sorted((demo / "images").glob("test-*.jpg")))), demo / "images" / "late_post.jpg")
    write_post(data, "late_post", ["Back", "in", "Oslo"], ["O", "O", "B-LOC"])  # an image the caches lack
    return SimpleNamespace(root=root, data=data, detections=detections, features=features,
                           model=root / "model", text_model=root / "text_model")


def run_report(*args: str) -> str:
    result = CliRunner().invoke(dghc, ["report", *map(str, args)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def shown_posts(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<section class="post [^"]*" data-post="([^"]*)" data-effect="([^"]*)"', page)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]


def assert_self_contained(page: str) -> None:
    """Nothing that a browser would fetch: no script, link, frame; images are data URIs; links are anchors.

    (Tokens may be URLs, as tweets are: they are text, not resources.)"""
    parser = Tags()
    parser.feed(page)
    assert not parser.tags & {"script", "link", "iframe", "object", "embed", "base", "video", "audio", "source"}
    for tag, name, value in parser.attributes:
        if name == "src":
            assert value.startswith("data:image/jpeg;base64,"), (tag, value[:80])
        elif name == "href":
            assert value.startswith("#"), (tag, value)
        else:
            assert "://" not in value and "url(" not in value, (tag, name, value)
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert "url(" not in style and "@import" not in style and "//" not in style


# --------------------------------------------------------------------------------------------- units


def test_image_effect_counts_entity_errors_of_both_runs():
    gold = ["B-PER", "O", "B-LOC"]
    assert entity_errors(gold, ["B-LOC", "O", "B-LOC"]) == 2  # a wrong type: one false positive, one miss
    assert image_effect(gold, gold, ["B-LOC", "O", "B-LOC"]) == Effect.HELPED
    assert image_effect(gold, ["O", "O", "B-LOC"], gold) == Effect.HURT
    assert image_effect(gold, ["O", "O", "O"], ["B-ORG", "O", "B-LOC"]) == Effect.SAME  # 2 errors each
    assert image_effect(gold, gold, None) == Effect.TEXT_ONLY_MODEL


def test_samples_put_helped_and_hurt_first_and_are_seeded():
    effects = [Effect.SAME] * 20
    for i in (3, 9, 15):
        effects[i] = Effect.HELPED
    for i in (5, 17):
        effects[i] = Effect.HURT
    chosen = choose_samples(effects, 8, seed=1)
    assert chosen[:5] == [3, 9, 15, 5, 17] and len(chosen) == 8
    assert all(effects[i] == Effect.SAME for i in chosen[5:]) and chosen[5:] == sorted(chosen[5:])
    assert choose_samples(effects, 8, seed=1) == chosen
    assert any(choose_samples(effects, 8, seed=s)[5:] != chosen[5:] for s in range(2, 6))
    # fewer places than helped+hurt posts: both kinds still show
    few = choose_samples(effects, 3, seed=0)
    assert {effects[i] for i in few} == {Effect.HELPED, Effect.HURT}
    assert choose_samples(effects, 100, seed=0) == [3, 9, 15, 5, 17] + [i for i in range(20) if i not in
                                                                        (3, 5, 9, 15, 17)]


def test_page_escapes_text_highlights_entities_and_embeds_everything():
    image = Image.new("RGB", (640, 480), (40, 120, 200))
    tokens = [XSS, "met", "Jordan", "in", "Paris"]
    post = Post('odd"id<b>', tokens, ["O", "O", "B-PER", "O", "B-LOC"])
    with_image = PostPrediction(post.post_id, ["B-ORG", "O", "B-PER", "O", "O"], 0.7, [[0.4, 0.6, 0.0, 0.0]] * 2)
    masked = PostPrediction(post.post_id, ["O", "O", "B-LOC", "O", "O"], 0.7, None)
    items = [ReportItem(post, with_image, masked, Effect.HELPED, image=image, image_status="present",
                        regions=[Region(0, "detector", "person <x>", 0.9, (10, 10, 300, 200))], visual_slots=[True] * 4),
             ReportItem(Post("gone", ["Hi"], ["O"]), PostPrediction("gone", ["O"], 0.5, None), None,
                        Effect.TEXT_ONLY_MODEL, image_status="missing", image_reason="no file images/gone.jpg")]
    summary = ReportSummary("t <title>", 2, {"helped": 1, "hurt": 0, "same": 0},
                            {"with image": {"overall": {"precision": 0.5, "recall": 0.5, "f1": 0.5}, "per_type": {}}})
    page = render_report(items, summary)
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-post="odd&#34;id&lt;b&gt;"' in page and "person &lt;x&gt;" in page and "t &lt;title&gt;" in page
    # predicted ORG is wrong (fp), gold LOC is missed (fn), the PER is right in both
    assert re.search(r'class="tok pred ent-ORG fp"', page)
    assert re.search(r'class="tok gold g-LOC fn"', page)
    assert re.search(r'class="tok pred ent-PER gold g-PER"', page)
    assert "image helped" in page and "image masked" in page and 'value="0.700"' in page
    assert "no image: missing" in page and "no file images/gone.jpg" in page
    assert page.count("data:image/jpeg;base64,") == 1
    assert_self_contained(page)
    encoded = re.search(r'src="data:image/jpeg;base64,([^"]*)"', page).group(1)
    thumbnail = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert max(thumbnail.size) == 320  # a large image is shrunk to the thumbnail size


# --------------------------------------------------------------------------------------------- real runs


def test_masked_features_give_the_text_only_path(setup):
    from dghc.pipeline.features.store import FeatureStore
    from dghc.pipeline.inference.checkpoint import load_checkpoint
    from dghc.pipeline.inference.tagging import predict

    checkpoint = load_checkpoint(setup.model)
    posts, _ = read_conll(setup.data)
    store = FeatureStore(setup.features)
    masked = predict(checkpoint.tagger, checkpoint.tokenizer, posts, MaskedFeatures(store))
    checkpoint.tagger.config.use_image = False
    alone = predict(checkpoint.tagger, checkpoint.tokenizer, posts, None)
    assert [p.labels for p in masked] == [p.labels for p in alone]


def test_report_command_writes_one_self_contained_page(setup, tmp_path):
    out = tmp_path / "page"
    output = run_report(setup.model, setup.data, "--out", out, "--features", setup.features,
                        "--detections", setup.detections)
    posts, _ = read_conll(setup.data)
    assert f"{len(posts)} posts" in output
    assert sorted(os.listdir(out)) == ["index.html"]  # nothing left from the atomic write
    page = (out / "index.html").read_text(encoding="utf-8")
    shown = shown_posts(page)
    assert sorted(post_id for post_id, _ in shown) == sorted(p.post_id for p in posts)  # fewer than --samples
    ranks = [list(e.value for e in Effect).index(effect) for _, effect in shown]
    assert ranks == sorted(ranks)  # helped, then hurt, then the rest
    assert_self_contained(page)
    assert XSS not in page and "&lt;script&gt;" in page and "&#34;&amp;&#34;" in page
    assert "no image: missing" in page and "no image: unreadable" in page
    assert page.count("not in the detections file") == 1
    assert "with image" in page and "image masked (text-only path)" in page and "UNTRAINED CLIP" in page
    assert 'class="gates"' in page and "<meter" in page and re.search(r'class="tok[^"]* gold g-(PER|LOC|ORG|MISC)', page)
    # every shown post whose image has a kept region shows it
    from dghc.pipeline.detection.store import load_detections

    detections = load_detections(setup.detections)
    with_regions = [p for p, _ in shown if p in detections.index and detections.regions(p)]
    assert page.count('<ol class="regions">') == len(with_regions)
    assert len(page.encode()) < 600_000

    # a sample: the same seed gives the same bytes (on the `auto` device, which once reached torch.device as written)
    run_report(setup.model, setup.data, "--out", tmp_path / "a", "--features", setup.features,
               "--detections", setup.detections, "--samples", 5, "--seed", 7, "--device", "auto")
    run_report(setup.model, setup.data, "--out", tmp_path / "b", "--features", setup.features,
               "--detections", setup.detections, "--samples", 5, "--seed", 7, "--device", "auto")
    small = (tmp_path / "a" / "index.html").read_bytes()
    assert small == (tmp_path / "b" / "index.html").read_bytes()
    assert len(shown_posts(small.decode())) == 5


def test_text_only_model_needs_no_features_and_shows_no_comparison(setup, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so that no cache/ file of the repository is picked up by default
    run_report(setup.text_model, setup.data, "--out", "page", "--samples", 3)
    page = (tmp_path / "page" / "index.html").read_text(encoding="utf-8")
    assert len(shown_posts(page)) == 3 and "image masked" not in page and 'class="gates"' not in page
    assert "No detections file was given" in page
    # a params file's `report` section gives defaults; options on the command line win
    Path("params.yaml").write_text("report:\n  samples: 2\n  out: from_params\n")
    run_report(setup.text_model, setup.data, "--params", "params.yaml", "--samples", 4)
    assert len(shown_posts((tmp_path / "from_params" / "index.html").read_text(encoding="utf-8"))) == 4
    result = CliRunner().invoke(dghc, ["report", str(setup.text_model), str(setup.data)])
    assert result.exit_code == 2 and "--out" in result.output


def test_errors_name_the_missing_file(setup, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(dghc, ["report", str(setup.model), str(setup.data), "--out", "x"])
    assert result.exit_code == 1 and "cache/features.h5 not found" in result.output
    result = CliRunner().invoke(dghc, ["report", str(setup.model), str(setup.data), "--out", "x", "--features",
                                       str(setup.features), "--detections", "nowhere.h5"])
    assert result.exit_code == 1 and "nowhere.h5" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_chromium_renders_a_page_that_is_not_blank(setup, tmp_path):
    require_tool(Path(CHROMIUM).is_file(), "chromium (Debian package `chromium`; .ci/run installs it)")
    out = tmp_path / "page"
    run_report(setup.model, setup.data, "--out", out, "--features", setup.features, "--detections", setup.detections)
    shot = tmp_path / "shot.png"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
               (out / "index.html").resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert shot.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1600)
    colours = image.getcolors(maxcolors=1 << 22)
    most_common = max(count for count, _ in colours)
    assert len(colours) > 500 and most_common < 0.9 * image.width * image.height

    def pixels_near(rgb: tuple[int, int, int], tolerance: int) -> int:
        return sum(count for count, colour in colours
                   if all(abs(a - b) <= tolerance for a, b in zip(colour, rgb)))

    entity_pixels = sum(pixels_near(tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)), 4) for c in TYPE_COLOURS.values())
    assert entity_pixels > 500  # entity chips are drawn
    assert pixels_near((230, 57, 70), 12) > 200  # wrong-entity outlines, error borders
    assert pixels_near((255, 140, 0), 12) > 100  # the detector's region boxes
    dark = pixels_near((34, 34, 34), 40)
    assert dark > 2000  # text is drawn
