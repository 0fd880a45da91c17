"""The extract stage: real tiny CLIP models, real images and HDF5 files, the real CLI."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dghc.cli import dghc
from dghc.pipeline.artifacts.fingerprint import sha256_json
from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.data.images import ImageStatus, load_image
from dghc.pipeline.features.clip_encoder import build_untrained_clip, load_clip, untrained_clip_config, weights_sha256
from dghc.pipeline.features.config import UNTRAINED_NAME, ExtractConfig
from dghc.pipeline.features.crops import crop_box
from dghc.pipeline.features.extract import extract_features
from dghc.pipeline.features.preprocess import aspect_box
from tests.datasets import data_sets, image_files
from tests.extract_fixtures import (
    DetectionRow,
    make_image,
    save_tiny_clip,
    tiny_clip_config,
    write_conll,
    write_detections,
)

PRESENT, MISSING, UNREADABLE = int(ImageStatus.PRESENT), int(ImageStatus.MISSING), int(ImageStatus.UNREADABLE)
DETECTIONS = {
    # a: a box, a degenerate box (0.4 px wide), a box past the image's edges (clamped to 0..64 x 0..30)
    "a": DetectionRow(PRESENT, (64, 48), [(2, 3, 30, 40), (10, 10, 10.4, 40), (-20, -5, 200, 30)]),
    "b": DetectionRow(PRESENT, (40, 80), [(0, 0, 20, 20)]),
    "c": DetectionRow(UNREADABLE),
    "d": DetectionRow(MISSING),
    "e": DetectionRow(PRESENT, (96, 32), [(50, 0, 96, 32), (0, 0, 32, 32), (10, 5, 40, 25)]),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("extract")
    images = root / "images"
    images.mkdir()
    make_image(images / "a.jpg", 64, 48, seed=1)
    make_image(images / "b.jpg", 40, 80, seed=2, mode="L")  # grayscale: converted to RGB
    (images / "c.jpg").write_bytes(b"not a jpeg at all")  # unreadable; d.jpg is missing
    make_image(images / "e.jpg", 96, 32, seed=3)
    write_conll(root / "train.txt", ["b", "a", "c", "d"])
    write_conll(root / "valid.txt", ["e", "a"])  # a is in both files: one row
    write_detections(root / "detections.h5", DETECTIONS)
    save_tiny_clip(root / "clip")
    return {"root": root, "images": images, "clip": root / "clip", "detections": root / "detections.h5",
            "train": root / "train.txt", "valid": root / "valid.txt"}


def config(world, out: Path, **overrides) -> ExtractConfig:
    base = ExtractConfig(data=[world["train"], world["valid"]], detections=world["detections"], out=out,
                         model=str(world["clip"]), num_workers=0, batch_size=2, device="cpu", progress=False)
    return replace(base, **overrides)


def read(path: Path) -> dict:
    with h5py.File(path, "r") as handle:
        data = {name: handle[name][()] for name in handle}
        data["attrs"] = dict(handle.attrs)
    data["image_ids"] = [s.decode() for s in data["image_ids"]]
    return data


def test_shapes_masks_and_statuses(world, tmp_path):
    result = extract_features(config(world, tmp_path / "features.h5"))
    data = read(tmp_path / "features.h5")
    assert data["image_ids"] == ["a", "b", "c", "d", "e"]
    assert data["status"].dtype == np.uint8 and data["status"].tolist() == [PRESENT, PRESENT, UNREADABLE, MISSING,
                                                                             PRESENT]
    assert data["image_vectors"].shape == (5, 24) and data["image_vectors"].dtype == np.float16
    assert data["region_vectors"].shape == (5, 3, 24) and data["region_vectors"].dtype == np.float16
    assert data["image_mask"].dtype == bool and data["image_mask"].tolist() == [True, True, False, False, True]
    assert data["region_mask"].tolist() == [[True, False, True], [True, False, False], [False] * 3, [False] * 3,
                                            [True] * 3]
    # Zeros exactly where a slot is empty, real vectors where it is not.
    assert (np.abs(data["image_vectors"]).sum(axis=1) > 0).tolist() == data["image_mask"].tolist()
    assert ((np.abs(data["region_vectors"]).sum(axis=2) > 0) == data["region_mask"]).all()
    assert int(data["attrs"]["dim"]) == 24 and int(data["attrs"]["m"]) == 3
    assert (result.present, result.missing, result.unreadable, result.regions, result.empty_boxes) == (3, 1, 1, 6, 1)
    assert not (tmp_path / "features.h5.partial").exists()
    assert not list(tmp_path.glob("*.partial.json"))
    # A rerun with the same settings and images finds the file up to date; --force recomputes it.
    again = extract_features(config(world, tmp_path / "features.h5"))
    assert again.up_to_date and (again.present, again.regions) == (3, 6)
    forced = extract_features(config(world, tmp_path / "features.h5", force=True))
    assert not forced.up_to_date and read(tmp_path / "features.h5")["image_ids"] == data["image_ids"]


def test_vectors_are_the_models_outputs_for_the_image_and_its_crops(world, tmp_path):
    out = tmp_path / "pooled.h5"
    extract_features(config(world, out, output="pooled", dtype="float32", crop_padding=0.25))
    data = read(out)
    encoder = load_clip(str(world["clip"]), output="pooled", device="cpu")
    assert data["image_vectors"].shape == (5, 32)  # pooled: the hidden size

    def encode(image) -> np.ndarray:
        pixels = encoder.processor(images=[image], return_tensors="pt")["pixel_values"]
        return encoder.encode(pixels)[0].numpy()

    image_a = load_image(world["images"] / "a.jpg").image
    np.testing.assert_allclose(data["image_vectors"][0], encode(image_a), atol=1e-5)
    # Box (2, 3, 30, 40) with 25 % padding: (-5, -6.25, 37, 49.25) clamped to the 64x48 image.
    np.testing.assert_allclose(data["region_vectors"][0, 0], encode(image_a.crop((0, 0, 37, 48))), atol=1e-5)
    assert not np.allclose(data["region_vectors"][0, 0], data["image_vectors"][0], atol=1e-3)
    image_b = load_image(world["images"] / "b.jpg").image
    np.testing.assert_allclose(data["image_vectors"][1], encode(image_b), atol=1e-5)


def test_fingerprint_records_what_made_the_file(world, tmp_path):
    out = tmp_path / "features.h5"
    extract_features(config(world, out, crop_padding=0.1))
    attrs = read(out)["attrs"]
    fingerprint = json.loads(attrs["fingerprint"])
    encoder = load_clip(str(world["clip"]), device="cpu")
    with h5py.File(world["detections"], "r") as handle:
        detections_sha = handle.attrs["fingerprint_sha256"]
    assert fingerprint["model"] == str(world["clip"])
    assert fingerprint["weights_sha256"] == weights_sha256(encoder.model) == encoder.weights_sha256
    assert fingerprint["untrained"] is False and bool(attrs["untrained"]) is False and "note" not in attrs
    assert (fingerprint["output"], fingerprint["dtype"], fingerprint["dim"]) == ("projected", "float16", 24)
    assert (fingerprint["crop_padding"], fingerprint["min_crop_size"], fingerprint["m"]) == (0.1, 2, 3)
    assert fingerprint["detections_fingerprint_sha256"] == detections_sha
    assert fingerprint["preprocess"]["class"] == "CLIPImageProcessor"
    assert fingerprint["preprocess"]["crop_size"] == {"height": 32, "width": 32}
    assert fingerprint["preprocess"]["image_mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    assert attrs["fingerprint_sha256"] == sha256_json(fingerprint)


def test_refuses_detections_that_lack_some_images(world, tmp_path):
    partial = {k: v for k, v in DETECTIONS.items() if k not in ("b", "e")}
    write_detections(tmp_path / "detections.h5", partial)
    with pytest.raises(DghcError) as caught:
        extract_features(config(world, tmp_path / "f.h5", detections=tmp_path / "detections.h5"))
    message = str(caught.value)
    assert "no detections for 2 of the 5 images" in message
    assert "b, e" in message and "dghc detect" in message and str(world["train"]) in message
    assert not (tmp_path / "f.h5").exists()


def test_refuses_images_that_changed_since_detect(world, tmp_path):
    changed = dict(DETECTIONS, b=DetectionRow(PRESENT, (50, 80), [(0, 0, 20, 20)]))
    write_detections(tmp_path / "detections.h5", changed)
    with pytest.raises(DghcError, match=r"image 'b' changed since .*\(50, 80\).*\(40, 80\).*rerun `dghc detect`"):
        extract_features(config(world, tmp_path / "f.h5", detections=tmp_path / "detections.h5"))
    with pytest.raises(DghcError, match="detections file not found"):
        extract_features(config(world, tmp_path / "f.h5", detections=tmp_path / "nope.h5"))


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_bytes(world, tmp_path):
    whole = tmp_path / "whole.h5"
    extract_features(config(world, whole))
    out = tmp_path / "resumed.h5"

    def stop_after_first_batch(rows_done: int) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        extract_features(config(world, out), on_batch=stop_after_first_batch)
    assert not out.exists() and (tmp_path / "resumed.h5.partial").exists()
    # The rerun encodes only the rows not done: c and d have no image, e has 1 + 3 slots.
    encoder = load_clip(str(world["clip"]), device="cpu")
    encoded: list[int] = []
    real_encode = encoder.encode
    encoder.encode = lambda pixels: (encoded.append(pixels.shape[0]), real_encode(pixels))[1]
    result = extract_features(config(world, out), encoder=encoder)
    assert result.rows_resumed == 2 and sum(encoded) == 4
    assert out.read_bytes() == whole.read_bytes()
    assert not (tmp_path / "resumed.h5.partial").exists()


def test_other_settings_start_over(world, tmp_path):
    out = tmp_path / "f.h5"

    def stop(rows_done: int) -> None:
        raise Interrupt

    with pytest.raises(Interrupt):
        extract_features(config(world, out), on_batch=stop)
    result = extract_features(config(world, out, crop_padding=0.2))
    assert result.rows_resumed == 0
    fresh = tmp_path / "fresh.h5"
    extract_features(config(world, fresh, crop_padding=0.2))
    assert out.read_bytes() == fresh.read_bytes()


def test_worker_processes_give_the_same_bytes(world, tmp_path):
    extract_features(config(world, tmp_path / "main.h5", num_workers=0))
    extract_features(config(world, tmp_path / "worker.h5", num_workers=1))
    assert (tmp_path / "main.h5").read_bytes() == (tmp_path / "worker.h5").read_bytes()


def test_crop_box_clamps_pads_and_skips_degenerate_boxes():
    assert crop_box((2, 3, 30, 40), 64, 48) == (2, 3, 30, 40)
    assert crop_box((-20, -5, 200, 30), 64, 48) == (0, 0, 64, 30)
    assert crop_box((10, 10, 20, 30), 64, 48, padding=0.5) == (5, 0, 25, 40)
    assert crop_box((10, 10, 10.4, 40), 64, 48) is None  # 0 px wide once rounded
    assert crop_box((10, 10, 11, 40), 64, 48, min_size=2) is None
    assert crop_box((10, 10, 12, 40), 64, 48, min_size=2) == (10, 10, 12, 40)
    assert crop_box((30, 10, 20, 40), 64, 48) is None  # x2 < x1
    assert crop_box((70, 10, 90, 40), 64, 48) is None  # outside the image
    assert crop_box((float("nan"), 0, 5, 5), 64, 48) is None


def test_aspect_box_keeps_the_middle_of_long_boxes():
    assert aspect_box((0, 0, 1200, 2), 4.0) == (596, 0, 604, 2)
    assert aspect_box((0, 0, 3, 100), 4.0) == (0, 44, 3, 56)
    assert aspect_box((0, 0, 300, 100), 4.0) == (0, 0, 300, 100)


def test_untrained_default_is_the_fixed_config_and_seed():
    config = untrained_clip_config()
    assert (config.image_size, config.patch_size, config.hidden_size, config.intermediate_size,
            config.num_hidden_layers, config.num_attention_heads, config.projection_dim) == (224, 32, 256, 1024, 4,
                                                                                            4, 256)
    state = torch.random.get_rng_state()
    first, second = build_untrained_clip(0), build_untrained_clip(0)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is untouched
    assert weights_sha256(first) == weights_sha256(second) != weights_sha256(build_untrained_clip(1))
    encoder = load_clip(UNTRAINED_NAME, device="cpu")
    identity = encoder.identity()
    assert identity["untrained"] is True and identity["seed"] == 0 and identity["model"] == UNTRAINED_NAME
    assert identity["weights_sha256"] == weights_sha256(first) and encoder.dim == 256
    assert identity["preprocess"]["size"] == {"shortest_edge": 224}
    assert load_clip(UNTRAINED_NAME, output="pooled", device="cpu").dim == 256


def test_models_load_by_folder_whatever_was_saved(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    vision = tiny_clip_config()
    # A whole CLIP (text and vision), as on the hub: the vision tower and projection are taken from it.
    torch.manual_seed(0)
    full = CLIPModel(CLIPConfig(text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                             "num_attention_heads": 2, "vocab_size": 99, "bos_token_id": 0,
                                             "eos_token_id": 1, "pad_token_id": 1},
                                vision_config=vision.to_dict(), projection_dim=24))
    full.save_pretrained(tmp_path / "full")
    encoder = load_clip(str(tmp_path / "full"), device="cpu")
    assert torch.equal(encoder.model.visual_projection.weight, full.visual_projection.weight)
    assert encoder.untrained is False and encoder.dim == 24
    # A bare vision tower has no projection: projected vectors would be invented, so refused.
    save_tiny_clip(tmp_path / "bare", projection=False)
    with pytest.raises(DghcError, match="no visual_projection.*--output pooled"):
        load_clip(str(tmp_path / "bare"), output="projected", device="cpu")
    pooled = load_clip(str(tmp_path / "bare"), output="pooled", device="cpu")
    again = load_clip(str(tmp_path / "bare"), output="pooled", device="cpu")
    assert pooled.dim == 32 and pooled.weights_sha256 == again.weights_sha256  # the unused projection is zeroed
    # A folder with a config and no weights: built untrained from that config, and said so.
    save_tiny_clip(tmp_path / "config_only", weights=False)
    untrained = load_clip(str(tmp_path / "config_only"), device="cpu")
    assert untrained.untrained is True and untrained.seed == 0
    assert untrained.weights_sha256 == weights_sha256(build_untrained_clip(0, vision))
    with pytest.raises(DghcError, match="not found"):
        load_clip(str(tmp_path / "nowhere" / "x"), device="cpu")


def test_cli_with_the_untrained_default_and_params(world, tmp_path):
    out = tmp_path / "features.h5"
    runner = CliRunner()
    result = runner.invoke(dghc, ["extract", str(world["train"]), "--data", str(world["valid"]),
                                  "--detections", str(world["detections"]), "--out", str(out),
                                  "--num-workers", "0", "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "5 images (3 present, 1 missing, 1 unreadable)" in result.output and "UNTRAINED" in result.output
    attrs = read(out)["attrs"]
    assert bool(attrs["untrained"]) is True and "UNTRAINED CLIP" in attrs["note"]
    assert json.loads(attrs["fingerprint"])["model"] == UNTRAINED_NAME and int(attrs["dim"]) == 256

    params = tmp_path / "params.yaml"
    params.write_text(f"extract:\n  data: [{world['train']}, {world['valid']}]\n  detections: {world['detections']}\n"
                      f"  model: {world['clip']}\n  dtype: float32\n  crop-padding: 0.3\n  num_workers: 0\n"
                      f"  device: cpu\nother_stage:\n  anything: 1\n")
    result = runner.invoke(dghc, ["extract", "--params", str(params), "--dtype", "float16",
                                  "--out", str(tmp_path / "p.h5"), "--quiet"])
    assert result.exit_code == 0, result.output
    fingerprint = json.loads(read(tmp_path / "p.h5")["attrs"]["fingerprint"])
    assert fingerprint["dtype"] == "float16"  # the command line wins
    assert fingerprint["crop_padding"] == 0.3 and fingerprint["model"] == str(world["clip"])


def test_cli_errors_are_one_line(world, tmp_path):
    runner = CliRunner()
    result = runner.invoke(dghc, ["extract", str(world["train"]), "--detections", str(tmp_path / "none.h5"),
                                  "--out", str(tmp_path / "f.h5")])
    assert result.exit_code == 1
    assert "detections file not found" in result.output and "Traceback" not in result.output
    result = runner.invoke(dghc, ["extract", "--detections", str(world["detections"])])
    assert result.exit_code == 1 and "no CoNLL files given" in result.output
    params = tmp_path / "params.yaml"
    params.write_text("extract:\n  batchsize: 3\n")
    result = runner.invoke(dghc, ["extract", "--params", str(params), str(world["train"])])
    assert result.exit_code == 1 and "unknown keys in section 'extract': batchsize" in result.output


@pytest.mark.parametrize("data", data_sets("twitter2015"))
def test_tweets_mostly_without_images(world, tmp_path, data):
    from dghc.pipeline.data.conll import read_conll

    valid = data.split("valid" if data.real else "train")  # the fixture's images are in train
    posts, _ = read_conll(valid, invalid_bio="keep", type_map=None)
    rows = {}
    for post in posts:
        loaded = load_image(post.image_path)
        rows[post.post_id] = DetectionRow(int(loaded.status), loaded.size,
                                          [(0, 0, loaded.size[0] / 2, loaded.size[1] / 2)] if loaded.image else [])
    write_detections(tmp_path / "detections.h5", rows)
    result = extract_features(config(world, tmp_path / "f.h5", data=[valid], detections=tmp_path / "detections.h5",
                                     batch_size=64))
    present = sum(1 for r in rows.values() if r.status == PRESENT)
    assert result.images == len(rows) and result.present == present > 0 and result.regions == present
    data = read(tmp_path / "f.h5")
    assert int(data["image_mask"].sum()) == present and int(data["region_mask"][:, 0].sum()) == present
    assert int(data["region_mask"][:, 1:].sum()) == 0


# --------------------------------------------------------------------------------------------- preprocessing


def standard_like(**settings):
    from transformers import CLIPImageProcessor

    base = {"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}}
    return CLIPImageProcessor(**{**base, **settings})


PROCESSORS = {
    "standard-224": {},
    "tiny-32": {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}},
    # a hub model's own settings: larger resize than crop, bilinear, other mean/std
    "own-settings": {"size": {"shortest_edge": 72}, "crop_size": {"height": 64, "width": 64}, "resample": 2,
                     "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.25, 0.3]},
}


def odd_images(folder: Path) -> list:
    """Decoded images of odd shapes and modes, and demo-set pictures, as the stage decodes them."""
    from PIL import Image

    from dghc.pipeline.demo.painter import encode_jpeg, render_image
    from dghc.pipeline.demo.vocabulary import VISUAL_CLASSES

    folder.mkdir(parents=True, exist_ok=True)
    paths = [make_image(folder / f"odd{i}.jpg", w, h, seed=i)
             for i, (w, h) in enumerate([(1, 1), (3, 5), (1, 300), (300, 1), (7, 1000), (1000, 7), (97, 61),
                                         (225, 224), (640, 427)])]
    paths.append(make_image(folder / "gray.jpg", 50, 70, seed=20, mode="L"))
    rgba = Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 90, 4), dtype=np.uint8), "RGBA")
    rgba.save(folder / "alpha.png")
    paths.append(folder / "alpha.png")
    for k, visual_class in enumerate(VISUAL_CLASSES):
        path = folder / f"demo-{visual_class}.jpg"
        path.write_bytes(encode_jpeg(render_image(visual_class, seed=k, size=224), 90))
        paths.append(path)
    return [load_image(path).image for path in paths]


def region_boxes(width: int, height: int, rng: np.random.Generator, max_aspect: float = 4.0) -> list:
    """The whole image, random boxes and tiny ones, each trimmed to ``max_aspect`` as the stage trims them."""
    from dghc.pipeline.features.preprocess import aspect_box

    boxes = [(0, 0, width, height), (0, 0, 1, 1), (width - min(width, 2), height - min(height, 3), width, height)]
    for _ in range(3):
        x1, x2 = sorted(rng.integers(0, width + 1, 2))
        y1, y2 = sorted(rng.integers(0, height + 1, 2))
        boxes.append((int(x1), int(y1), int(max(x2, x1 + 1)), int(max(y2, y1 + 1))))
    clamped = [(min(x1, width - 1), min(y1, height - 1), min(x2, width), min(y2, height)) for x1, y1, x2, y2 in boxes]
    return [aspect_box(box, max_aspect) for box in clamped]


def assert_fast_path_matches(images: list, processors: dict) -> None:
    """The fast path gives the processor's pixels (to 1e-5 in normalised units, 1/1000 of a grey level)."""
    from dghc.pipeline.features.preprocess import FastClipPreprocessor, ProcessorPreprocessor

    rng = np.random.default_rng(0)
    for name, settings in processors.items():
        processor = standard_like(**settings)
        fast, reference = FastClipPreprocessor(processor), ProcessorPreprocessor(processor)
        for image in images:
            boxes = region_boxes(image.width, image.height, rng)
            got = fast(image, boxes)
            assert got.shape == (len(boxes), 3, fast.crop, fast.crop) and got.dtype == torch.float32
            difference = (got - reference(image, boxes)).abs().max().item()
            assert difference <= 1e-5, (name, image.size, difference)


