"""The grounding source, run as far as ultralytics allows offline, and its merge with the generic detector.

No open-vocabulary weights and no text-encoder weights (MobileCLIP for YOLOE, CLIP for YOLO-World) exist on
these machines. So:
- the real ultralytics YOLOE and YOLO-World networks are built from their yamls (random weights, seed 0) and run
  through ``GroundingDetector`` with a STAND-IN text encoder (below): everything but the text encoder is real;
- a FAKE grounding source with fixed outputs checks how the stage merges that source's boxes with the detector's;
- grounding weights not on the machine, and local weights without ultralytics' text encoder, are refused at once
  in one line (a configured source that cannot run is an error), with any network access failing the test.
"""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.detection.config import PACKAGED_DETECTOR, YOLOE_GROUNDING, DetectConfig
from dghc.pipeline.detection.detectors import (
    GroundingDetector,
    PredictSettings,
    import_ultralytics,
    resolve_weights,
)
from dghc.pipeline.detection.merge import SourceBoxes
from dghc.pipeline.detection.phrases import post_phrases
from dghc.pipeline.detection.run import run_detect
from dghc.pipeline.detection.sources import LoadedSources, load_sources
from dghc.pipeline.detection.store import load_detections
from tests.datasets import image_files

ASSETS = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0]) / "assets"
GROUNDING_SETTINGS = PredictSettings(imgsz=160, conf=1e-6, iou=0.5)  # random weights score ~1e-4


class StandInTextEncoder:
    """NOT a text encoder: a deterministic unit vector per phrase (seeded by its sha256), for tests only.

    It lets ultralytics' open-vocabulary network run offline; the boxes mean nothing, the code path is real.
    """

    name = "test stand-in (sha256-seeded vectors)"

    def __init__(self, dim: int = 512) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def encode(self, phrases: list[str]) -> torch.Tensor:
        self.calls.append(list(phrases))
        vectors = []
        for phrase in phrases:
            seed = int(hashlib.sha256(phrase.encode("utf-8")).hexdigest()[:12], 16)
            vector = torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
            vectors.append(vector / vector.norm())
        return torch.stack(vectors).unsqueeze(0)


class FakeGroundingSource:
    """FAKE grounding source with fixed outputs (same interface as GroundingDetector), to test the merge."""

    source = "grounding"

    def __init__(self, outputs: dict[tuple[int, int], tuple[list[float], float, str]]) -> None:
        self.outputs = outputs  # image size -> (box, score, phrase index)

    def detect(self, images, phrases=None):
        out = []
        for image, image_phrases in zip(images, phrases):
            if image.size in self.outputs and image_phrases:
                box, score, _ = self.outputs[image.size]
                out.append(SourceBoxes("grounding", [box], [score], [image_phrases[0]]))
            else:
                out.append(SourceBoxes.empty("grounding"))
        return out

    def describe(self):
        return {"weights": "fake-grounding", "sha256": None, "untrained": True, "text_encoder": "none (fake)"}


@pytest.fixture(scope="module")
def yoloe():
    encoder = StandInTextEncoder()
    return GroundingDetector(resolve_weights("yoloe-11n.yaml"), GROUNDING_SETTINGS, encoder=encoder)


@pytest.fixture(scope="module")
def person_detector():
    loaded = load_sources(PACKAGED_DETECTOR, None, PredictSettings(imgsz=320, conf=0.25, iou=0.5))
    return loaded.sources[0]


def photos() -> list[Image.Image]:
    return [Image.open(ASSETS / name).convert("RGB") for name in ("bus.jpg", "zidane.jpg")]


