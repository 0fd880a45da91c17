"""Learning test: on the demo set, the full model types the names only the image tells; text only cannot.

The whole chain runs for real on a small demo set: detect (packaged person detector), extract (untrained CLIP),
train (packaged MiniLM) with and without the image, then both models tag the test split.
"""
from __future__ import annotations

import statistics
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


SEEDS = (1, 2, 3)
EPOCHS = 8


def train_and_score(root: Path, name: str, seed: int, **flags) -> float:
    """Share of the test split's image-dependent entities a model trained with ``flags`` types right."""
    torch.set_num_threads(2)
    config = TrainConfig(train_file=root / "demo" / "train.txt", dev_file=root / "demo" / "valid.txt",
                         features_file=root / "features.h5", detections_file=root / "detections.h5",
                         output_dir=root / f"{name}-{seed}", log_file=None, state_dir=root / "state", epochs=EPOCHS,
                         eval_begin_epoch=EPOCHS, seed=seed, progress=False, **flags)
    train(config)
    checkpoint = load_checkpoint(config.output_dir)
    posts, _ = read_conll(root / "demo" / "test.txt")
    predictions = predict(checkpoint.tagger, checkpoint.tokenizer, posts, FeatureStore(root / "features.h5"))
    return image_dependent_recall(root / "demo" / "demo.json", "test",
                                  {p.post_id: p.labels for p in predictions})


def test_full_model_beats_text_only_on_image_dependent_entities(demo_cache, capsys):
    """The median of three seeds, with a wide margin: float results differ between CPUs, and one seed's run
    can land anywhere in a range. Measured on the 2-core development machine (recall of the full model over
    seeds 1-5): 0.56-0.81 at 3 epochs, 0.38-1.00 at 5 (a slow seed's dev F1 was still rising), so 8 epochs."""
    full = [train_and_score(demo_cache, "full", seed) for seed in SEEDS]
    text_only = [train_and_score(demo_cache, "text_only", seed, use_image=False) for seed in SEEDS]
    full_median, text_median = statistics.median(full), statistics.median(text_only)
    with capsys.disabled():  # the figures go to the log of every run, passed or not
        print(f"\nimage-dependent entities typed right, seeds {SEEDS}: full {full} (median {full_median:.3f}), "
              f"text only {text_only} (median {text_median:.3f})")
    assert full_median >= 0.75, f"full model typed only {full_median:.2f} of the image-dependent entities"
    assert full_median >= text_median + 0.25, f"full {full_median:.2f} vs text only {text_median:.2f}"
