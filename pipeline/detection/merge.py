"""Merging the boxes of several sources: class-agnostic NMS, rank by score, keep the top m.

Pure numpy so that the result is exact and the same on every machine. Boxes are never invented: fewer
than m boxes leave the remaining slots empty (``valid`` False, zeros, "").
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SourceBoxes:
    """What one source found in one image: boxes x1, y1, x2, y2 in pixels of the original image."""

    source: str
    boxes: np.ndarray  # (k, 4) float32
    scores: np.ndarray  # (k,) float32
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if not (len(self.boxes) == len(self.scores) == len(self.class_names)):
            raise ValueError(f"source {self.source!r}: {len(self.boxes)} boxes, {len(self.scores)} scores, "
                             f"{len(self.class_names)} class names")

    @classmethod
    def empty(cls, source: str) -> "SourceBoxes":
        return cls(source, np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), [])


@dataclass
class TopRegions:
    """The kept regions of one image, always m slots."""

    boxes: np.ndarray  # (m, 4) float32, zeros in empty slots
    scores: np.ndarray  # (m,) float32, 0 in empty slots
    valid: np.ndarray  # (m,) bool
    class_names: list[str]  # "" in empty slots
    sources: list[str]  # "" in empty slots

    @classmethod
    def empty(cls, m: int) -> "TopRegions":
        return cls(np.zeros((m, 4), np.float32), np.zeros((m,), np.float32), np.zeros((m,), bool),
                   [""] * m, [""] * m)

    @property
    def count(self) -> int:
        return int(self.valid.sum())


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with each of ``others`` (k, 4)."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None) -> np.ndarray:
    """Indices kept by greedy class-agnostic NMS, best score first.

    Ties in score keep input order (stable sort), so the result does not depend on the sort algorithm.
    A box is suppressed when its IoU with a kept box is above ``iou_threshold``.
    """
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    kept: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    for rank, index in enumerate(order):
        if suppressed[rank]:
            continue
        kept.append(int(index))
        if limit is not None and len(kept) >= limit:
            break
        rest = order[rank + 1:]
        if len(rest):
            suppressed[rank + 1:] |= box_iou(boxes[index], boxes[rest]) > iou_threshold
    return np.asarray(kept, dtype=np.int64)


def clean_boxes(part: SourceBoxes, width: int, height: int) -> SourceBoxes:
    """Clip boxes to the image and drop those that are empty or not finite (nothing is made up)."""
    boxes = part.boxes.copy()
    if len(boxes):
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(part.scores)
    keep = finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    names = [name for name, k in zip(part.class_names, keep) if k]
    return SourceBoxes(part.source, boxes[keep], part.scores[keep], names)


def merge_top_m(parts: list[SourceBoxes], m: int, iou_threshold: float,
                image_size: tuple[int, int] | None = None) -> TopRegions:
    """Merge the sources' boxes by class-agnostic NMS and keep the m best by score.

    Sources are concatenated in the order given, which breaks exact score ties (the first source wins).
    ``image_size`` (width, height) clips boxes to the image first.
    """
    if image_size is not None:
        parts = [clean_boxes(part, *image_size) for part in parts]
    boxes = np.concatenate([p.boxes for p in parts]) if parts else np.zeros((0, 4), np.float32)
    scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros((0,), np.float32)
    names = [name for p in parts for name in p.class_names]
    sources = [p.source for p in parts for _ in p.class_names]
    result = TopRegions.empty(m)
    if len(boxes) == 0 or m == 0:
        return result
    kept = nms(boxes, scores, iou_threshold, limit=m)
    for slot, index in enumerate(kept):
        result.boxes[slot] = boxes[index]
        result.scores[slot] = scores[index]
        result.valid[slot] = True
        result.class_names[slot] = names[index]
        result.sources[slot] = sources[index]
    return result
