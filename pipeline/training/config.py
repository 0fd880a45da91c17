"""The train stage's parameters (params.yaml section ``train``).

The defaults are dghc's measured ones (docs/STAGES.md, "Fusion options" and the learning rates; docs/ARCHITECTURE.md,
"Training"); params.yaml sets a shorter schedule for 2 CPU cores, configs/*-paper.yaml the paper's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..core.errors import DghcError
from ..core.params import allow_unseen_types_param, check_params, device_param, param
from ..model.config import ModelConfig, PrefixNorm, PrefixProjection, PrefixScaling, TextVectorSource
from ..model.encoder import PACKAGED_MINILM

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Parameters of ``dghc train``."""

    SECTION: ClassVar[str] = "train"
    # parameters a params file's data section gives (stages/options.py); this section and options win
    FROM_DATA: ClassVar[dict[str, str | tuple[str, ...]]] = {"train_file": "train", "dev_file": "dev"}

    # files: every file the stage reads or writes is a parameter
    train_file: Path = param(Path("data/demo/train.txt"), help="Training split (CoNLL).", option="--train")
    dev_file: Path = param(Path("data/demo/valid.txt"), help="Dev split that picks the best epoch.", option="--dev")
    features_file: Path = param(Path("cache/features.h5"), help="Features file from `dghc extract` (read when "
                                "use_image is true).", option="--features")
    detections_file: Path = param(Path("cache/detections.h5"), help="Detections file from `dghc detect`: only its "
                                  "settings are read, and recorded for `dghc predict`.", option="--detections")
    output_dir: Path = param(Path("cache/model"), help="Folder of the best checkpoint.", option="--out")
    log_file: Path | None = param(Path("cache/train_log.csv"), help="Per-epoch CSV (loss, dev P/R/F1) for "
                                  "`dvc plots`.", option="--log")
    metrics_file: Path | None = param(None, help="Write the best epoch and its dev P/R/F1 (flat JSON, for "
                                      "`dvc metrics show`).", option="--metrics")
    state_dir: Path = param(Path("cache/train_state"), help="Folder of the resumable training state and the best "
                            "checkpoint so far: rerunning the same command after a crash resumes from it.",
                            option="--state")
    # the model: the defaults are ModelConfig's (one place), the help and limits are the stage's
    encoder: str = param(PACKAGED_MINILM, help="Text encoder: a hub name (bert-base-cased), a local folder, or "
                         f"{PACKAGED_MINILM} (offline default).")
    use_image: bool = param(ModelConfig.use_image, help="Read the image; false: text only (BERT-CRF).")
    use_relevance: bool = param(ModelConfig.use_relevance,
                                help="Text-image relevance score; false: s = 1 (ablation 'w/o RE score').")
    use_gates: bool = param(ModelConfig.use_gates, help="Dynamic gates; false: every gate 1 (ablation 'w/o gating').")
    use_regions: bool = param(ModelConfig.use_regions,
                              help="Region crops; false: whole image only (ablation 'w/o augmentation').")
    text_vector: TextVectorSource = param(
        ModelConfig.text_vector, help="Source of the post's text vector: [CLS] of a prefix-free pass (the paper), or "
                                      "the mean embedding output (cheaper).")
    prompt_len: int = param(ModelConfig.prompt_len, help="Prefix tokens per visual block.", minimum=1)
    prompt_dim: int = param(ModelConfig.prompt_dim, help="Hidden size of the prefix projection.", minimum=1)
    dropout: float = param(ModelConfig.dropout, help="Dropout of the prefix and the emissions.", minimum=0.0,
                           maximum=1.0)
    max_length: int = param(ModelConfig.max_length, help="Sub-tokens per post (two special tokens included).",
                            minimum=3)
    prefix_projection: PrefixProjection = param(
        ModelConfig.prefix_projection, help="One prefix projection for all layers, or one output per layer (the "
                                            "paper's eq. 13).")
    prefix_scaling: PrefixScaling = param(
        ModelConfig.prefix_scaling, help="How the relevance score and gates weigh the prefix: scaling its vectors "
                                         "(the paper), or its share of attention (log(s g) on its logits: s -> 0 "
                                         "removes the image).")
    prefix_norm: PrefixNorm = param(
        ModelConfig.prefix_norm, help="Length of the prefix keys and values: as projected (the paper), or rescaled "
                                      "to the mean length of the layer's text keys and values (the image steers "
                                      "attention, never outweighs the text).")
    visual_norm: bool = param(ModelConfig.visual_norm, help="LayerNorm on each image and region vector before the "
                              "score, gates and prefix.")
    constrained_crf: bool = param(ModelConfig.constrained_crf, help="The CRF can only score and decode legal BIOES "
                                  "sequences (false: any sequence, repaired after decoding).")
    word_shape: Literal["auto", "true", "false"] = param(  # ModelConfig records what auto resolved to
        "auto", help="Embed each word's shape (capitalised, all caps, digits, hashtag, mention, URL, emoji...) into "
                     "the emission layer's input; auto: when the encoder's tokenizer lowercases (uncased).")
    word_shape_encoder: bool = param(
        ModelConfig.word_shape_encoder, help="With word_shape on: also add a learned shape embedding (zero at start) "
                                             "to each sub-token's input embedding, so every encoder layer sees case, "
                                             "not only the emission layer.")
    char_cnn: bool = param(ModelConfig.char_cnn, help="A character CNN reads each word's bytes as written (case, "
                           "prefixes, suffixes) and its vector joins the emission layer's input beside the encoder's.")
    layer_mix: bool = param(ModelConfig.layer_mix, help="The tags read a learned softmax-weighted mix of every encoder "
                            "layer's output (embeddings included), instead of the last layer's.")
    relevance_start: float = param(
        ModelConfig.relevance_start, help="The relevance score s before training (0.5: the paper's zero bias). Near "
                                          "0, an untrained visual path leaves the text alone and opens where images "
                                          "help.", minimum=1e-6, maximum=1 - 1e-6)
    image_dropout: float = param(ModelConfig.image_dropout, help="Share of training posts whose image is hidden at "
                                 "each step (modality dropout: the text path learns to work alone).", minimum=0.0,
                                 maximum=1.0)
    # optimisation
    epochs: int = param(30, help="Training epochs.", minimum=1)
    batch_size: int = param(16, help="Posts per forward/backward pass, split across the processes (an optimizer "
                            "step takes grad_accum_steps of them).", minimum=1)
    grad_accum_steps: int = param(1, help="Passes whose gradients are summed before each optimizer step.",
                                  minimum=1)
    lr_encoder: float = param(3e-5, help="AdamW learning rate of the encoder.", minimum=0.0)
    lr_head: float = param(1e-3, help="Learning rate of the new layers (relevance, gates, prefix, emissions).",
                           minimum=0.0)
    lr_crf: float = param(5e-2, help="Learning rate of the CRF transitions.", minimum=0.0)
    weight_decay: float = param(0.01, help="AdamW weight decay (none on biases and LayerNorm).", minimum=0.0)
    warmup_ratio: float = param(0.01, help="Share of the steps with a linear warmup.", minimum=0.0, maximum=1.0)
    max_grad_norm: float = param(1.0, help="Gradient clipping norm; 0: no clipping.", minimum=0.0)
    ema_decay: float = param(0.0, help="Decay of an exponential moving average of the weights, updated after every "
                             "optimizer step; dev scoring and the saved model use the average (e.g. 0.998). 0: the "
                             "trained weights themselves.", minimum=0.0, maximum=0.9999)
    seed: int = param(1234, help="Seed of the weights, the shuffling and dropout.")
    eval_begin_epoch: int = param(1, help="First epoch scored on dev (and eligible as best).", minimum=1)
    early_stop_patience: int = param(0, help="Stop after this many epochs without a better dev score; 0: never.",
                                     minimum=0)
    eval_mode: Literal["default", "strict"] = param("default", help="seqeval mode whose F1 picks the best epoch.")
    merge_other: bool = param(True, help="Read Twitter-2015's OTHER as MISC.")
    allow_unseen_types: bool = allow_unseen_types_param()
    device: str = device_param()
    precision: Literal["no", "fp16", "bf16"] = param("no", help="Mixed precision of training and dev scoring "
                                                     "(fp16 needs a CUDA GPU; bf16 a GPU or CPU that has it).")
    gradient_checkpointing: bool = param(False, help="Recompute each encoder layer's activations (visual prefix "
                                         "included) in backward instead of keeping them: much less GPU memory for "
                                         "large encoders, about one more encoder forward per step, the same "
                                         "gradients.")
    processes: int = param(1, help="Data-parallel processes: `dghc train --processes N` starts N (gloo on the "
                           "CPU, one GPU each with CUDA); rank 0 alone writes files.", minimum=1)
    save_every_epochs: int = param(1, help="Save the resumable state at the end of every N-th epoch (a crash then "
                                   "repeats at most N-1 epochs; with large models each save writes gigabytes).",
                                   minimum=1)
    save_every_steps: int = param(0, help="Also save the resumable state every N optimizer steps (0: at epoch ends "
                                  "only).", minimum=0)
    restart: bool = param(False, help="Ignore a saved training state and start over.", in_params=False)
    no_restart: bool = param(False, help="Refuse to start over when the saved training state is damaged, instead "
                             "of replacing it.")
    progress: bool = param(True, help="Show a progress bar.")

    def __post_init__(self) -> None:
        check_params(self)
        if self.processes > self.batch_size:
            raise DghcError(f"train: {self.processes} processes but {self.batch_size} posts in a batch: every process "
                            "needs at least one post of each pass (raise batch_size or lower processes)")
        if self.eval_begin_epoch > self.epochs:
            raise DghcError(f"train: eval_begin_epoch {self.eval_begin_epoch} is after the last epoch ({self.epochs}): no "
                            "epoch would be scored on dev and the best checkpoint chosen (lower eval_begin_epoch or "
                            "raise epochs)")

    def model_config(self, labels: list[str], vision_dim: int, num_regions: int,
                     lowercasing_tokenizer: bool = False) -> ModelConfig:
        """The model's parameters: the fields this config shares with ModelConfig, plus what the data and the
        tokenizer give."""
        word_shape = lowercasing_tokenizer if self.word_shape == "auto" else self.word_shape == "true"
        if self.word_shape_encoder and not word_shape:
            logger.warning("word_shape_encoder is on but word_shape is off (%s): no shape embedding is added; set "
                           "word_shape: true to use it", "the encoder keeps case" if self.word_shape == "auto"
                           else "word_shape: false")
        given = {"labels": labels, "vision_dim": vision_dim, "num_regions": num_regions, "word_shape": word_shape}
        shared = {f.name: getattr(self, f.name) for f in fields(ModelConfig) if f.name not in given}
        return ModelConfig(**given, **shared)

    def to_json(self) -> dict[str, Any]:
        """The parameters as JSON values (paths as strings), as recorded in the checkpoint."""
        return {f.name: str(v) if isinstance(v := getattr(self, f.name), Path) else v for f in fields(self)}
