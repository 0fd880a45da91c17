"""A trained tagger as a folder: safetensors weights and JSON, no pickle.

    model.safetensors   every weight (encoder, relevance, gates, prefix, emissions, CRF)
    dghc.json           the ModelConfig (labels included), the fingerprints of the features and detections
                        files it was trained with, training summary
    encoder/            the encoder's config.json and its tokenizer files
    README.md           the model card (``model_card.py``): what the model is, its vision model, data, scores,
                        parameters and how to use it, with the Hugging Face Hub's front matter

The card is written with every checkpoint, and nothing reads it back: a folder without one (dghc 0.1.0 wrote
none) loads as it is.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..artifacts.atomic import atomic_folder
from ..core.errors import DghcError
from ..model.config import ModelConfig
from ..model.encoder import build_encoder, load_tokenizer
from ..model.tagger import DGHCTagger
from .model_card import write_model_card

WEIGHTS = "model.safetensors"
META = "dghc.json"
ENCODER_DIR = "encoder"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    tagger: DGHCTagger
    tokenizer: object
    features_fingerprint: dict | None = None
    detections_fingerprint: dict | None = None  # how regions were found: predict reruns detection with it
    info: dict = field(default_factory=dict)  # training summary: best epoch, dev scores, encoder name...


def save_checkpoint(folder: str | Path, checkpoint: Checkpoint) -> None:
    """Write the checkpoint atomically: a staging folder renamed over the old one."""
    from safetensors.torch import save_file

    with atomic_folder(folder) as staging:
        state = {k: v.detach().contiguous().cpu() for k, v in checkpoint.tagger.state_dict().items()}
        save_file(state, str(staging / WEIGHTS))
        checkpoint.tagger.encoder.config.save_pretrained(staging / ENCODER_DIR)
        checkpoint.tokenizer.save_pretrained(staging / ENCODER_DIR)
        meta = {
            "format_version": FORMAT_VERSION,
            "model": checkpoint.tagger.config.to_dict(),
            "features_fingerprint": checkpoint.features_fingerprint,
            "detections_fingerprint": checkpoint.detections_fingerprint,
            "info": checkpoint.info,
        }
        (staging / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        write_model_card(staging, checkpoint)


def load_checkpoint(folder: str | Path) -> Checkpoint:
    from safetensors.torch import load_file
    from transformers import AutoConfig

    folder = Path(folder)
    meta_path = folder / META
    if not meta_path.is_file():
        raise DghcError(f"{folder} is not a dghc model folder (no {META}); give the folder `dghc train` wrote")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        if meta.get("format_version") != FORMAT_VERSION:
            raise DghcError(f"{meta_path}: format version {meta.get('format_version')} is not supported "
                            f"(this dghc reads version {FORMAT_VERSION})")
        config = ModelConfig.from_dict(meta["model"])
        for key in ("features_fingerprint", "detections_fingerprint", "info"):
            if not isinstance(meta.get(key), (dict, type(None))):
                raise ValueError(f"{key} is not a JSON object")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise DghcError(f"{meta_path} is damaged ({err}); retrain or restore the model folder") from None
    try:
        encoder_config = AutoConfig.from_pretrained(folder / ENCODER_DIR)
        encoder = build_encoder(config=encoder_config)
        tokenizer = load_tokenizer(folder / ENCODER_DIR)
    except (OSError, ValueError) as err:
        raise DghcError(f"{folder / ENCODER_DIR}: cannot rebuild the encoder ({err}); "
                        "retrain or restore the model folder") from None
    try:
        tagger = DGHCTagger(config, encoder)
        state = load_file(str(folder / WEIGHTS))
    except (ValueError, TypeError, OSError, RuntimeError) as err:  # parameters the model cannot be built from
        raise DghcError(f"{folder}: cannot rebuild the model ({type(err).__name__}: {str(err)[:150]}); retrain or "
                        "restore the model folder") from None
    try:
        missing, unexpected = tagger.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes differ: another label set, encoder or vision size than the weights
        first = str(err).split("\n\t")[1] if "\n\t" in str(err) else str(err)
        raise DghcError(f"{folder}: the weights do not fit {META} and {ENCODER_DIR}/ ({first.strip()}); "
                        "the folder was changed after training: retrain or restore it") from None
    if missing or unexpected:
        raise DghcError(f"{folder}: the weights do not fit {META} and {ENCODER_DIR}/ (missing {missing[:3]}, "
                        f"unexpected {unexpected[:3]}); retrain or restore the folder")
    tagger.eval()
    return Checkpoint(tagger, tokenizer, meta.get("features_fingerprint"), meta.get("detections_fingerprint"),
                      meta.get("info") or {})
