"""Learning test: on the demo set, the full model types the names only the image tells; text only cannot.

The whole chain runs for real on a small demo set: detect (packaged person detector), extract (untrained CLIP),
train (packaged MiniLM) with and without the image, then both models tag the test split.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from dghc.pipeline.data.conll import read_conll
from dghc.pipeline.demo.config import DemoConfig
from dghc.pipeline.demo.oracle import image_dependent_recall
from dghc.pipeline.demo.writer import write_demo_data
from dghc.pipeline.detection.config import DetectConfig
from dghc.pipeline.detection.run import run_detect
from dghc.pipeline.features.config import ExtractConfig
from dghc.pipeline.features.extract import extract_features
from dghc.pipeline.features.store import FeatureStore
from dghc.pipeline.inference.checkpoint import load_checkpoint
from dghc.pipeline.inference.tagging import predict
from dghc.pipeline.training.config import TrainConfig
from dghc.pipeline.training.trainer import train
from tests.environment import TEST_THREADS

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


SEEDS = (1, 2)
EPOCHS = 8


def train_and_score(root: Path, name: str, seed: int, **flags) -> float:
    """Share of the test split's image-dependent entities a model trained with ``flags`` types right."""
    torch.set_num_threads(TEST_THREADS)
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
    """The full model's mean of two seeds, with a wide margin: float results differ between CPUs, and one seed's run
    can land anywhere in a range. Measured on the 2-core development machine (recall of the full model): seeds 1-5
    with the paper's fusion 0.56-0.81 at 3 epochs, 0.38-1.00 at 5 (a slow seed's dev F1 was still rising), so 8
    epochs; seeds 1-3 with today's defaults at 8 epochs: 1.0, 1.0, 1.0 (two seeds keep `make test` near 14 min)."""
    full = [train_and_score(demo_cache, "full", seed) for seed in SEEDS]
    # Text only cannot see what tells these entities apart: one seed is enough (0.28-0.41 over seeds 1-3 here)
    text_only = [train_and_score(demo_cache, "text_only", seed, use_image=False) for seed in SEEDS[:1]]
    full_mean, text_mean = statistics.fmean(full), statistics.fmean(text_only)
    with capsys.disabled():  # the figures go to the log of every run, passed or not
        print(f"\nimage-dependent entities typed right: full, seeds {SEEDS}: {full} (mean {full_mean:.3f}); "
              f"text only, seed {SEEDS[0]}: {text_only}")
    assert full_mean >= 0.75, f"full model typed only {full_mean:.2f} of the image-dependent entities"
    assert full_mean >= text_mean + 0.25, f"full {full_mean:.2f} vs text only {text_mean:.2f}"


class ImagesAs:
    """The test split's features seen another way: ``none`` (every image hidden), ``real``, ``shuffled`` (each post
    gets the image of another post) or ``noise`` (random vectors of the real ones' mean and spread)."""

    def __init__(self, store: FeatureStore, mode: str) -> None:
        self.store, self.mode, self.dim, self.m = store, mode, store.dim, store.m
        self.generator = torch.Generator().manual_seed(0)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.store

    def batch(self, image_ids):
        if self.mode == "shuffled":
            picks = torch.randint(len(self.store.image_ids), (len(image_ids),), generator=self.generator)
            image_ids = [self.store.image_ids[int(i)] for i in picks]
        vectors, mask = self.store.batch(image_ids)
        if self.mode == "none":
            mask = torch.zeros_like(mask)
        elif self.mode == "noise":
            vectors = torch.randn(vectors.shape, generator=self.generator) * vectors.std() + vectors.mean()
            mask = torch.ones_like(mask)
        return vectors, mask


def test_a_model_that_rarely_saw_an_image_keeps_its_text_path_with_any_image(demo_cache, tmp_path, capsys):
    """Trained where about 1% of the posts have an image, the model must not lose its entities when a test post
    comes with one: whatever the image (real, another post's, noise), at least 95% of its own F1 without images.
    (Measured on the 2-core machine, seeds 1 and 2: with the paper's free-length prefix 16% of it, every image
    post's entities wiped out; with the defaults, prefix_norm text, attention scaling and relevance_start 0.05,
    98% and 98%; the same with the relevance score starting at the paper's 0.5, 87% and 85%.)"""
    import h5py
    from seqeval.metrics import f1_score

    posts, _ = read_conll(demo_cache / "demo" / "train.txt")
    kept = {p.post_id for p in posts[:: 100]}  # 1 post in 100 keeps its image
    rare = tmp_path / "rare_features.h5"
    rare.write_bytes((demo_cache / "features.h5").read_bytes())
    with h5py.File(rare, "r+") as handle:
        ids = handle["image_ids"].asstr()[()].tolist()
        train_ids = {p.post_id for p in posts}
        hidden = np.array([image_id in train_ids and image_id not in kept for image_id in ids])
        for name in ("image_mask", "region_mask"):
            mask = handle[name][()]
            mask[hidden] = False
            handle[name][...] = mask
    test_posts, _ = read_conll(demo_cache / "demo" / "test.txt")
    gold = [p.labels for p in test_posts]
    ratios, figures = [], {}
    for seed in (1, 2):
        torch.set_num_threads(TEST_THREADS)
        config = TrainConfig(train_file=demo_cache / "demo" / "train.txt", dev_file=demo_cache / "demo" / "valid.txt",
                             features_file=rare, detections_file=demo_cache / "detections.h5",
                             output_dir=tmp_path / f"model-{seed}", log_file=None, state_dir=tmp_path / "state",
                             epochs=EPOCHS, eval_begin_epoch=EPOCHS, seed=seed, progress=False)
        train(config)
        checkpoint = load_checkpoint(config.output_dir)
        store = FeatureStore(demo_cache / "features.h5")
        f1 = {mode: f1_score(gold, [p.labels for p in predict(checkpoint.tagger, checkpoint.tokenizer, test_posts,
                                                              ImagesAs(store, mode))])
              for mode in ("none", "real", "shuffled", "noise")}
        figures[seed] = {mode: round(float(value), 4) for mode, value in f1.items()}
        ratios.append(min(f1["real"], f1["shuffled"], f1["noise"]) / max(f1["none"], 1e-9))
        with capsys.disabled():  # each seed's figures as soon as they exist, whatever fails later
            print(f"\nseed {seed}: test F1 of a model trained with {len(kept)} of {len(posts)} images, by the images "
                  f"it is given: {figures[seed]}; worst / without images: {ratios[-1]:.3f}")
    assert min(f["none"] for f in figures.values()) >= 0.5, "the text path itself did not learn"
    # 95%: the requirement (measured 0.98 on the machine that wrote this test).
    assert statistics.fmean(ratios) >= 0.95, f"an image took away {1 - statistics.fmean(ratios):.0%} of the F1"