def test_fast_preprocessing_matches_the_processor_on_odd_images_and_demo_pictures(tmp_path):
    assert_fast_path_matches(odd_images(tmp_path), PROCESSORS)


def test_fast_preprocessing_matches_the_processor_on_benchmark_images():
    paths = image_files()  # the fixture's pictures, and the real tweet photos where they exist
    assert len(paths) >= 8
    images = [load_image(path).image for path in paths]
    assert_fast_path_matches([image for image in images if image is not None],
                             {"standard-224": PROCESSORS["standard-224"]})


def test_fast_path_only_for_standard_clip_settings_and_recorded_in_the_fingerprint(world, tmp_path, monkeypatch):
    from dghc.pipeline.core.errors import FingerprintMismatch
    from dghc.pipeline.features.clip_encoder import ClipEncoder
    from dghc.pipeline.features.preprocess import (
        FAST_IMPLEMENTATION,
        PROCESSOR_IMPLEMENTATION,
        FastClipPreprocessor,
        ProcessorPreprocessor,
        fast_path_problem,
        make_preprocessor,
    )
    from dghc.pipeline.features.store import FeatureStore

    assert isinstance(make_preprocessor(standard_like()), FastClipPreprocessor)
    for settings, why in (({"do_center_crop": False}, "center crop"), ({"resample": 1}, "resample"),
                          ({"size": {"height": 224, "width": 224}}, "resize"), ({"do_normalize": False}, "normalis"),
                          ({"crop_size": {"height": 256, "width": 256}}, "center crop")):
        processor = standard_like(**settings)
        assert why in fast_path_problem(processor)
        assert isinstance(make_preprocessor(processor), ProcessorPreprocessor)

    class OwnProcessor(type(standard_like())):
        pass

    assert "OwnProcessor" in fast_path_problem(OwnProcessor())
    # The PIL backend's bicubic differs from torchvision's in the last grey levels: the processor itself runs.
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    assert isinstance(make_preprocessor(CLIPImageProcessorPil(**standard_like().to_dict())), ProcessorPreprocessor)

    fast_file, slow_file = tmp_path / "fast.h5", tmp_path / "slow.h5"
    extract_features(config(world, fast_file, dtype="float32"))
    fast = json.loads(read(fast_file)["attrs"]["fingerprint"])
    assert fast["preprocess"]["implementation"] == FAST_IMPLEMENTATION and fast["format"] == "dghc-features/2"
    # The same model through the processor itself (as files made before the fast path were): close vectors,
    # but the file does not count as the same.
    monkeypatch.setattr(ClipEncoder, "preprocessor", property(lambda self: ProcessorPreprocessor(self.processor)))
    extract_features(config(world, slow_file, dtype="float32"))
    slow = json.loads(read(slow_file)["attrs"]["fingerprint"])
    assert slow["preprocess"]["implementation"] == PROCESSOR_IMPLEMENTATION
    np.testing.assert_allclose(read(slow_file)["region_vectors"], read(fast_file)["region_vectors"], atol=1e-4)
    with pytest.raises(FingerprintMismatch, match="preprocess"):
        FeatureStore(slow_file).require({"preprocess": fast["preprocess"]})


