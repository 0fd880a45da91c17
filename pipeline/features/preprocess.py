"""CLIP pixel tensors of a decoded image and of its region crops: one decode, cheap work per crop.

Two implementations, chosen from the model's image processor by ``make_preprocessor``:

- ``FAST_IMPLEMENTATION``: for a standard CLIP processor config (shortest side resized with bicubic or bilinear
  interpolation and antialiasing, square center crop of the model's size, rescale + normalise with the
  processor's own mean/std). It runs the very torchvision ops that ``CLIPImageProcessor`` runs, on views of the
  decoded image: no PIL crop copies, no per-call processor overhead (kwargs validation, grouping, PIL -> numpy
  conversions), and the uint8 resize reads a channels-last view, which is the layout torch's antialiased uint8
  kernels want (the processor makes the tensor channels-first first: a copy, and a slower resize). Its output
  equals ``CLIPImageProcessor``'s (tests/test_extract.py holds it to 1e-5 on real photos, demo images, odd
  aspect ratios and tiny crops), so it is used only for processors of transformers' torchvision backend.
- ``PROCESSOR_IMPLEMENTATION``: any other processor: the processor itself, on PIL crops. This includes the PIL
  backend (``CLIPImageProcessorPil``), whose bicubic differs from torchvision's by up to 5 grey levels on
  heavily upsampled small crops.

Each works in two steps (``RegionPreprocessor``): ``crops`` next to the decoding, ``finish`` where the model runs.
The fast path's crops are uint8 and ``finish`` is only the cast and the normalisation, so batches travel between
processes, through Ray's object store and to the GPU at a quarter of their float32 size, with the same bits.

The features fingerprint records which one made a file (``preprocess.implementation``), so that a file made by
one does not silently count as made by the other.
"""
from __future__ import annotations

import json
import math
import warnings
from typing import Any, Protocol, Sequence

import numpy as np
import torch

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels (right/bottom exclusive)

FAST_IMPLEMENTATION = "dghc-torchvision-uint8/1"
PROCESSOR_IMPLEMENTATION = "image-processor"
# Processor classes whose standard config the fast path reproduces when they run on torchvision (transformers
# >= 5.x: CLIPImageProcessor itself; earlier: CLIPImageProcessorFast). Other classes, e.g. a model's own
# processor, go through the processor.
CLIP_PROCESSOR_CLASSES = ("CLIPImageProcessor", "CLIPImageProcessorFast")
_RESAMPLE_NAMES = {2: "bilinear", 3: "bicubic"}  # PIL resample codes the fast path supports
# The processor settings that change the pixels a model sees (recorded in the features fingerprint).
PROCESSOR_KEYS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
                  "do_normalize", "image_mean", "image_std", "do_convert_rgb")


class RegionPreprocessor(Protocol):
    """``(image, boxes) -> (len(boxes), 3, S, S)`` float32 pixels, one row per box, in order, in two steps:
    ``crops`` beside the decoding (on the CPU) and ``finish`` where the model runs (``finish(crops(...))`` is
    ``__call__``). The fast path's crops are uint8, a quarter of the float32 pixels, so that is what travels
    between processes and to the GPU (``CropDataset`` makes crops, ``ClipEncoder.encode`` finishes them)."""

    implementation: str
    crop_dtype: torch.dtype  # of ``crops``: uint8 (fast path), or float32 when ``crops`` gives finished pixels

    def crops(self, image: Any, boxes: Sequence[Box]) -> torch.Tensor: ...

    def finish(self, crops: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, image: Any, boxes: Sequence[Box]) -> torch.Tensor: ...


def aspect_box(box: Box, max_aspect: float) -> Box:
    """The middle of ``box`` trimmed to at most ``max_aspect`` (long side / short side).

    Resizing the short side of a 2x1200 crop to 224 would otherwise blow up its long side (224x134400); the
    center crop that follows keeps only the middle anyway.
    """
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    if width > height * max_aspect:
        keep = math.ceil(height * max_aspect)
        left += (width - keep) // 2
        return left, top, left + keep, bottom
    if height > width * max_aspect:
        keep = math.ceil(width * max_aspect)
        top += (height - keep) // 2
        return left, top, right, top + keep
    return left, top, right, bottom


def processor_settings(processor: Any) -> dict[str, Any]:
    """The processor's pixel-changing settings as plain JSON values."""
    raw = json.loads(processor.to_json_string())
    settings: dict[str, Any] = {"class": type(processor).__name__}
    for key in PROCESSOR_KEYS:
        value = raw.get(key)
        if isinstance(value, dict):
            value = {k: v for k, v in sorted(value.items()) if v is not None}
        settings[key] = value
    return settings



def fast_path_problem(processor: Any) -> str | None:
    """Why the fast path cannot stand in for ``processor`` (None: it can)."""
    name = type(processor).__name__
    if name not in CLIP_PROCESSOR_CLASSES:
        return f"processor class {name} is not one of {', '.join(CLIP_PROCESSOR_CLASSES)}"
    if getattr(processor, "backend", None) != "torchvision" and not name.endswith("Fast"):
        return f"{name} does not run on torchvision (backend {getattr(processor, 'backend', None)!r})"
    settings = processor_settings(processor)
    size, crop = settings.get("size") or {}, settings.get("crop_size") or {}
    if not settings.get("do_resize") or set(size) != {"shortest_edge"}:
        return f"resize settings {size} (the fast path resizes the shortest edge only)"
    if settings.get("resample") not in _RESAMPLE_NAMES:
        return f"resample {settings.get('resample')} (the fast path supports bilinear and bicubic)"
    if not settings.get("do_center_crop") or set(crop) != {"height", "width"} or crop["height"] != crop["width"] \
            or crop["height"] > size["shortest_edge"]:
        return f"center crop {crop} (the fast path takes a square crop no larger than the resized short side)"
    if not settings.get("do_rescale") or not settings.get("do_normalize"):
        return "rescale or normalisation turned off"
    if len(settings.get("image_mean") or ()) != 3 or len(settings.get("image_std") or ()) != 3:
        return "mean/std are not one value per RGB channel"
    if getattr(processor, "do_pad", None):
        return "padding turned on"
    return None


