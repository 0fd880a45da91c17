"""The paper's detector, a torchvision Faster R-CNN, as the generic source: the same stage, file and statuses as
the ultralytics detectors. Offline, with random weights built by torchvision (weights=None), or a weights file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dghc.cli import dghc
from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.detection.detectors import DETECTOR, PredictSettings
from dghc.pipeline.detection.store import load_detections
from dghc.pipeline.detection.torchvision_detector import TorchvisionDetector
from dghc.pipeline.prediction.visual import build_source
from tests.test_detect_run import real_images, write_conll

MODEL = "fasterrcnn_resnet50_fpn_v2"


@pytest.fixture
def posts(tmp_path):
    ids = real_images(tmp_path / "images")
    (tmp_path / "images" / "broken.jpg").write_text("not an image\n")
    conll = write_conll(tmp_path / "t.txt", [(i, "Barack Obama in the bus") for i in ids]
                        + [("broken", "x"), ("no_image", "Nothing here")])
    return conll, ids


def detect(conll, out, detector: str, *extra: str):
    return CliRunner().invoke(dghc, ["detect", str(conll), "--out", str(out), "--detector", detector, "--grounding",
                                     "none", "--imgsz", "160", "--conf", "0.0", "--no-progress", *extra])


@pytest.mark.slow
def test_untrained_faster_rcnn_runs_through_the_stage(posts, tmp_path):
    conll, ids = posts
    result = detect(conll, tmp_path / "d.h5", f"torchvision:{MODEL}:untrained")
    assert result.exit_code == 0, result.output
    assert f"{len(ids) + 2} images: {len(ids)} present, 1 missing, 1 unreadable" in result.output
    det = load_detections(tmp_path / "d.h5")
    assert det.fingerprint["detector"]["weights"] == f"torchvision:{MODEL}:untrained"
    assert det.sources_run["detector"]["ran"] is True and "person" in det.sources_run["detector"]["classes"]
    for image_id in ids:  # random weights at confidence 0 still give the top 3 boxes, inside the image
        regions = det.regions(image_id)
        assert len(regions) == 3 and all(r.source == "detector" for r in regions)
        width, height = det.image_size[det.index[image_id]]
        assert all(0 <= r.box[0] < r.box[2] <= width and 0 <= r.box[1] < r.box[3] <= height for r in regions)
    for image_id in ("broken", "no_image"):
        assert not det.valid[det.index[image_id]].any()
    again = detect(conll, tmp_path / "again.h5", f"torchvision:{MODEL}:untrained", "--force")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "d.h5").read_bytes() == (tmp_path / "again.h5").read_bytes()  # seeded: the same bytes


@pytest.mark.slow
def test_a_weights_file_is_loaded_and_named(posts, tmp_path):
    from torchvision.models import get_model

    conll, _ = posts
    torch.manual_seed(5)
    model = get_model(MODEL, weights=None, weights_backbone=None, num_classes=91)
    torch.save(model.state_dict(), tmp_path / "mine.pth")
    result = detect(conll, tmp_path / "d.h5", f"torchvision:{MODEL}:{tmp_path / 'mine.pth'}")
    assert result.exit_code == 0, result.output
    det = load_detections(tmp_path / "d.h5")
    assert det.fingerprint["detector"]["weights"] == f"torchvision:{MODEL}:mine.pth"
    assert "/" not in json.dumps(det.fingerprint["detector"]["weights"]).replace(f"torchvision:{MODEL}:", "")
    untrained = detect(conll, tmp_path / "u.h5", f"torchvision:{MODEL}:untrained")
    assert untrained.exit_code == 0
    assert not np.allclose(det.boxes, load_detections(tmp_path / "u.h5").boxes)  # other weights, other boxes

    # predict rebuilds the detector a model records (it once read torchvision names as ultralytics weights)
    settings = PredictSettings(imgsz=160, conf=0.0)
    recorded = det.fingerprint["detector"]
    rebuilt = build_source(DETECTOR, recorded, settings, str(tmp_path / "mine.pth"), tmp_path)
    assert isinstance(rebuilt, TorchvisionDetector) and rebuilt.weights.sha256 == recorded["sha256"]
    with pytest.raises(DghcError, match="--detector-weights"):  # the file is recorded by its name only
        build_source(DETECTOR, recorded, settings, None, tmp_path)
    assert build_source(DETECTOR, load_detections(tmp_path / "u.h5").fingerprint["detector"], settings, None,
                        tmp_path).weights.untrained


@pytest.mark.parametrize("spec,phrase", [
    (f"torchvision:{MODEL}", "not in torch's cache"),
    ("torchvision:resnet50", "is not a torchvision detection model"),
    (f"torchvision:{MODEL}:nowhere.pth", "weights file 'nowhere.pth' not found"),
])
def test_unavailable_weights_are_one_clear_reason(posts, tmp_path, monkeypatch, spec, phrase):
    conll, _ = posts
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty cache
    result = detect(conll, tmp_path / "d.h5", spec)
    assert result.exit_code == 1
    assert f"the detector source '{spec}' cannot run here" in result.output and phrase in result.output, result.output
    assert "Traceback" not in result.output
