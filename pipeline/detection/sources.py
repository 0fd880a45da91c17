"""Which detection sources run: ``load_sources`` turns the detector and grounding specs into loaded wrappers
(``UltralyticsDetector`` / ``GroundingDetector`` from ``detectors.py``, ``TorchvisionDetector`` from
``torchvision_detector.py``), skipping an unavailable one with its reason for the file's attributes;
``detector_source`` builds the generic detector from its spec, for detect and for predict."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.detection.detectors import (
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
from pipeline.detection.torchvision_detector import TorchvisionDetector

_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/(?:[^\s'\"()/]+/)+([^\s'\"()/]*)")


def strip_paths(text: str) -> str:
    """``text`` with absolute paths cut to their last part: the file's attributes must not depend on folders."""
    return _ABSOLUTE_PATH.sub(r"\1", text)


@dataclass
class LoadedSources:
    """The sources that run, and for the file's attributes which ran and which were skipped and why."""

    sources: list[Any] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


def detector_source(spec: str, settings: PredictSettings) -> Any:
    """The generic detector a spec names: ``torchvision:MODEL[:WEIGHTS]`` or ultralytics weights (a file, a name, a
    yaml); ``SourceUnavailable`` when it cannot run here. Used by detect and by predict."""
    if spec.strip().startswith(TORCHVISION_PREFIX):
        return TorchvisionDetector(spec, settings)
    return UltralyticsDetector(resolve_weights(spec), settings)


def load_sources(detector: str | None, grounding: str | None, settings: PredictSettings,
                 text_encoder: TextEncoder | None = None) -> LoadedSources:
    """Load the generic detector and the grounding detector; an unavailable one is skipped with a message.

    ``detector`` / ``grounding``: weights, or None / "none" to leave the source out.
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
            # The file name only: attributes hold no absolute paths (the bytes must not depend on the folder).
            loaded.report[role] = {"ran": False, "weights": Path(str(spec)).name, "reason": strip_paths(str(err))}
            loaded.messages.append(f"{role} source skipped: {err}")
            continue
        loaded.sources.append(source)
        loaded.report[role] = {"ran": True, **source.describe()}
    return loaded
