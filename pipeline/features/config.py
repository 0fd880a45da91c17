"""The extract stage's parameters (params.yaml section ``extract``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from ..core.errors import DghcError
from ..core.params import (
    address_param,
    check_params,
    device_param,
    engine_param,
    param,
    shard_size_param,
    workers_param,
)

UNTRAINED_NAME = "untrained-clip-small"  # the offline default: a small CLIP with random weights from a fixed seed
UNTRAINED_SEED = 0


@dataclass
class ExtractConfig:
    """Parameters of ``dghc extract``."""

    SECTION: ClassVar[str] = "extract"
    # parameters a params file's data section gives (stages/options.py); this section and options win
    FROM_DATA: ClassVar[dict[str, str | tuple[str, ...]]] = {"files": ("train", "dev", "test"), "images": "images"}

    files: list[Path] = param(default_factory=list, help="CoNLL files whose posts' images to encode (their image "
                              "ids are the rows of the output).", argument=True, metavar="FILES...")
    data: list[Path] = param(default_factory=list, help="A CoNLL file whose posts' images to encode (repeatable; "
                             "same as giving FILES).")
    images: Path | None = param(None, help="Folder of <IMGID>.jpg images (default: images/ beside each CoNLL "
                                           "file).")
    detections: Path = param(Path("cache/detections.h5"), help="The detect stage's file (boxes of the regions to "
                                                               "crop).")
    out: Path = param(Path("cache/features.h5"), help="HDF5 file to write.")
    model: str = param(UNTRAINED_NAME, help="CLIP vision model: hub name (openai/clip-vit-base-patch32), a local "
                       f"folder, or {UNTRAINED_NAME} (UNTRAINED: random weights, the only one available offline).")
    output: Literal["pooled", "projected"] = param("projected", help="Cache the pooled CLS vector (hidden size) or "
                                                   "its projection (projection size).")
    dtype: Literal["float16", "float32"] = param("float16", help="Stored precision of the vectors.")
    batch_size: int = param(32, help="Images per batch (each with its region crops).", minimum=1)
    num_workers: int | None = param(None, help="Processes that decode and preprocess images; 0: the main process, "
                                    "on a pool of threads between two forwards. Default: 0 on the CPU (workers "
                                    "would compete with the forward for the cores), up to 4 with a GPU.",
                                    minimum=0)
    crop_padding: float = param(0.0, help="Context added around each box, as a fraction of its width and height "
                                          "on each side.", minimum=0.0)
    min_crop_size: int = param(2, help="Boxes narrower or lower than this many pixels (after clamping) leave their "
                                       "slot empty.", minimum=1)
    max_aspect: float = param(4.0, help="Images and crops longer than this (long side / short side) are "
                                        "center-trimmed to it before resizing.", minimum=1.0)
    device: str = device_param()
    seed: int = param(UNTRAINED_SEED, help=f"Seed of the weights of {UNTRAINED_NAME} (or of a model folder "
                                           "without weights).")
    force: bool = param(False, help="Recompute even when the output is up to date.", in_params=False)
    no_restart: bool = param(False, help="Refuse to start over when an unfinished run's files cannot be resumed "
                             "(damaged, or made with other settings) instead of replacing them.")
    progress: bool = param(True, help="Show a progress bar.", option="--progress/--quiet")
    engine: Literal["local", "ray"] = engine_param()
    address: str | None = address_param()
    workers: int = workers_param()
    shard_size: int = shard_size_param()

    def __post_init__(self) -> None:
        check_params(self)

    @property
    def inputs(self) -> list[Path]:
        """The CoNLL files to read: FILES, then --data."""
        files = [*self.files, *self.data]
        if not files:
            raise DghcError("no CoNLL files given (pass them as arguments or with --data)")
        return files
