"""The demo set's parameters (params.yaml section ``demo_data``): the same settings give the same bytes."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..core.params import check_params, param

SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class DemoConfig:
    """Parameters of ``dghc demo-data``; every field but ``out`` shapes the data (and is in demo.json)."""

    SECTION: ClassVar[str] = "demo_data"

    out: Path = param(Path("data/demo"), help="Folder to write the set to.", argument=True, metavar="[OUT]")
    seed: int = param(13, help="Random seed: the same seed gives the same bytes.")
    train: int = param(400, help="Posts in train.txt.", minimum=1)
    valid: int = param(100, help="Posts in valid.txt.", minimum=1)
    test: int = param(100, help="Posts in test.txt.", minimum=1)
    image_size: int = param(224, help="Width and height of the images in pixels.", minimum=8)
    jpeg_quality: int = param(90, help="JPEG quality of the images.", minimum=1, maximum=100)
    no_image_rate: float = param(0.15, help="Share of posts without an image file.", minimum=0.0, maximum=1.0)
    ambiguous_rate: float = param(0.4, help="Of posts with an image: share with an ambiguous name in a neutral "
                                            "context (only the image tells its type).", minimum=0.0, maximum=1.0)
    ambiguous_in_typed_rate: float = param(0.2, help="Share of typed slots filled with an ambiguous name (the text "
                                                     "tells its type).", minimum=0.0, maximum=1.0)

    def __post_init__(self) -> None:
        check_params(self)

    def sizes(self) -> dict[str, int]:
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def settings(self) -> dict[str, Any]:
        """What shapes the data (the output folder does not)."""
        return {key: value for key, value in asdict(self).items() if key != "out"}
