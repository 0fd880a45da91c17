"""Drawing the kept regions on an image: for ``dghc detect --show`` and the report's thumbnails alike."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from ..artifacts.atomic import write_bytes_atomically
from ..core.errors import DghcError
from ..data.images import ImageStatus, load_image
from .store import Detections, Region

COLOURS = {"detector": (255, 140, 0), "grounding": (0, 190, 255)}
OTHER_COLOUR = (255, 0, 200)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError):  # Pillow < 10.1, or no FreeType: the small bitmap font
        return ImageFont.load_default()


def draw_regions(image: Image.Image, regions: Sequence[Region], *, longest_side: int | None = None,
                 max_upscale: float = 2.0, captions: bool = True) -> Image.Image:
    """A copy of ``image`` with each region's box in its source's colour and a tag with its slot number (the
    visual block r1..rm it feeds), plus "source: class score" when ``captions``.

    ``longest_side`` resizes the copy first (a thumbnail; small images are enlarged at most ``max_upscale``
    times so that boxes and tags stay readable).
    """
    canvas = image.convert("RGB").copy()
    scale = 1.0
    if longest_side is not None:
        scale = min(longest_side / max(canvas.size), max_upscale)
        if scale != 1:
            canvas = canvas.resize((max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale))),
                                   Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    line = max(2, round(min(canvas.size) / 200))
    font = _font(max(12, round(min(canvas.size) / 30)))
    for region in regions:
        colour = COLOURS.get(region.source, OTHER_COLOUR)
        x1, y1, x2, y2 = (v * scale for v in region.box)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=line)
        tag = f"{region.slot + 1}"
        if captions:
            tag += f" {region.source}: {region.class_name} {region.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        width, height = right - left, bottom - top
        ty = y1 - height - 2 * line if y1 - height - 2 * line >= 0 else y1  # above the box, or inside at the top
        tx = min(max(0.0, x1), max(0.0, canvas.width - width - 2 * line))
        draw.rectangle([tx, ty, tx + width + 2 * line, ty + height + 2 * line], fill=colour)
        draw.text((tx + line - left, ty + line - top), tag, fill=(0, 0, 0), font=font)
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
