"""The DGHC tagger: a BERT-family encoder with a gated visual prefix in every layer, emissions and a CRF.

Data flow for a batch (docs/ARCHITECTURE.md, "The model"):
    h_cls  <- text vector ("encoder": [CLS] of a prefix-free pass; "embeddings": mean embedding output)
    s      <- RelevanceScore(h_cls, v_i)            (1 without the RE score)
    V^C    <- s * [v_i, v_o1, v_o2, v_o3]
    gates  <- DynamicGates(V^C)                     (1 without gating)
    prefix <- VisualPrefix(V^C, gates), one per layer, masked for absent blocks
    hidden <- encoder(text) with prefix attention
    tags   <- CRF(Linear(hidden at each word's first sub-token [; word shape] [; character CNN]))
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..data.word_shape import SHAPES
from .characters import CharacterCNN
from .config import ModelConfig
from .crf import ConstrainedCRF
from .gates import DynamicGates
from .prefix_attention import LayerPrefix, checkpoint_layers, install_prefix_attention
from .relevance import RelevanceScore
from .visual_prefix import VisualPrefix

WORD_SHAPE_DIM = 16  # a handful of shapes: a small embedding


@dataclass
class Batch:
    """Tensors of one batch. ``visual`` slot 0 is the whole image, slots 1..m the regions."""

    input_ids: torch.Tensor  # (batch, seq) long
    attention_mask: torch.Tensor  # (batch, seq) bool
    word_starts: torch.Tensor  # (batch, words) long: position of each word's first sub-token
    word_mask: torch.Tensor  # (batch, words) bool
    labels: torch.Tensor | None = None  # (batch, words) long, CRF tag ids
    visual: torch.Tensor | None = None  # (batch, 1 + m, d_v) float
    visual_mask: torch.Tensor | None = None  # (batch, 1 + m) bool
    word_shapes: torch.Tensor | None = None  # (batch, words) long: ids of dghc.pipeline.data.word_shape.SHAPES
    token_shapes: torch.Tensor | None = None  # (batch, seq) long: 1 + the shape id of the sub-token's word; 0: none
    word_bytes: torch.Tensor | None = None  # (batch, words, bytes) long: dghc.pipeline.data.characters ids, 0 pads

    def to(self, device: torch.device | str) -> "Batch":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return Batch(**moved)


@dataclass
class TaggerOutput:
    emissions: torch.Tensor  # (batch, words, tags)
    word_mask: torch.Tensor  # (batch, words)
    relevance: torch.Tensor | None = None  # (batch,)
    gates: torch.Tensor | None = None  # (batch, layers, blocks)
    extras: dict = field(default_factory=dict)


class DGHCTagger(nn.Module):
    def __init__(self, config: ModelConfig, encoder: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        text_config = encoder.config
        hidden = text_config.hidden_size
        self.num_layers = text_config.num_hidden_layers
        self.prefix_state = install_prefix_attention(encoder)
        self.relevance: RelevanceScore | None = None
        self.gates: DynamicGates | None = None
        self.visual_prefix: VisualPrefix | None = None
        self.visual_norm: nn.LayerNorm | None = None
        if config.use_image:
            self.relevance = (RelevanceScore(hidden, config.vision_dim, config.relevance_start)
                              if config.use_relevance else None)
            self.gates = (DynamicGates(config.vision_dim, config.num_blocks, self.num_layers)
                          if config.use_gates else None)
            self.visual_prefix = VisualPrefix(config.vision_dim, hidden, text_config.num_attention_heads,
                                              self.num_layers, config.prompt_len, config.prompt_dim, config.dropout,
                                              config.prefix_projection, config.prefix_scaling,
                                              config.prefix_norm == "text")
            self.visual_norm = nn.LayerNorm(config.vision_dim) if config.visual_norm else None
        self.dropout = nn.Dropout(config.dropout)
        self.word_shape = nn.Embedding(len(SHAPES), WORD_SHAPE_DIM) if config.word_shape else None
        self.characters = CharacterCNN() if config.char_cnn else None
        emission_input = (hidden + (WORD_SHAPE_DIM if config.word_shape else 0)
                          + (CharacterCNN.output_dim if config.char_cnn else 0))
        self.emissions = nn.Linear(emission_input, len(config.labels))
        # ELMo's scalar mix: softmax weights over the embedding output and every layer (equal at start), times a
        # learned scale. A sentence-embedding encoder's last layer is tuned for pooling, its lower ones less so.
        self.layer_weights = nn.Parameter(torch.zeros(self.num_layers + 1)) if config.layer_mix else None
        self.layer_scale = nn.Parameter(torch.ones(1)) if config.layer_mix else None
        self.token_shape: nn.Embedding | None = None
        if config.word_shape and config.word_shape_encoder:
            # Added to every sub-token's input embedding, so all layers see case. Zero at start: training begins
            # from the pretrained encoder exactly. Index 0 (special tokens, padding) stays zero.
            width = encoder.get_input_embeddings().embedding_dim
            self.token_shape = nn.Embedding(len(SHAPES) + 1, width, padding_idx=0)
            nn.init.zeros_(self.token_shape.weight)
        self.crf = ConstrainedCRF(config.labels, constrained=config.constrained_crf)

    def set_gradient_checkpointing(self, on: bool) -> None:
        """Recompute each encoder layer's activations in backward instead of keeping them (less memory, about one
        more forward of the encoder per step); the same gradients. Training only: inference is unchanged."""
        checkpoint_layers(self.encoder, self.prefix_state, on)

    @property
    def max_length(self) -> int:
        """Sub-tokens per post: the configured limit, or less when the encoder has fewer positions."""
        positions = getattr(self.encoder.config, "max_position_embeddings", None) or self.config.max_length
        return min(self.config.max_length, positions)

    # -- text ------------------------------------------------------------------------------------
    def _input_embeddings(self, batch: Batch) -> torch.Tensor | None:
        """The sub-tokens' word embeddings plus their word-shape embedding (None: the encoder embeds the ids)."""
        if self.token_shape is None:
            return None
        if batch.token_shapes is None:
            raise ValueError("this model adds word shapes to the encoder's input: the batch needs token_shapes")
        return self.encoder.get_input_embeddings()(batch.input_ids) + self.token_shape(batch.token_shapes)

    def _run_encoder(self, batch: Batch, prefixes: list | None, mix_layers: bool = False) -> torch.Tensor:
        """The encoder's last hidden state (batch, seq, d); with ``mix_layers``, the learned mix of all layers."""
        self.prefix_state.text_mask = batch.attention_mask
        self.prefix_state.layers = prefixes or []
        inputs = self._input_embeddings(batch)
        text = {"input_ids": batch.input_ids} if inputs is None else {"inputs_embeds": inputs}
        try:
            out = self.encoder(**text, attention_mask=batch.attention_mask.long(), output_hidden_states=mix_layers)
        finally:
            self.prefix_state.clear()
        if not mix_layers:
            return out.last_hidden_state
        weights = torch.softmax(self.layer_weights, dim=0).to(out.last_hidden_state.dtype)
        return self.layer_scale * torch.einsum("l,lbsd->bsd", weights, torch.stack(out.hidden_states))

    def text_vector(self, batch: Batch, embedded: torch.Tensor | None = None) -> torch.Tensor:
        """The post's global text vector h_cls (batch, d).

        ``encoder``: [CLS] of a prefix-free pass without gradient or dropout (the paper; one extra forward).
        ``embeddings``: mean of the embedding layer's output over the post's tokens (``embedded`` when the
        caller already has it).
        """
        if self.config.text_vector == "encoder":
            # No gradient and no dropout: a stable summary of the post (and no dropout masks to draw).
            training = self.encoder.training
            self.encoder.eval()
            try:
                with torch.inference_mode():
                    cls = self._run_encoder(batch, None)[:, 0]
            finally:
                self.encoder.train(training)
            return cls.clone()  # a normal tensor again, usable by the layers that learn from it
        if embedded is None:
            inputs = self._input_embeddings(batch)
            embedded = (self.encoder.embeddings(input_ids=batch.input_ids) if inputs is None
                        else self.encoder.embeddings(inputs_embeds=inputs))
        project = getattr(self.encoder, "embeddings_project", None)  # ELECTRA: embeddings narrower than layers
        if project is not None and embedded.shape[-1] != self.encoder.config.hidden_size:
            embedded = project(embedded)
        weights = batch.attention_mask.to(embedded.dtype).unsqueeze(-1)
        return (embedded * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    # -- vision ----------------------------------------------------------------------------------
    def visual_prefixes(self, batch: Batch, embedded: torch.Tensor | None = None
                        ) -> tuple[list[LayerPrefix], torch.Tensor | None, torch.Tensor | None]:
        """Prefixes per layer plus the relevance score and gates (for reporting; None when ablated)."""
        if batch.visual is None or batch.visual_mask is None:
            raise ValueError("this model uses the image: the batch needs visual features")
        blocks = batch.visual[:, : self.config.num_blocks].float()
        block_mask = batch.visual_mask[:, : self.config.num_blocks].clone()
        block_mask[:, 1:] &= block_mask[:, :1]  # no image, no regions
        batch_size = blocks.shape[0]
        if self.training and self.config.image_dropout > 0:  # modality dropout: hide whole images, not slots
            hidden_image = torch.rand(batch_size, device=blocks.device) < self.config.image_dropout
            block_mask &= ~hidden_image[:, None]
        if self.visual_norm is not None:
            blocks = self.visual_norm(blocks)
        if self.relevance is not None:
            relevance = self.relevance(self.text_vector(batch, embedded), blocks[:, 0])
        else:
            relevance = blocks.new_ones(batch_size)
        scaled = relevance[:, None, None] * blocks
        if self.gates is not None:
            gates = self.gates(scaled, block_mask)
        else:
            gates = blocks.new_ones(batch_size, self.num_layers, self.config.num_blocks)
        if self.config.prefix_scaling == "attention":  # s weighs the attention, not the vectors
            prefixes = self.visual_prefix(blocks, block_mask, gates, relevance)
        else:
            prefixes = self.visual_prefix(scaled, block_mask, gates)
        # An ablated score or gate is reported as None (no such thing), not as the constant 1 that stands in for it.
        return (prefixes, relevance if self.relevance is not None else None,
                gates if self.gates is not None else None)

    # -- tagging ---------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> TaggerOutput:
        prefixes = relevance = gates = None
        if self.config.use_image and self.relevance is not None and self.config.text_vector == "embeddings":
            hidden, relevance, gates = self._run_with_prefix_from_embeddings(batch)
        else:
            if self.config.use_image:
                prefixes, relevance, gates = self.visual_prefixes(batch)
            hidden = self._run_encoder(batch, prefixes, mix_layers=self.layer_weights is not None)
        index = batch.word_starts.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        word_hidden = torch.gather(hidden, 1, index)
        if self.word_shape is not None:
            if batch.word_shapes is None:
                raise ValueError("this model reads word shapes: the batch needs word_shapes")
            word_hidden = torch.cat([word_hidden, self.word_shape(batch.word_shapes).to(word_hidden.dtype)], dim=-1)
        if self.characters is not None:
            if batch.word_bytes is None:
                raise ValueError("this model reads each word's characters: the batch needs word_bytes")
            word_hidden = torch.cat([word_hidden, self.characters(batch.word_bytes).to(word_hidden.dtype)], dim=-1)
        # float32 emissions whatever the autocast precision: the CRF's log-sum-exp overflows in float16
        emissions = self.emissions(self.dropout(word_hidden)).float()
        return TaggerOutput(emissions, batch.word_mask, relevance, gates)

    def _run_with_prefix_from_embeddings(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One encoder pass whose prefix is built from the output of its own embedding layer.

        The text vector is the mean embedding output, which the pass computes anyway: a forward hook on the
        embedding layer builds the prefix between the embeddings and the first layer, so the embeddings are
        not run (and back-propagated) twice.
        """
        built: dict = {}

        def build_prefix(module: nn.Module, inputs: tuple, embedded: torch.Tensor) -> None:  # a forward hook
            prefixes, built["relevance"], built["gates"] = self.visual_prefixes(batch, embedded)
            self.prefix_state.layers = prefixes

        handle = self.encoder.embeddings.register_forward_hook(build_prefix)
        try:
            hidden = self._run_encoder(batch, None, mix_layers=self.layer_weights is not None)
        finally:
            handle.remove()
        return hidden, built["relevance"], built["gates"]

    def loss(self, batch: Batch, reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
        """Negative log-likelihood of the gold tags: the mean over the posts, or their sum."""
        if batch.labels is None:
            raise ValueError("the batch has no labels")
        output = self(batch)
        with torch.autocast(output.emissions.device.type, enabled=False):
            return -self.crf(output.emissions, batch.labels, mask=batch.word_mask, reduction=reduction)

    @torch.no_grad()
    def decode(self, batch: Batch) -> tuple[list[list[int]], TaggerOutput]:
        """Viterbi tag ids per post (only for the words in ``word_mask``)."""
        output = self(batch)
        return self.crf.decode(output.emissions, mask=batch.word_mask), output
