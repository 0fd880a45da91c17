"""The report command's parameters (params.yaml section ``report``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from ..core.params import check_params, device_param, keep_other_param, param, tagging_precision_param

DEFAULT_DETECTIONS = Path("cache/detections.h5")


@dataclass
class ReportConfig:
    """Parameters of ``dghc report``."""

    SECTION: ClassVar[str] = "report"

    model: Path = param(help="Model folder written by `dghc train`.", argument=True, metavar="MODEL_DIR")
    data: Path = param(help="CoNLL file whose posts to tag and show.", argument=True, metavar="DATA_FILE")
    out: Path = param(help="Folder for the page: OUT/index.html (one self-contained file).")
    features: Path | None = param(Path("cache/features.h5"), help="Features file covering DATA's images (needed by "
                                  "models that use the image).")
    detections: Path | None = param(None, help=f"Detections file for the region boxes (default: "
                                    f"{DEFAULT_DETECTIONS} if it exists). Posts absent from it are shown without "
                                    "regions.")
    images: Path | None = param(None, help="Folder of <id>.jpg (default: images/ beside DATA).")
    samples: int = param(40, help="Posts to show (helped/hurt ones first).", minimum=1)
    seed: int = param(0, help="Seed of the sample of the other posts.")
    batch_size: int = param(32, help="Posts per batch.", minimum=1)
    keep_other: bool = keep_other_param()
    device: str = device_param()
    precision: Literal["no", "fp16", "bf16"] = tagging_precision_param()
    progress: bool = param(True, help="Show a progress bar.")

    def __post_init__(self) -> None:
        check_params(self)
