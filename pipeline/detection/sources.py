"""Which detection sources run: ``load_sources`` turns the detector and grounding specs into loaded wrappers
(``UltralyticsDetector`` / ``GroundingDetector`` from ``detectors.py``, ``TorchvisionDetector`` from
``torchvision_detector.py``, ``OpenCVSSDDetector`` from ``opencv_detector.py``) and refuses a configured one that
cannot run here, naming why; ``detector_source`` builds the generic detector from its spec, for detect and for predict."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import DghcError
from .detectors import (
    DETECTOR,
    GROUNDING,
    TORCHVISION_PREFIX,
    GroundingDetector,
    PredictSettings,
    SourceUnavailable,
    TextEncoder,
    UltralyticsDetector,
    resolve_weights,
)
from .opencv_detector import COCO_SSD, OpenCVSSDDetector
from .torchvision_detector import TorchvisionDetector


@dataclass
class LoadedSources:
    """The sources that run, and for the file's attributes which ran and which were turned off."""

    sources: list[Any] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def detector_source(spec: str, settings: PredictSettings) -> Any:
    """The generic detector a spec names: ``torchvision:MODEL[:WEIGHTS]``, ``ssd-mobilenet-v2-coco`` (OpenCV) or
    ultralytics weights (a file, a name, a yaml); ``SourceUnavailable`` when it cannot run here. Used by detect and by predict."""
    if spec.strip().startswith(TORCHVISION_PREFIX):
        return TorchvisionDetector(spec, settings)
    if spec.strip() == COCO_SSD:
        return OpenCVSSDDetector(settings)
    return UltralyticsDetector(resolve_weights(spec), settings)


def load_sources(detector: str | None, grounding: str | None, settings: PredictSettings,
                 text_encoder: TextEncoder | None = None) -> LoadedSources:
    """Load the generic detector and the grounding detector.

    ``detector`` / ``grounding``: weights, or None / "none" to leave the source out. A source that is configured
    but cannot run here is an error, not a skip: regions computed without it would be cached as if it had run.
    """
    loaded = LoadedSources()
    for role, spec in ((DETECTOR, detector), (GROUNDING, grounding)):
        if spec is None or str(spec).strip().lower() in ("", "none"):
            loaded.report[role] = {"ran": False, "weights": None, "reason": "turned off (none)"}
            continue
        try:
            if role == DETECTOR:
                source: Any = detector_source(str(spec), settings)
            else:
                source = GroundingDetector(resolve_weights(str(spec)), settings, encoder=text_encoder)
        except SourceUnavailable as err:
            raise DghcError(f"detect: the {role} source {spec!r} cannot run here: {err}. Make it available, or "
                            f"leave it out ({role}: none in params.yaml, --{role} none)") from None
        loaded.sources.append(source)
        loaded.report[role] = {"ran": True, **source.describe()}
    return loaded
