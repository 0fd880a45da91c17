"""What made a features file, as a flat JSON object, and how to compare it with what a user asks for.

The fingerprint's keys (all at the top level, so that ``FeatureStore.require`` can name each one):
``format``, ``model`` (hub name, folder as given, or ``untrained-clip-small``), ``weights_sha256``,
``untrained`` (bool), ``seed`` (of an untrained model, else null), ``output`` (``pooled``|``projected``),
``dtype`` (``float16``|``float32``), ``dim``, ``image_size``, ``preprocess`` (the image processor's class and
settings, ``implementation``: which code applied them, see ``dghc.pipeline.features.preprocess``, plus
``max_aspect``), ``crop_padding``, ``min_crop_size``, ``m`` and ``detections_fingerprint_sha256``.

Format 2 added ``preprocess.implementation`` (format 1 files were made by the image processor on PIL crops):
a file of the other format never matches, and ``FeatureStore.require`` names ``format`` and ``preprocess``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from ..artifacts import fingerprint as fingerprints

FORMAT = "dghc-features/2"
DTYPES: tuple[str, ...] = ("float16", "float32")


def build_fingerprint(model_identity: Mapping[str, Any], *, dtype: str, crop_padding: float, min_crop_size: int,
                      max_aspect: float, m: int, detections_fingerprint_sha256: str) -> dict[str, Any]:
    """The fingerprint of a features file, from ``ClipEncoder.identity()`` and the extraction settings."""
    fingerprint: dict[str, Any] = {"format": FORMAT}
    fingerprint.update(model_identity)
    fingerprint["preprocess"] = {**model_identity["preprocess"], "max_aspect": float(max_aspect)}
    fingerprint.update({"dtype": dtype, "crop_padding": float(crop_padding), "min_crop_size": int(min_crop_size),
                        "m": int(m), "detections_fingerprint_sha256": detections_fingerprint_sha256})
    return fingerprints.normalise(fingerprint)


def require_match(expected: Mapping[str, Any], found: Mapping[str, Any], path: str | Path) -> None:
    """Raise ``FingerprintMismatch`` naming every key of ``expected`` that the file's fingerprint does not match."""
    fingerprints.require_match(expected, found, path, "rerun `dghc extract` with these settings, or use the "
                                                      "settings the file was made with")
