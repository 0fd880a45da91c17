"""Draw the kept regions of one image with their labels, for a person to check the detections."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from pipeline.detection.store import Detections, Region
from pipeline.core.errors import DghcError
from pipeline.artifacts.atomic import write_bytes_atomically
from pipeline.data.images import ImageStatus, load_image

COLOURS = {"detector": (255, 140, 0), "grounding": (0, 190, 255)}
OTHER_COLOUR = (255, 0, 200)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def draw_regions(image: Image.Image, regions: Sequence[Region]) -> Image.Image:
    """A copy of ``image`` with each region's box and a label "slot source: class score"."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    line = max(2, round(min(canvas.size) / 200))
    font = _font(max(12, round(min(canvas.size) / 30)))
    for region in regions:
        colour = COLOURS.get(region.source, OTHER_COLOUR)
        x1, y1, x2, y2 = region.box
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        label = f"{region.slot + 1} {region.source}: {region.class_name} {region.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        width, height = right - left, bottom - top
        ty = y1 - height - 2 * line if y1 - height - 2 * line >= 0 else y1  # above the box, or inside at the top
        tx = min(max(0.0, x1), max(0.0, canvas.width - width - 2 * line))
        draw.rectangle([tx, ty, tx + width + 2 * line, ty + height + 2 * line], fill=colour)
        draw.text((tx + line - left, ty + line - top), label, fill=(0, 0, 0), font=font)
    return canvas


def show_detections(detections: Detections, image_id: str, image_path: Path, out: Path) -> list[Region]:
    """Write ``out`` (PNG) showing the kept regions of ``image_id``; returns them."""
    if image_id not in detections.index:
        raise DghcError(f"image id {image_id!r} is not in the detections file (rerun `dghc detect` with its CoNLL file)")
    row = detections.index[image_id]
    status = ImageStatus(int(detections.status[row]))
    if status != ImageStatus.PRESENT:
        raise DghcError(f"image {image_id!r} is {status.label}: {detections.reason[row]}")
    loaded = load_image(image_path)
    if loaded.image is None:
        raise DghcError(f"{image_path}: {loaded.status.label}: {loaded.reason}")
    if tuple(loaded.image.size) != tuple(int(v) for v in detections.image_size[row]):
        raise DghcError(f"{image_path}: the image is {loaded.image.size[0]}x{loaded.image.size[1]} but the detections "
                        f"were made on {detections.image_size[row][0]}x{detections.image_size[row][1]}; rerun `dghc detect`")
    regions = detections.regions(image_id)
    buffer = io.BytesIO()
    draw_regions(loaded.image, regions).save(buffer, format="PNG")
    write_bytes_atomically(out, buffer.getvalue())
    return regions
