"""Loading a post's image safely: every image ends as present, missing or unreadable, with a reason.

Nothing here raises for a bad image: a truncated file, a non-image, an empty file or a decompression
bomb is reported as ``unreadable``; grayscale, CMYK, palette and alpha images are converted to RGB.
"""
from __future__ import annotations

import contextlib
import threading
import warnings
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image, ImageFile, UnidentifiedImageError

# Images larger than this many pixels are refused as possible decompression bombs (PIL's own default).
MAX_PIXELS = 89_478_485


class ImageStatus(IntEnum):
    """Stored as uint8 in the cache files; names are in the files' attributes."""

    PRESENT = 0
    MISSING = 1
    UNREADABLE = 2

    @property
    def label(self) -> str:
        return self.name.lower()


STATUS_NAMES = [status.label for status in ImageStatus]


def count_statuses(status: Sequence[int]) -> dict[str, int]:
    """How many images have each status, by name (every name present, 0 when none)."""
    codes = list(status)
    return {member.label: codes.count(int(member)) for member in ImageStatus}


@dataclass
class LoadedImage:
    status: ImageStatus
    reason: str = ""
    image: Image.Image | None = None  # RGB, only when present

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size if self.image is not None else (0, 0)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB version of any PIL image; transparent parts are laid on white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


# load_image may run in several threads at once (the extract stage decodes a batch on a thread pool), but PIL's
# truncation flag and Python's warning filters are process-global: the flag is held False while any load runs
# (the caller's value is given back after the last one), and opening (header only, cheap) is serialised so
# that the warning filters of one call are not restored under another.
_state_lock = threading.Lock()
_open_lock = threading.Lock()
_loads_running = 0
_truncated_before = False


@contextlib.contextmanager
def _refuse_truncated_images() -> Iterator[None]:
    global _loads_running, _truncated_before
    with _state_lock:
        if _loads_running == 0:
            _truncated_before = ImageFile.LOAD_TRUNCATED_IMAGES
        _loads_running += 1
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        with _state_lock:
            _loads_running -= 1
            if _loads_running == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _truncated_before


def _open(path: Path) -> Image.Image:
    """``Image.open`` with a decompression-bomb warning raised as an error."""
    with _open_lock, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


def load_image(path: Path | None, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Open, fully decode and convert an image to RGB, or say why not (safe to call from several threads)."""
    if path is None:
        return LoadedImage(ImageStatus.MISSING, "no image path")
    path = Path(path)
    if not path.exists():
        return LoadedImage(ImageStatus.MISSING, "file not found")
    if not path.is_file():
        return LoadedImage(ImageStatus.UNREADABLE, "not a regular file")
    if path.stat().st_size == 0:
        return LoadedImage(ImageStatus.UNREADABLE, "empty file (0 bytes)")
    try:
        with _refuse_truncated_images(), _open(path) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                return LoadedImage(ImageStatus.UNREADABLE,
                                   f"decompression bomb: {width}x{height} pixels exceeds {max_pixels}")
            opened.load()
            # Leaving the with block closes the file but keeps the decoded pixels (Pillow >= 7): an RGB image
            # is returned as decoded, without a copy; other modes are converted (a new image).
            image = to_rgb(opened)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return LoadedImage(ImageStatus.UNREADABLE, f"decompression bomb: {err}")
    except UnidentifiedImageError:
        return LoadedImage(ImageStatus.UNREADABLE, "not an image file")
    except ImportError:
        # ultralytics wraps Image.open and, on an unknown format, tries to import a HEIF plugin
        return LoadedImage(ImageStatus.UNREADABLE, "not an image file (no decoder for its format)")
    except (OSError, SyntaxError, ValueError) as err:
        return LoadedImage(ImageStatus.UNREADABLE, f"cannot decode: {err}")
    if image.width == 0 or image.height == 0:
        return LoadedImage(ImageStatus.UNREADABLE, "image has zero width or height")
    return LoadedImage(ImageStatus.PRESENT, "", image)
