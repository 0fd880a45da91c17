"""The tagger's shape (``ModelConfig``): every parameter that defines the network, saved in the checkpoint.

This is where the model's defaults live; ``TrainConfig`` (the ``train`` stage's parameters) takes its model fields'
defaults from here. Nothing heavy is imported, so reading parameters and ``--help`` stay fast.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal, get_args

TextVectorSource = Literal["encoder", "embeddings"]
PrefixProjection = Literal["shared", "per_layer"]
PrefixScaling = Literal["values", "attention"]
PrefixNorm = Literal["free", "text"]

# The allowed values of the fields that name a choice.
CHOICES = {"text_vector": get_args(TextVectorSource), "prefix_projection": get_args(PrefixProjection),
           "prefix_scaling": get_args(PrefixScaling), "prefix_norm": get_args(PrefixNorm)}
# Checkpoints saved before these options existed lack their keys: an absent key means this, not the default.
OLDER_CHECKPOINT_VALUES = {"prefix_projection": "shared", "prefix_scaling": "values", "prefix_norm": "free",
                           "visual_norm": False, "image_dropout": 0.0, "constrained_crf": False,
                           "word_shape": False, "word_shape_encoder": False, "layer_mix": False,
                           "relevance_start": 0.5, "char_cnn": False}


@dataclass
class ModelConfig:
    """Every parameter that defines the tagger's shape; saved in the checkpoint."""

    labels: list[str]  # BIOES labels, index = CRF tag id
    vision_dim: int = 256
    num_regions: int = 3
    use_image: bool = True  # False: text only (BERT-CRF)
    use_relevance: bool = True  # False: s = 1 (ablation "w/o RE score")
    use_gates: bool = True  # False: every gate = 1 (ablation "w/o gating")
    use_regions: bool = True  # False: whole image only, 4 prefix tokens (ablation "w/o augmentation")
    text_vector: TextVectorSource = "encoder"
    prompt_len: int = 4
    prompt_dim: int = 800
    dropout: float = 0.1
    max_length: int = 128
    prefix_projection: PrefixProjection = "shared"  # "per_layer": one projection output per layer (eq. 13)
    prefix_scaling: PrefixScaling = "attention"  # s and the gates scale the prefix's share of attention ("values": the paper)
    prefix_norm: PrefixNorm = "text"  # prefix keys/values as long as the layer's text ones ("free": the paper)
    visual_norm: bool = False  # LayerNorm on each visual vector before the score, gates and prefix
    image_dropout: float = 0.0  # share of the training posts whose image is hidden (both paths get trained)
    constrained_crf: bool = True  # the CRF scores and decodes legal BIOES sequences only
    word_shape: bool = False  # an embedding of each word's shape joins the emission layer's input
    word_shape_encoder: bool = False  # with word_shape: a shape embedding is also added to the encoder's input
    layer_mix: bool = False  # the tags read a learned softmax-weighted sum of every layer's output, not the last
    relevance_start: float = 0.05  # the relevance score before training (0.5: the paper's zero bias)
    char_cnn: bool = False  # a character CNN's vector of each word (as written) joins the emission layer's input

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """A config read back from JSON, each value checked against the kind of its default (ValueError)."""
        if not isinstance(values, dict):
            raise ValueError("the model parameters are not a JSON object")
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown model parameters: {sorted(unknown)}")
        labels = values.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
            raise ValueError("labels must be a non-empty list of strings")
        for spec in fields(cls):
            if spec.name == "labels" or spec.name not in values:
                continue
            value, kind = values[spec.name], type(spec.default)
            accepted = (int, float) if kind is float else kind
            if not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool)):
                raise ValueError(f"{spec.name} must be a {kind.__name__}, not {value!r}")
            if kind is int and value < (0 if spec.name == "vision_dim" else 1):
                raise ValueError(f"{spec.name} cannot be {value}")
            if spec.name in CHOICES and value not in CHOICES[spec.name]:
                raise ValueError(f"{spec.name} must be one of {CHOICES[spec.name]}, not {value!r}")
        return cls(**{**OLDER_CHECKPOINT_VALUES, **values})

    @property
    def num_blocks(self) -> int:
        return 1 + self.num_regions if self.use_regions else 1