def test_yoloe_network_runs_offline_prompted_with_each_posts_phrases(yoloe):
    bus, zidane = photos()
    bus_phrases = post_phrases("Donald Trump rides the # RedBus in Madrid".split())
    assert bus_phrases == ["Donald Trump", "Red Bus", "Madrid"]
    found = yoloe.detect([bus, zidane, bus], [bus_phrases, ["Zinedine Zidane", "Donald Trump"], []])
    assert all(part.source == "grounding" for part in found)
    assert len(found[0].boxes) > 0 and set(found[0].class_names) <= set(bus_phrases)
    assert len(found[1].boxes) > 0 and set(found[1].class_names) <= {"Zinedine Zidane", "Donald Trump"}
    assert len(found[2].boxes) == 0  # no phrase, no prompt, no box
    width, height = bus.size
    assert np.all(found[0].boxes[:, [0, 2]] <= width + 1e-3) and np.all(found[0].boxes[:, [1, 3]] <= height + 1e-3)
    # Each distinct phrase is encoded once ("Donald Trump" is reused from the cache).
    encoded = [p for call in yoloe.encoder.calls for p in call]
    assert sorted(encoded) == sorted(set(encoded)) and "Zinedine Zidane" in encoded
    assert yoloe.describe()["model"] == "yoloe" and yoloe.describe()["untrained"] is True


def test_an_images_grounding_boxes_do_not_depend_on_its_batch(yoloe):
    bus, zidane = photos()
    alone = yoloe.detect([zidane], [["Zinedine Zidane"]])[0]
    together = yoloe.detect([bus, zidane], [["Madrid"], ["Zinedine Zidane"]])[1]
    np.testing.assert_array_equal(alone.boxes, together.boxes)
    np.testing.assert_array_equal(alone.scores, together.scores)
    assert alone.class_names == together.class_names


def test_yolo_world_network_runs_offline_with_given_embeddings():
    world = GroundingDetector(resolve_weights("yolov8n-worldv2.yaml"), GROUNDING_SETTINGS, encoder=StandInTextEncoder())
    bus, _ = photos()
    found = world.detect([bus], [["Red Bus", "Donald Trump"]])[0]
    assert world.kind == "world" and len(found.boxes) > 0
    assert set(found.class_names) <= {"Red Bus", "Donald Trump"}


