"""--engine ray: what the workers check themselves, tested without Ray (the actor classes are plain classes that
``run_batches`` hands to Ray): the precision their own device can compute in, and that they loaded the model the
driver's fingerprint names."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import dghc
from dghc.pipeline.artifacts.shards import plan_shards
from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.features.clip_encoder import load_clip
from dghc.pipeline.features.config import ExtractConfig
from dghc.pipeline.prediction.config import PredictConfig
from dghc.pipeline.prediction.inputs import InputPost
from dghc.pipeline.scale import extract as scale_extract
from dghc.pipeline.scale import predict as scale_predict
from tests.extract_fixtures import save_tiny_clip

# ------------------------------------------------------------------------- predict: precision where it runs


def no_nvidia_driver(*_args, **_kwargs):
    raise RuntimeError("Found no NVIDIA driver on your system")


def predict_config(tmp_path: Path, precision: str) -> PredictConfig:
    return PredictConfig(model_dir=tmp_path / "model", out=tmp_path / "out", precision=precision, engine="ray",
                         progress=False)


def test_predict_driver_leaves_gpu_checks_to_workers(tmp_path, monkeypatch):
    """A CPU head node with GPU workers: the driver never asks CUDA about a GPU it does not have."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", no_nvidia_driver)
    monkeypatch.setattr(torch.cuda, "get_device_name", no_nvidia_driver)
    sent = {}

    def fake_run_batches(payloads, actor, arguments, resources, workers, blocks, prepare=None):
        sent.update(actor=actor, arguments=arguments, resources=resources)
        return iter(())

    monkeypatch.setattr(scale_predict, "run_batches", fake_run_batches)
    config = predict_config(tmp_path, "bf16")
    posts = [InputPost("p1", "a b", [], None, 1)]
    todo = plan_shards(1, config.shard_size, config.batch_size, scale_predict.KIND, suffix=".parquet")
    list(scale_predict._run(config, posts, todo, "stdin", {"CPU": 4.0, "GPU": 2.0}))
    assert sent["actor"] is scale_predict.PredictActor
    assert sent["arguments"]["device"] == "cuda" and sent["resources"].num_gpus == 1.0
    # what needs no GPU the driver still refuses at once: fp16 on CPU workers
    with pytest.raises(DghcError, match="fp16 needs a CUDA GPU"):
        list(scale_predict._run(predict_config(tmp_path, "fp16"), posts, todo, "stdin", {"CPU": 4.0}))


def test_predict_worker_refuses_bf16_on_pre_ampere_gpu(tmp_path, monkeypatch):
    """The actor checks its own GPU (a T4 here, faked) before loading anything, in one line naming the host."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "Tesla T4")
    monkeypatch.setattr(torch.version, "hip", None)
    with pytest.raises(DghcError) as caught:
        scale_predict.PredictActor(predict_config(tmp_path, "bf16"), "cuda", 1, False, "stdin")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("predict: worker on ") and "bf16 is not native" in message and "Tesla T4" in message


# ------------------------------------------------------------------------- extract: the driver's CLIP model


def test_extract_worker_refuses_other_weights(tmp_path):
    """A worker that loads other CLIP weights (or runs another dghc) than the driver's refuses before computing."""
    output = ExtractConfig.output
    driver_model = save_tiny_clip(tmp_path / "driver", seed=0)
    other_model = save_tiny_clip(tmp_path / "other", seed=1)
    driver = load_clip(str(driver_model), output, "cpu", 0)
    expected = scale_extract.worker_identity(driver.identity())  # what the driver sends each worker

    with pytest.raises(DghcError) as caught:
        scale_extract.EncodeActor(str(other_model), output, "cpu", 0, 1, None, expected=expected)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("extract: worker on ")
    assert f"but the driver's are {driver.weights_sha256[:12]}" in message
    assert "every node needs the same" in message

    with pytest.raises(DghcError, match=r"runs dghc .* but the driver runs 0\.0\.0-other"):
        scale_extract.EncodeActor(str(driver_model), output, "cpu", 0, 1, None,
                                  expected={**expected, "dghc": "0.0.0-other"})
    # the same model and dghc: accepted
    actor = scale_extract.EncodeActor(str(driver_model), output, "cpu", 0, 1, None, expected=expected)
    assert actor.encoder.weights_sha256 == driver.weights_sha256


# ------------------------------------------------------------------------- detect: the driver's detector


def test_detect_worker_refuses_other_weights(tmp_path):
    """A worker whose detector weights (or dghc) differ from those the driver fingerprinted refuses before
    detecting; the same weights are accepted."""
    from dghc.pipeline.detection.config import DetectConfig
    from dghc.pipeline.detection.detectors import PredictSettings
    from dghc.pipeline.detection.sources import load_sources
    from dghc.pipeline.scale import detect as scale_detect

    (tmp_path / "posts.txt").write_text("")
    config = DetectConfig(files=[tmp_path / "posts.txt"], out=tmp_path / "ray", engine="ray", grounding=None,
                          imgsz=160, device="cpu", progress=False)
    report = load_sources(config.detector, config.grounding,
                          PredictSettings(imgsz=config.imgsz, conf=config.conf, iou=config.iou, device="cpu")).report
    assert report["detector"]["ran"]
    sources = {role: {key: info.get(key) for key in ("ran", "sha256", "untrained", "text_encoder")}
               for role, info in sorted(report.items())}
    expected = {"sources": sources, "dghc": dghc.__version__}  # what the driver sends each worker
    other = {**expected, "sources": {**sources, "detector": {**sources["detector"], "sha256": "f" * 64}}}
    with pytest.raises(DghcError) as caught:
        scale_detect.DetectActor(config, "cpu", 1, expected=other)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("detect: worker on ")
    assert "but the driver's are ffffffffffff" in message and "every node needs the same" in message
    scale_detect.DetectActor(config, "cpu", 1, expected=expected)  # the same weights: accepted


def test_predict_worker_refuses_another_model_folder_or_dghc(tmp_path, monkeypatch):
    """A node whose model folder (at the driver's path) holds other files, or that runs another dghc, is refused
    before it tags a post: its records would be written under the driver's run key."""
    driver, node = tmp_path / "driver" / "model", tmp_path / "node" / "model"
    for folder, weights in ((driver, b"driver weights"), (node, b"other weights")):
        (folder / "encoder").mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(weights)
        (folder / "encoder" / "config.json").write_text("{}")
    expected = scale_predict.worker_identity(driver)  # what the driver sends each worker
    config = predict_config(tmp_path, "no")
    with pytest.raises(DghcError) as caught:
        scale_predict.PredictActor(replace(config, model_dir=node), "cpu", 1, False, "posts.jsonl", expected)
    message = str(caught.value)
    print(message)
    assert "another model folder than the driver's (files that differ: model.safetensors)" in message
    assert "\n" not in message

    monkeypatch.setattr(dghc, "__version__", "0.0.0-other")
    with pytest.raises(DghcError, match=r"runs dghc 0\.0\.0-other but the driver runs"):
        scale_predict.PredictActor(replace(config, model_dir=driver), "cpu", 1, False, "posts.jsonl", expected)

    monkeypatch.undo()  # the same folder and dghc: the identity passes, and loading goes on (a fake checkpoint)
    with pytest.raises(DghcError) as loading:
        scale_predict.PredictActor(replace(config, model_dir=driver), "cpu", 1, False, "posts.jsonl", expected)
    assert "not a dghc model folder" in str(loading.value), loading.value