def resized_size(height: int, width: int, shortest: int) -> tuple[int, int]:
    """(height, width) after resizing the short side to ``shortest``, rounded as transformers rounds it."""
    if width <= height:
        return int(shortest * height / width), shortest
    return shortest, int(shortest * width / height)


class FastClipPreprocessor:
    """``CLIPImageProcessor``'s standard pipeline on uint8 views of the decoded image (see the module doc)."""

    implementation = FAST_IMPLEMENTATION
    crop_dtype = torch.uint8

    def __init__(self, processor: Any) -> None:
        from torchvision.transforms import InterpolationMode

        problem = fast_path_problem(processor)
        if problem is not None:
            raise ValueError(f"the fast path cannot reproduce this processor: {problem}")
        settings = processor_settings(processor)
        self.shortest = int(settings["size"]["shortest_edge"])
        self.crop = int(settings["crop_size"]["height"])
        self.interpolation = (InterpolationMode.BICUBIC if settings["resample"] == 3
                              else InterpolationMode.BILINEAR)
        # Rescale and normalise fused as the processor fuses them: (x - mean / f) / (std / f), f the rescale factor.
        factor = 1.0 / float(settings["rescale_factor"])
        self.mean = (torch.tensor(settings["image_mean"], dtype=torch.float32) * factor).view(3, 1, 1)
        self.std = (torch.tensor(settings["image_std"], dtype=torch.float32) * factor).view(3, 1, 1)

    def __call__(self, image: Any, boxes: Sequence[Box]) -> torch.Tensor:
        return self.finish(self.crops(image, boxes))

    def crops(self, image: Any, boxes: Sequence[Box]) -> torch.Tensor:
        """The uint8 crops: every step whose result depends on uint8 arithmetic (the antialiased resize above
        all), so that what is left for ``finish`` is exact elementwise float32 arithmetic."""
        from torchvision.transforms.v2 import functional as tvF

        out = torch.empty(len(boxes), 3, self.crop, self.crop, dtype=torch.uint8)
        if not boxes:
            return out
        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {image.mode}")
        with warnings.catch_warnings():
            # The array is read-only (it wraps the image's bytes); nothing here writes into it.
            warnings.simplefilter("ignore", UserWarning)
            hwc = torch.from_numpy(np.asarray(image))
        chw = hwc.permute(2, 0, 1)  # a channels-last view: no copy
        for k, (left, top, right, bottom) in enumerate(boxes):
            view = chw[:, top:bottom, left:right].unsqueeze(0)
            new_h, new_w = resized_size(bottom - top, right - left, self.shortest)
            resized = tvF.resize(view, [new_h, new_w], interpolation=self.interpolation, antialias=True)
            y, x = int((new_h - self.crop) / 2.0), int((new_w - self.crop) / 2.0)
            out[k].copy_(resized[0, :, y:y + self.crop, x:x + self.crop])  # channels-first
        return out

    def finish(self, crops: torch.Tensor) -> torch.Tensor:
        """uint8 crops -> the model's float32 pixels, on the crops' device: an exact cast, then elementwise
        correctly rounded subtract and divide (IEEE), so the batching does not change a bit."""
        if crops.dtype != torch.uint8:
            raise ValueError(f"expected uint8 crops, got {crops.dtype}")
        return crops.to(torch.float32).sub_(self.mean.to(crops.device)).div_(self.std.to(crops.device))


class ProcessorPreprocessor:
    """The image processor itself, on PIL crops (any processor; slower)."""

    implementation = PROCESSOR_IMPLEMENTATION
    crop_dtype = torch.float32  # the processor gives finished pixels only

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Any, boxes: Sequence[Box]) -> torch.Tensor:
        return self.crops(image, boxes)

    def finish(self, crops: torch.Tensor) -> torch.Tensor:
        return crops

    def crops(self, image: Any, boxes: Sequence[Box]) -> torch.Tensor:
        whole = (0, 0, image.width, image.height)
        pictures = [image if tuple(box) == whole else image.crop(box) for box in boxes]
        return self.processor(images=pictures, return_tensors="pt")["pixel_values"]


def make_preprocessor(processor: Any) -> RegionPreprocessor:
    """The fast path when it reproduces ``processor``, else the processor itself."""
    if fast_path_problem(processor) is None:
        return FastClipPreprocessor(processor)
    return ProcessorPreprocessor(processor)


def as_preprocessor(processor_or_preprocessor: Any) -> RegionPreprocessor:
    """Accept an image processor or an already made preprocessor."""
    if isinstance(processor_or_preprocessor, (FastClipPreprocessor, ProcessorPreprocessor)):
        return processor_or_preprocessor
    return make_preprocessor(processor_or_preprocessor)
