"""Learning test: on the demo set, the full model types the names only the image tells; text only cannot.

The whole chain runs for real on a small demo set: detect (packaged person detector), extract (untrained CLIP),
train (packaged MiniLM) with and without the image, then both models tag the test split.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.data.conll import read_conll
from pipeline.demo.config import DemoConfig
from pipeline.demo.oracle import image_dependent_recall
from pipeline.demo.writer import write_demo_data
from pipeline.detection.config import DetectConfig
from pipeline.detection.run import run_detect
from pipeline.features.config import ExtractConfig
from pipeline.features.extract import extract_features
from pipeline.features.store import FeatureStore
from pipeline.training.checkpoint import load_checkpoint
from pipeline.training.config import TrainConfig
from pipeline.training.inference import predict
from pipeline.training.trainer import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("learning")
    write_demo_data(DemoConfig(out=root / "demo", train=240, valid=40, test=80))
    splits = [root / "demo" / f"{s}.txt" for s in ("train", "valid", "test")]
    run_detect(DetectConfig(files=splits, out=root / "detections.h5", imgsz=160, batch_size=16,
                            grounding="none", progress=False), log=lambda _: None)
    extract_features(ExtractConfig(data=splits, detections=root / "detections.h5", out=root / "features.h5",
                                   num_workers=0, device="cpu", progress=False))
    return root


def train_and_score(root: Path, name: str, **flags) -> float:
    torch.set_num_threads(2)
    config = TrainConfig(train_file=str(root / "demo" / "train.txt"), dev_file=str(root / "demo" / "valid.txt"),
                         features_file=str(root / "features.h5"), detections_file=str(root / "detections.h5"),
                         output_dir=str(root / name), log_file=str(root / f"{name}.csv"), epochs=3,
                         eval_begin_epoch=3, progress=False, **flags)
    train(config)
    checkpoint = load_checkpoint(root / name)
    posts, _ = read_conll(root / "demo" / "test.txt")
    predictions = predict(checkpoint.tagger, checkpoint.tokenizer, posts, FeatureStore(root / "features.h5"))
    return image_dependent_recall(root / "demo" / "demo.json", "test",
                                  {p.post_id: p.labels for p in predictions})


def test_full_model_beats_text_only_on_image_dependent_entities(demo_cache):
    text_only = train_and_score(demo_cache, "text_only", use_image=False)
    full = train_and_score(demo_cache, "full")
    assert full >= 0.8, f"full model typed only {full:.2f} of the image-dependent entities"
    assert full >= text_only + 0.25, f"full {full:.2f} vs text only {text_only:.2f}"