def test_the_encoder_gets_uint8_crops_and_finishes_them_to_the_same_bits(world):
    """Batches carry uint8 crops (a quarter of float32: through DataLoader workers, Ray's object store, to the
    GPU); the encoder casts and normalises them, the only steps moved: IEEE float32 (x - mean) / std, as before."""
    from dghc.pipeline.features.crops import CropDataset, collate_items
    from dghc.pipeline.features.extract import collect_images, load_detection_rows

    encoder = load_clip(str(world["clip"]), device="cpu")
    rows = collect_images([world["train"], world["valid"]], None)
    found = load_detection_rows(world["detections"], rows.ids, [world["train"]])
    dataset = CropDataset(range(len(rows.ids)), rows.paths, found.boxes, found.valid, encoder.preprocessor,
                          encoder.image_size, 0.1, 2, 4.0)
    items = [dataset[i] for i in range(len(dataset))]
    crops = collate_items(items)["pixels"]
    assert crops.dtype == torch.uint8 and all(item["pixels"].dtype == torch.uint8 for item in items)
    assert crops.shape == (9, 3, encoder.image_size, encoder.image_size)  # 3 images, 6 boxes (a has a degenerate one)
    preprocessor = encoder.preprocessor
    finished = preprocessor.finish(crops)
    mean, std = preprocessor.mean.numpy(), preprocessor.std.numpy()
    assert np.array_equal(finished.numpy(), (crops.numpy().astype(np.float32) - mean) / std)
    assert torch.equal(torch.cat([preprocessor.finish(item["pixels"]) for item in items]), finished)
    assert torch.equal(encoder.encode(crops), encoder.encode(finished))


