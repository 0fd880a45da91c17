"""The CLIP vision tower that turns images and region crops into vectors.

One code path for every model: a hub name (``openai/clip-vit-base-patch32``, for users with network), a local
folder saved by ``save_pretrained``, or the offline default ``untrained-clip-small``: a small CLIP vision model
built from a fixed config with a fixed seed. No CLIP weights exist offline, so that default is UNTRAINED: its
vectors are a deterministic random projection of the pixels, not learned visual features.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from ..core.devices import resolve_device
from ..core.errors import DghcError
from ..core.quiet import quiet_transformers
from ..core.seeding import seeded
from .config import UNTRAINED_NAME, UNTRAINED_SEED, ExtractConfig
from .preprocess import RegionPreprocessor, make_preprocessor, processor_settings

if TYPE_CHECKING:
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

Output = Literal["pooled", "projected"]
OUTPUTS: tuple[str, ...] = ("pooled", "projected")

# Files that hold weights in a folder written by save_pretrained; a folder with only config.json is built untrained.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def untrained_clip_config() -> CLIPVisionConfig:
    """The config of the offline default (also used by the demo data to check that its images are separable)."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(image_size=224, patch_size=32, hidden_size=256, intermediate_size=1024,
                            num_hidden_layers=4, num_attention_heads=4, projection_dim=256)


def build_untrained_clip(seed: int = UNTRAINED_SEED, config: CLIPVisionConfig | None = None) -> CLIPVisionModelWithProjection:
    """A randomly initialised ``CLIPVisionModelWithProjection`` (default: ``untrained_clip_config()``), in eval mode.

    The same seed gives the same weights; the caller's random state is left untouched.
    """
    from transformers import CLIPVisionModelWithProjection

    config = config if config is not None else untrained_clip_config()
    with seeded(seed):
        model = CLIPVisionModelWithProjection(config)
    return model.eval()


def standard_processor(image_size: int) -> CLIPImageProcessor:
    """CLIP's standard preprocessing: shortest side to ``image_size`` (bicubic), center crop, CLIP mean/std."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state dict: each tensor's name, dtype, shape and bytes, in sorted key order."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        digest.update(key.encode("utf-8"))
        digest.update(f"|{tensor.dtype}|{tuple(tensor.shape)}|".encode("ascii"))
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # the bytes, without a copy
    return digest.hexdigest()


@dataclass
class ClipEncoder:
    """A frozen CLIP vision tower, its preprocessing and what identifies it."""

    model: Any  # CLIPVisionModelWithProjection
    processor: Any  # CLIPImageProcessor
    name: str  # hub name, folder as given, or UNTRAINED_NAME
    weights_sha256: str
    untrained: bool
    seed: int | None  # the seed of an untrained model, else None
    output: str  # "pooled" (post-layernorm CLS) or "projected" (after visual_projection)
    device: torch.device

    @property
    def dim(self) -> int:
        config = self.model.config
        return int(config.projection_dim if self.output == "projected" else config.hidden_size)

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) pixels -> (n, dim) float32 vectors on the CPU. uint8 pixels are ``preprocessor``'s crops
        (``CropDataset``'s): they go to the device as uint8 and are finished there; float32 ones are finished."""
        if pixel_values.shape[0] == 0:
            return torch.zeros(0, self.dim)
        with torch.inference_mode():
            pixels = pixel_values.to(self.device, non_blocking=True)
            if pixels.dtype == torch.uint8:
                pixels = self.preprocessor.finish(pixels)
            pooled = self.model.vision_model(pixel_values=pixels).pooler_output
            out = self.model.visual_projection(pooled) if self.output == "projected" else pooled
            return out.float().cpu()

    @functools.cached_property
    def preprocessor(self) -> RegionPreprocessor:
        """What turns an image and its crop boxes into pixels (``preprocess.make_preprocessor``: the fast path
        when it reproduces ``processor``)."""
        return make_preprocessor(self.processor)

    def identity(self) -> dict[str, Any]:
        """What the features fingerprint records about the model and its preprocessing (settings and which
        implementation applied them: two implementations may differ in the last grey level)."""
        preprocess = {**processor_settings(self.processor), "implementation": self.preprocessor.implementation}
        return {"model": self.name, "weights_sha256": self.weights_sha256, "untrained": self.untrained,
                "seed": self.seed, "output": self.output, "dim": self.dim, "image_size": self.image_size,
                "preprocess": preprocess}


