"""The paper's detector: a Faster R-CNN from torchvision, as a generic detection source.

``detector`` names it ``torchvision:MODEL[:WEIGHTS]``, MODEL a torchvision detection builder
(``fasterrcnn_resnet50_fpn_v2``, ``fasterrcnn_resnet50_fpn``, ``retinanet_resnet50_fpn``...), and WEIGHTS:

- absent: torchvision's default COCO weights, from its cache (``TORCH_HOME``); downloaded only when downloads
  are allowed (as for the ultralytics sources);
- a file: a state dict saved with ``torch.save(model.state_dict(), path)``;
- ``untrained``: random weights (seeded), for tests and dry runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifacts.fingerprint import sha256_file, sha256_json
from ..core.errors import first_line
from ..core.seeding import seeded
from .detectors import (
    DETECTOR,
    TORCHVISION_PREFIX,
    PredictSettings,
    ResolvedWeights,
    SourceUnavailable,
    downloads_allowed,
)
from .merge import SourceBoxes

PREFIX = TORCHVISION_PREFIX
UNTRAINED = "untrained"


def _builder_and_weights(model_name: str) -> tuple[Any, Any]:
    from torchvision.models import detection, get_model_builder, get_model_weights, list_models

    if model_name not in list_models(module=detection):
        raise SourceUnavailable(f"{model_name!r} is not a torchvision detection model (one of "
                                f"{', '.join(sorted(list_models(module=detection)))})")
    return get_model_builder(model_name), get_model_weights(model_name).DEFAULT


class TorchvisionDetector:
    """A torchvision detection model: one forward per batch of images, boxes in the images' own pixels."""

    source = DETECTOR

    def __init__(self, spec: str, settings: PredictSettings) -> None:
        import torch

        model_name, _, weights_spec = str(spec).strip()[len(PREFIX):].partition(":")
        builder, default_weights = _builder_and_weights(model_name)
        self.class_names: list[str] = list(default_weights.meta["categories"])
        self.settings = settings
        # the shorter side scaled to imgsz and the longer one capped at it: the whole image in an imgsz square
        sizes = {"min_size": settings.imgsz, "max_size": settings.imgsz, "box_score_thresh": settings.conf,
                 "box_nms_thresh": settings.iou, "box_detections_per_img": settings.max_det}
        if weights_spec == UNTRAINED:
            with seeded(0):
                model = builder(weights=None, weights_backbone=None, num_classes=len(self.class_names), **sizes)
            digest = sha256_json({"torchvision": model_name, "seed": 0})
            self.weights = ResolvedWeights(spec, f"{PREFIX}{model_name}:{UNTRAINED}", None, digest, untrained=True)
        elif weights_spec:
            path = Path(weights_spec).expanduser()
            if not path.is_file():
                raise SourceUnavailable(f"weights file {weights_spec!r} not found")
            model = builder(weights=None, weights_backbone=None, num_classes=len(self.class_names), **sizes)
            try:
                model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            except (RuntimeError, OSError, ValueError, KeyError) as err:
                raise SourceUnavailable(f"cannot load {path.name!r} into {model_name}: {first_line(err)[:200]}") from None
            self.weights = ResolvedWeights(spec, f"{PREFIX}{model_name}:{path.name}", path, sha256_file(path))
        else:
            cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(default_weights.url).name
            if not cached.is_file() and not downloads_allowed():
                raise SourceUnavailable(f"the COCO weights of {model_name} are not in torch's cache ({cached.name}) "
                                        "and downloads are off; give a weights file (torchvision:MODEL:FILE)")
            try:
                model = builder(weights=default_weights, **sizes)
            except Exception as err:  # network and file errors come in many types
                raise SourceUnavailable(f"the weights of {model_name} could not be had: {err}") from None
            self.weights = ResolvedWeights(spec, f"{PREFIX}{model_name}", cached, sha256_file(cached))
        self.model = model.eval().to(settings.device)

    def detect(self, images: list[Any], phrases: Sequence[Sequence[str]] | None = None) -> list[SourceBoxes]:
        import torch
        from torchvision.transforms.functional import pil_to_tensor

        if not images:
            return []
        tensors = [pil_to_tensor(image.convert("RGB")).float().div(255).to(self.settings.device) for image in images]
        with torch.inference_mode():
            outputs = self.model(tensors)
        results = []
        for output in outputs:
            keep = output["scores"] >= self.settings.conf
            if not bool(keep.any()):
                results.append(SourceBoxes.empty(self.source))
                continue
            boxes = output["boxes"][keep].cpu().numpy().astype(np.float32)
            scores = output["scores"][keep].cpu().numpy().astype(np.float32)
            labels = output["labels"][keep].cpu().numpy().astype(np.int64)
            results.append(SourceBoxes(self.source, boxes, scores, [self.class_names[int(c)] for c in labels]))
        return results

    def describe(self) -> dict[str, Any]:
        return {**self.weights.record(), "classes": self.class_names}
