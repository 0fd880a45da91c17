"""Small inputs for the extract stage's tests and benchmark: a tiny CLIP folder, images, a detections file."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

TINY_IMAGE_SIZE = 32


def tiny_clip_config(image_size: int = TINY_IMAGE_SIZE):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(image_size=image_size, patch_size=16, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=2, projection_dim=24)


def save_tiny_clip(folder: Path, seed: int = 0, projection: bool = True, config=None,
                   weights: bool = True) -> Path:
    """A randomly initialised CLIP vision model saved like a hub model (config + safetensors + processor)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

    from dghc.pipeline.features.clip_encoder import standard_processor

    config = config or tiny_clip_config()
    folder = Path(folder)
    if weights:
        torch.manual_seed(seed)
        model = (CLIPVisionModelWithProjection if projection else CLIPVisionModel)(config)
        model.save_pretrained(folder)
    else:
        CLIPVisionConfig(**config.to_dict()).save_pretrained(folder)
    standard_processor(config.image_size).save_pretrained(folder)
    return folder


def write_conll(path: Path, ids: Sequence[str]) -> Path:
    """A CoNLL file with one two-token post per id."""
    blocks = [f"IMGID:{image_id}\nPost\tO\n{image_id}\tB-PER" for image_id in ids]
    Path(path).write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return Path(path)


def make_image(path: Path, width: int, height: int, seed: int, mode: str = "RGB") -> Path:
    """A JPEG of coloured blocks (not noise, so that crops differ from each other)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(height // 16, 1), max(width // 16, 1), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.NEAREST)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path, format="JPEG" if mode in ("RGB", "L", "CMYK") else "PNG", quality=90)
    return Path(path)


@dataclass
class DetectionRow:
    status: int = 0  # ImageStatus
    size: tuple[int, int] = (0, 0)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # valid slots first


def write_detections(path: Path, rows: dict[str, DetectionRow], m: int = 3, settings: dict | None = None) -> str:
    """A detections.h5 written by the detect stage's writer from hand-made rows; returns its fingerprint_sha256."""
    from dghc.pipeline.detection.store import empty_arrays, read_fingerprint_sha256
    from dghc.pipeline.detection.store import write_detections as write_file

    ids = sorted(rows)
    arrays = empty_arrays(ids, m)
    for i, image_id in enumerate(ids):
        row = rows[image_id]
        arrays["status"][i] = row.status
        arrays["reason"][i] = "" if row.status == 0 else "hand-made"
        arrays["image_size"][i] = row.size
        for slot, box in enumerate(row.boxes[:m]):
            arrays["boxes"][i, slot] = box
            arrays["valid"][i, slot] = True
            arrays["scores"][i, slot] = 0.9 - 0.1 * slot
            arrays["class_names"][i, slot] = "person"
            arrays["sources"][i, slot] = "detector"
    write_file(path, arrays, m, {"detector": "hand-made", "m": m, **(settings or {})}, {"detector": "hand-made"})
    return read_fingerprint_sha256(path)