def _has_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in WEIGHT_FILES)


def load_clip(model: str = ExtractConfig.model, output: str = ExtractConfig.output, device: str = ExtractConfig.device,
              seed: int = UNTRAINED_SEED) -> ClipEncoder:
    """Load a CLIP vision tower by hub name or folder, or build the untrained default.

    A folder with a config but no weights is built untrained from that config with ``seed``. A checkpoint
    without ``visual_projection`` (a bare CLIPVisionModel) works only with ``output="pooled"``: its projection
    would be random, so it is refused rather than silently invented.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if output not in OUTPUTS:
        raise DghcError(f"unknown output {output!r} (use one of: {', '.join(OUTPUTS)})")
    torch_device = resolve_device(device)
    folder = Path(model)
    untrained_seed: int | None = None
    with quiet_transformers():  # a full CLIP checkpoint's text weights are reported unexpected: expected here
        if model == UNTRAINED_NAME:
            clip = build_untrained_clip(seed)
            processor = standard_processor(clip.config.image_size)
            untrained_seed = seed
        elif folder.is_dir() and not _has_weights(folder):
            try:
                config = CLIPVisionConfig.from_pretrained(folder)
            except (OSError, ValueError) as err:
                raise DghcError(f"{folder}: not a CLIP model folder ({err})") from None
            clip = build_untrained_clip(seed, config)
            processor = _folder_processor(folder, clip.config.image_size)
            untrained_seed = seed
        else:
            if not folder.exists() and (model.startswith((".", "/", "~")) or model.count("/") > 1):
                raise DghcError(f"model folder {model!r} not found (give a folder saved by save_pretrained, "
                                f"a hub name such as openai/clip-vit-base-patch32, or {UNTRAINED_NAME})")
            try:
                clip, info = CLIPVisionModelWithProjection.from_pretrained(
                    model, dtype=torch.float32, output_loading_info=True)
            except (OSError, ValueError) as err:
                raise DghcError(f"cannot load CLIP model {model!r}: {err} (without network, give a local folder "
                                f"or {UNTRAINED_NAME})") from None
            missing = sorted(info.get("missing_keys") or [])
            projection_missing = [k for k in missing if k.startswith("visual_projection")]
            other_missing = [k for k in missing if k not in projection_missing]
            if other_missing:
                raise DghcError(f"{model}: the checkpoint lacks {len(other_missing)} weights of the vision tower "
                                f"(e.g. {other_missing[0]}); it is not a CLIP vision model")
            if projection_missing and output == "projected":
                raise DghcError(f"{model}: the checkpoint has no visual_projection, so projected vectors would be "
                                f"random (use --output pooled)")
            if projection_missing:
                # pooled never touches the projection; zero it so that the weights hash stays deterministic.
                torch.nn.init.zeros_(clip.visual_projection.weight)
            clip = clip.eval()
            processor = _folder_processor(folder, clip.config.image_size) if folder.is_dir() else \
                _hub_processor(model, clip.config.image_size)
    crop = processor_settings(processor)["crop_size"]
    if processor.do_center_crop and crop.get("height") != clip.config.image_size:
        raise DghcError(f"{model}: the image processor crops to {crop} but the model takes "
                        f"{clip.config.image_size}x{clip.config.image_size} pixels")
    digest = weights_sha256(clip)
    clip.requires_grad_(False)
    clip.to(torch_device)
    return ClipEncoder(model=clip, processor=processor, name=model, weights_sha256=digest,
                       untrained=untrained_seed is not None, seed=untrained_seed, output=output, device=torch_device)


def _folder_processor(folder: Path, image_size: int):
    from transformers import CLIPImageProcessor

    if (folder / "preprocessor_config.json").is_file():
        return CLIPImageProcessor.from_pretrained(folder)
    return standard_processor(image_size)


def _hub_processor(name: str, image_size: int):
    from transformers import CLIPImageProcessor

    try:
        return CLIPImageProcessor.from_pretrained(name)
    except OSError:
        # The repository has no processor file: CLIP's standard preprocessing (recorded in the fingerprint).
        return standard_processor(image_size)
