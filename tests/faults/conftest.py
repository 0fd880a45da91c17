"""The fault harness: real `dghc` subprocesses killed, signalled, run twice at once, and writes that fail.

Every test here is slow (`make test` runs them, `make test-fast` does not). The stages run on a tiny real pipeline
built once: a demo set, the packaged person detector, the untrained CLIP, a tiny BERT.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> dict[str, Path]:
    """Inputs every fault test starts from: demo posts and images, detections and features, a tiny BERT."""
    from dghc.pipeline.demo.config import DemoConfig
    from dghc.pipeline.demo.writer import write_demo_data
    from dghc.pipeline.detection.config import DetectConfig
    from dghc.pipeline.detection.run import run_detect
    from dghc.pipeline.features.config import ExtractConfig
    from dghc.pipeline.features.extract import extract_features
    from tests.tiny_models import save_tiny_bert

    root = tmp_path_factory.mktemp("faults")
    write_demo_data(DemoConfig(out=root / "demo", train=24, valid=8, test=6, image_size=128))
    splits = {s: root / "demo" / f"{s}.txt" for s in ("train", "valid", "test")}
    run_detect(DetectConfig(files=list(splits.values()), out=root / "detections.h5", imgsz=160, grounding=None,
                            progress=False), log=lambda _: None)
    extract_features(ExtractConfig(files=list(splits.values()), detections=root / "detections.h5",
                                   out=root / "features.h5", num_workers=0, device="cpu", progress=False))
    bert = save_tiny_bert(root / "bert", hidden=32, layers=2, heads=2)
    return {"root": root, **splits, "detections": root / "detections.h5", "features": root / "features.h5",
            "bert": bert}