def test_threaded_batches_give_what_worker_processes_give(world, tmp_path):
    from dghc.pipeline.features.crops import CropDataset, make_loader
    from dghc.pipeline.features.extract import collect_images, load_detection_rows

    encoder = load_clip(str(world["clip"]), device="cpu")
    rows = collect_images([world["train"], world["valid"]], None)
    found = load_detection_rows(world["detections"], rows.ids, [world["train"]])
    dataset = CropDataset(range(len(rows.ids)), rows.paths, found.boxes, found.valid, encoder.processor,
                          encoder.image_size, 0.1, 2, 4.0)
    threads_before = torch.get_num_threads()
    runs = [list(make_loader(dataset, 2, 0, threads=threads)) for threads in (1, 3)]
    assert torch.get_num_threads() == threads_before  # the preprocessing threads' setting does not leak
    runs.append(list(make_loader(dataset, 2, 1)))
    for batches in runs[1:]:
        assert [b["rows"] for b in batches] == [b["rows"] for b in runs[0]] == [[0, 1], [2, 3], [4]]
        for got, want in zip(batches, runs[0]):
            assert torch.equal(got["pixels"], want["pixels"]) and torch.equal(got["slots"], want["slots"])
    # The stage's default on the CPU: no worker process, the pool of threads.
    extract_features(config(world, tmp_path / "auto.h5", num_workers=None))
    extract_features(config(world, tmp_path / "one.h5", num_workers=1))
    assert (tmp_path / "auto.h5").read_bytes() == (tmp_path / "one.h5").read_bytes()


def test_load_image_from_several_threads_keeps_pil_settings(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from PIL import ImageFile

    good = make_image(tmp_path / "good.jpg", 300, 200, seed=4)
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    paths = [good, tmp_path / "truncated.jpg"] * 40
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # a caller's setting: refused inside load_image, given back after
    try:
        with ThreadPoolExecutor(4) as pool:
            loaded = list(pool.map(load_image, paths))
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before
    assert [item.status for item in loaded] == [ImageStatus.PRESENT, ImageStatus.UNREADABLE] * 40
    assert all("truncated" in item.reason or "cannot decode" in item.reason for item in loaded[1::2])
    # The decoded image is returned without a copy and stays usable after its file was closed.
    image = loaded[0].image
    assert image.mode == "RGB" and image.size == (300, 200) and image.getpixel((10, 10)) is not None