def write_conll(path: Path, posts: list[tuple[str, str]]) -> Path:
    blocks = ["\n".join([f"IMGID:{i}"] + [f"{t}\tO" for t in text.split()]) for i, text in posts]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def stage_inputs(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(ASSETS / "bus.jpg", images / "bus.jpg")
    shutil.copy(ASSETS / "zidane.jpg", images / "zidane.jpg")
    landscape = image_files("twitter2017")[0]
    shutil.copy(landscape, images / "tweet.jpg")
    texts = {"bus": "RT @ MadridBuses : the # RedBus at Plaza Mayor", "zidane": "Zinedine Zidane at Real Madrid",
             "tweet": "Swan upping at Tower Bridge", "nophoto": "Barack Obama"}
    return write_conll(tmp_path / "train.txt", list(texts.items())), texts


def test_stage_merges_detector_and_real_grounding_network(tmp_path, person_detector, yoloe):
    conll, texts = stage_inputs(tmp_path)
    loaded = LoadedSources([person_detector, yoloe],
                           {"detector": {"ran": True, **person_detector.describe()},
                            "grounding": {"ran": True, **yoloe.describe()}})
    out = tmp_path / "d.h5"
    cfg = DetectConfig([conll], out=out, imgsz=320, conf=0.25, iou=0.5, detector=None, grounding=None,
                       progress=False)
    summary = run_detect(cfg, loaded=loaded)
    det = load_detections(out)
    assert det.sources_run["grounding"]["ran"] and det.sources_run["grounding"]["text_encoder"].startswith("test")
    assert det.fingerprint["grounding"]["weights"] == "yoloe-11n.yaml" and det.fingerprint["phrases_sha256"]
    assert summary.regions.get("grounding", 0) > 0 and summary.regions.get("detector", 0) > 0
    for image_id in ("bus", "zidane", "tweet"):
        regions = det.regions(image_id)
        assert len(regions) == 3
        assert [r.score for r in regions] == sorted((r.score for r in regions), reverse=True)
        for region in regions:
            if region.source == "grounding":  # its classes are the post's own phrases
                assert region.class_name in post_phrases(texts[image_id].split())
    assert not det.valid[det.index["nophoto"]].any()


def test_fake_grounding_outputs_win_their_region_by_score(tmp_path, person_detector):
    conll, _ = stage_inputs(tmp_path)
    detector_alone = person_detector.detect(photos()[1:])[0]  # zidane.jpg
    best = int(np.argmax(detector_alone.scores))
    over_best = (detector_alone.boxes[best] + np.array([2, 2, -2, -2], np.float32)).tolist()
    fake = FakeGroundingSource({photos()[1].size: (over_best, 0.99, "phrase")})
    loaded = LoadedSources([person_detector, fake], {"detector": {"ran": True, **person_detector.describe()},
                                                     "grounding": {"ran": True, **fake.describe()}})
    out = tmp_path / "d.h5"
    cfg = DetectConfig([conll], out=out, imgsz=320, conf=0.25, iou=0.5, progress=False)
    run_detect(cfg, loaded=loaded)
    regions = load_detections(out).regions("zidane")
    assert regions[0].source == "grounding" and regions[0].class_name == "Zinedine Zidane"
    assert regions[0].score == pytest.approx(0.99)
    # The detector's box under it is suppressed (class-agnostic NMS); its other boxes follow by score.
    others = np.delete(detector_alone.scores, best)
    expected = sorted(others[others > 0], reverse=True)[:2]
    assert [r.source for r in regions[1:]] == ["detector"] * len(expected)
    np.testing.assert_allclose([r.score for r in regions[1:]], expected, rtol=1e-4)


@pytest.fixture
def no_network(monkeypatch) -> list[str]:
    """Refuses every connection and sleep, and records them: a library may catch the refusal and retry."""
    attempts: list[str] = []

    def refuse(what: str):
        def call(*args, **kwargs):
            attempts.append(what)
            raise OSError(f"{what} refused by the test")
        return call

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(time, "sleep", refuse("sleep"))
    return attempts


def test_grounding_weights_not_on_the_machine_are_refused_at_once_without_network(no_network):
    """A configured source that cannot run is an error (regions cached without it would pass for its output)."""
    with pytest.raises(DghcError) as error:
        load_sources(None, YOLOE_GROUNDING, GROUNDING_SETTINGS)
    # "At once": no connection tried and no retry's wait (counted, not timed: timing depends on the machine).
    assert no_network == []
    message = str(error.value)
    assert f"the grounding source '{YOLOE_GROUNDING}' cannot run here" in message and "not on this machine" in message
    assert "--grounding none" in message and "\n" not in message


def test_a_source_turned_off_is_recorded_as_off():
    loaded = load_sources("none", None, GROUNDING_SETTINGS)
    assert loaded.sources == []
    assert loaded.report == {role: {"ran": False, "weights": None, "reason": "turned off (none)"}
                             for role in ("detector", "grounding")}


def test_local_open_vocabulary_weights_without_the_text_encoder_are_refused(tmp_path, no_network):
    import_ultralytics()
    from ultralytics import YOLO

    weights = tmp_path / "yoloe-local.pt"
    YOLO("yoloe-11n.yaml").save(weights)
    with pytest.raises(DghcError) as error:
        load_sources(None, str(weights), GROUNDING_SETTINGS)
    reason = str(error.value)
    assert "text encoder" in reason and ("clip" in reason or "mobileclip" in reason) and "yoloe-local.pt" in reason
    assert no_network == []


def test_generic_detector_takes_any_yolo_yaml_and_reports_a_corrupt_file(tmp_path):
    loaded = load_sources("yolov8n.yaml", None, PredictSettings(imgsz=160, conf=1e-6))
    detector = loaded.sources[0]
    assert loaded.report["detector"]["untrained"] is True and len(detector.class_names) == 80
    found = detector.detect(photos()[:1])[0]
    assert found.source == "detector" and set(found.class_names) <= set(detector.class_names)
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(DghcError, match="cannot load 'broken.pt'") as error:
        load_sources(str(tmp_path / "broken.pt"), None, PredictSettings())
    assert "\n" not in str(error.value)
