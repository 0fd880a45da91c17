"""Self-attention that also attends to a visual prefix (docs/ARCHITECTURE.md, eqs. 10-14).

Each layer's ``attention.self`` module of a BERT-family encoder is replaced by ``PrefixSelfAttention``,
which reuses the layer's own query/key/value projections and computes

    softmax(Q [phi_k ; K]^T / sqrt(d_h) + mask) [phi_v ; V]

MPNet layers (``attention.attn``) get ``PrefixMPNetSelfAttention``: the text's scores keep MPNet's relative-position
bias; the prefix slots have no position, so theirs are the content term alone. DeBERTa-v2/v3 layers get
``PrefixDisentangledSelfAttention``: the text's own scores are DeBERTa's (content plus
relative-position terms); the prefix slots have no position, so their scores are the content term alone,
Q phi_k^T scaled as DeBERTa scales its content term.

The prefix is no part of the input sequence: text position ids start at 0 and the prefix never goes through the
encoder's position or mask logic (the transformers ``past_key_values`` path would shift positions;
docs/ARCHITECTURE.md, section 6: traps avoided). BERT-style layers rebuild the key mask from ``PrefixState``; the
MPNet and DeBERTa layers apply the encoder's mask to the text's scores and the prefix's own mask to its slots.
The prefix of the current batch is handed over through ``PrefixState``, which the tagger fills before
calling the encoder and clears after.

Gradient checkpointing (``checkpoint_layers``) runs each encoder layer under torch.utils.checkpoint (non-reentrant)
with its prefix and the text mask as explicit inputs of the checkpointed call, which puts them in the state for the
call and again for its recomputation in backward (by then the tagger has cleared the state): the recomputation
sees the prefix the forward saw, and the gradients reach the relevance score, the gates and the prefix projection.
The encoder's own activation checkpointing (transformers) would recompute the layers without their prefix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.models.deberta_v2.modeling_deberta_v2 import DisentangledSelfAttention, scaled_size_sqrt
from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention

from ..core.errors import DghcError
from .encoder import SUPPORTED_FAMILIES


class UnsupportedEncoder(DghcError, TypeError):
    """The encoder's layers are not laid out like BERT's (``encoder.layer[i].attention.self.query`` ...)."""


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(batch, length, d) -> (batch, heads, length, d / heads): a view per head, then a transpose.

    Reshaping straight to (batch, heads, length, d_h) would mix tokens into heads (docs/ARCHITECTURE.md,
    section 6: traps avoided).
    """
    batch, length, width = x.shape
    return x.view(batch, length, num_heads, width // num_heads).transpose(1, 2)


def mean_length(vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch, heads, length, d_h), mask (batch, length) -> the mean vector length over the real tokens (batch,
    heads, 1, 1), without gradient: a yardstick, not something to learn through."""
    weights = mask[:, None, :, None].to(vectors.dtype)
    lengths = vectors.detach().norm(dim=-1, keepdim=True)
    return (lengths * weights).sum(dim=2, keepdim=True) / weights.sum(dim=2, keepdim=True).clamp(min=1.0)


def prefix_keys_and_values(prefix: "LayerPrefix", key: torch.Tensor, value: torch.Tensor,
                           text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The prefix's keys and values as the layer attends to them (batch, heads, prefix_len, head_size): rescaled
    to the text's mean length with ``match_norm``, then weighted by the gates (``weight``)."""
    prefix_keys, prefix_values = prefix.keys.to(key.dtype), prefix.values.to(value.dtype)
    if prefix.match_norm:
        prefix_keys = F.normalize(prefix_keys, dim=-1) * mean_length(key, text_mask)
        prefix_values = F.normalize(prefix_values, dim=-1) * mean_length(value, text_mask)
    if prefix.weight is not None:
        weight = prefix.weight[:, None, :, None].to(key.dtype)
        prefix_keys, prefix_values = weight * prefix_keys, weight * prefix_values
    return prefix_keys, prefix_values


def prefix_logit_offsets(prefix: "LayerPrefix", dtype: torch.dtype) -> torch.Tensor:
    """(batch, prefix_len) added to the prefix slots' attention logits: the bias (log(s g)) or 0, and the
    smallest float where a slot is masked."""
    offsets = prefix.bias.to(dtype) if prefix.bias is not None else torch.zeros(prefix.mask.shape, dtype=dtype,
                                                                                device=prefix.mask.device)
    return offsets.masked_fill(~prefix.mask, torch.finfo(dtype).min)


@dataclass
class LayerPrefix:
    keys: torch.Tensor  # (batch, heads, prefix_len, head_size)
    values: torch.Tensor  # (batch, heads, prefix_len, head_size)
    mask: torch.Tensor  # (batch, prefix_len) bool, True = attend
    # (batch, prefix_len) factor of each slot's key and value (its block's gate), or None: applied after match_norm
    weight: torch.Tensor | None = None
    # (batch, prefix_len) float added to the prefix slots' attention logits, or None. log(s * g) here scales
    # each slot's share of attention by the relevance score and gate: s -> 0 removes the prefix exactly.
    bias: torch.Tensor | None = None
    # True: each prefix key and value is rescaled to the mean length of the layer's text keys and values (per post
    # and head), so that the prefix can steer attention by its direction but never outweigh the text by its size.
    match_norm: bool = False


@dataclass
class PrefixState:
    """What all prefix attention layers of one encoder share for the current forward pass."""

    text_mask: torch.Tensor | None = None  # (batch, seq_len) bool, True = real token
    layers: list[LayerPrefix | None] = field(default_factory=list)  # one per layer; None = no prefix

    def clear(self) -> None:
        self.text_mask = None
        self.layers = []


class PrefixSelfAttention(nn.Module):
    """Drop-in replacement of a BERT self-attention module that prepends prefix keys and values."""

    def __init__(self, original: nn.Module, layer_index: int, state: PrefixState) -> None:
        super().__init__()
        for name in ("query", "key", "value"):
            if not isinstance(getattr(original, name, None), nn.Linear):
                raise UnsupportedEncoder(f"self-attention module {type(original).__name__} has no '{name}' projection: "
                                         f"the visual prefix supports {SUPPORTED_FAMILIES}")
        self.query = original.query
        self.key = original.key
        self.value = original.value
        self.num_heads: int = original.num_attention_heads
        self.head_size: int = original.attention_head_size
        self.dropout_p: float = float(original.dropout.p)
        self.layer_index = layer_index
        self.state = state

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs: Any) -> tuple[torch.Tensor, None]:
        # ``attention_mask`` from the encoder is ignored on purpose: the key mask is rebuilt from the
        # state so that text and prefix masks are combined in one place.
        batch, length, _ = hidden_states.shape
        query = split_heads(self.query(hidden_states), self.num_heads)
        key = split_heads(self.key(hidden_states), self.num_heads)
        value = split_heads(self.value(hidden_states), self.num_heads)
        text_mask = self.state.text_mask
        if text_mask is None:
            text_mask = torch.ones(batch, length, dtype=torch.bool, device=hidden_states.device)
        key_mask = text_mask
        prefix = self.state.layers[self.layer_index] if self.state.layers else None
        if prefix is not None:
            prefix_keys, prefix_values = prefix_keys_and_values(prefix, key, value, text_mask)
            key = torch.cat([prefix_keys, key], dim=2)
            value = torch.cat([prefix_values, value], dim=2)
            key_mask = torch.cat([prefix.mask, text_mask], dim=1)
            if prefix.bias is not None:  # a float mask: 0 / -inf for the text, the bias (or -inf) for the prefix
                text_logits = torch.zeros(text_mask.shape, dtype=query.dtype, device=query.device)
                key_mask = torch.cat([prefix_logit_offsets(prefix, query.dtype),
                                      text_logits.masked_fill(~text_mask, torch.finfo(query.dtype).min)], dim=1)
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=key_mask[:, None, None, :],
            dropout_p=self.dropout_p if self.training else 0.0,
        )
        return attended.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_size), None


class PrefixDisentangledSelfAttention(DisentangledSelfAttention):
    """DeBERTa-v2/v3's disentangled self-attention with the visual prefix in front of the text's keys.

    It takes over the original module's weights and settings (same parameter names, so checkpoints of the plain
    encoder load) and reuses its relative-position term; only the softmax over [prefix ; text] is new. Kept as a
    subclass rather than a wrapper: DeBERTa's helper methods read many of the module's attributes.
    """

    def __init__(self, original: DisentangledSelfAttention, layer_index: int, state: PrefixState) -> None:
        nn.Module.__init__(self)
        self.__dict__.update({k: v for k, v in original.__dict__.items() if k != "training"})
        self.layer_index = layer_index
        self.state = state

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor, output_attentions: bool = False,
                query_states: torch.Tensor | None = None, relative_pos: torch.Tensor | None = None,
                rel_embeddings: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        prefix = self.state.layers[self.layer_index] if self.state.layers else None
        if prefix is None or query_states is not None:
            return super().forward(hidden_states, attention_mask, output_attentions, query_states, relative_pos,
                                   rel_embeddings)
        batch, length, _ = hidden_states.shape
        heads, head_size = self.num_attention_heads, self.attention_head_size
        query = self.transpose_for_scores(self.query_proj(hidden_states), heads)  # (batch * heads, length, d_h)
        key = self.transpose_for_scores(self.key_proj(hidden_states), heads)
        value = self.transpose_for_scores(self.value_proj(hidden_states), heads)
        scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
        scale = scaled_size_sqrt(query, scale_factor).to(query.dtype)
        text_scores = torch.bmm(query, key.transpose(-1, -2) / scale)
        if self.relative_attention:
            text_scores = text_scores + self.disentangled_attention_bias(
                query, key, relative_pos, self.pos_dropout(rel_embeddings), scale_factor)
        blocked = torch.finfo(query.dtype).min
        text_scores = text_scores.view(batch, heads, length, length).masked_fill(~attention_mask.bool(), blocked)
        query, key, value = (x.view(batch, heads, length, head_size) for x in (query, key, value))
        text_mask = self.state.text_mask
        if text_mask is None:
            text_mask = torch.ones(batch, length, dtype=torch.bool, device=hidden_states.device)
        prefix_keys, prefix_values = prefix_keys_and_values(prefix, key, value, text_mask)
        prefix_scores = query @ (prefix_keys / scale).transpose(-1, -2)  # content only: a prefix has no position
        prefix_scores = prefix_scores + prefix_logit_offsets(prefix, query.dtype)[:, None, None, :]
        weights = self.dropout(torch.softmax(torch.cat([prefix_scores, text_scores], dim=-1), dim=-1))
        attended = weights @ torch.cat([prefix_values, value], dim=2)  # (batch, heads, length, d_h)
        return attended.transpose(1, 2).reshape(batch, length, heads * head_size), None


class PrefixMPNetSelfAttention(nn.Module):
    """MPNet's self-attention (q/k/v/o projections, a relative-position bias added by the encoder) with the visual
    prefix in front of the text's keys. It keeps the original's submodules under their names, so checkpoints of
    the plain encoder load."""

    def __init__(self, original: MPNetSelfAttention, layer_index: int, state: PrefixState) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = original.q, original.k, original.v, original.o
        self.dropout = original.dropout
        self.num_heads: int = original.num_attention_heads
        self.head_size: int = original.attention_head_size
        self.layer_index = layer_index
        self.state = state

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None, output_attentions: bool = False,
                **kwargs: Any) -> tuple[torch.Tensor]:
        batch, length, _ = hidden_states.shape
        query = split_heads(self.q(hidden_states), self.num_heads)
        key = split_heads(self.k(hidden_states), self.num_heads)
        value = split_heads(self.v(hidden_states), self.num_heads)
        scale = self.head_size ** 0.5
        scores = query @ key.transpose(-1, -2) / scale  # (batch, heads, length, length)
        if position_bias is not None:
            scores = scores + position_bias
        if attention_mask is not None:  # MPNet's additive mask (batch, 1, 1, length)
            scores = scores + attention_mask
        prefix = self.state.layers[self.layer_index] if self.state.layers else None
        if prefix is not None:
            text_mask = self.state.text_mask
            if text_mask is None:
                text_mask = torch.ones(batch, length, dtype=torch.bool, device=hidden_states.device)
            prefix_keys, prefix_values = prefix_keys_and_values(prefix, key, value, text_mask)
            prefix_scores = query @ prefix_keys.transpose(-1, -2) / scale  # content only: a prefix has no position
            prefix_scores = prefix_scores + prefix_logit_offsets(prefix, query.dtype)[:, None, None, :]
            scores = torch.cat([prefix_scores, scores], dim=-1)
            value = torch.cat([prefix_values, value], dim=2)
        weights = self.dropout(torch.softmax(scores, dim=-1))
        attended = (weights @ value).transpose(1, 2).reshape(batch, length, self.num_heads * self.head_size)
        return (self.o(attended),)


def install_prefix_attention(encoder: nn.Module) -> PrefixState:
    """Replace every self-attention module of ``encoder`` (a BERT-style, MPNet or DeBERTa-v2 model) in place.

    Returns the shared state through which prefixes are passed. Weights are untouched, so a checkpoint of
    the plain encoder loads into the wrapped one.
    """
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if layers is None:
        raise UnsupportedEncoder(f"{type(encoder).__name__} has no encoder.layer list: the visual prefix supports "
                                 f"{SUPPORTED_FAMILIES}")
    state = PrefixState()
    for index, layer in enumerate(layers):
        attention = layer.attention
        if isinstance(getattr(attention, "attn", None), MPNetSelfAttention):
            attention.attn = PrefixMPNetSelfAttention(attention.attn, index, state)
        elif isinstance(attention.self, DisentangledSelfAttention):
            attention.self = PrefixDisentangledSelfAttention(attention.self, index, state)
        else:
            attention.self = PrefixSelfAttention(attention.self, index, state)
    return state


class CheckpointedLayer:
    """The forward of one encoder layer, run under torch.utils.checkpoint (non-reentrant) in training with
    gradients: its activations are recomputed in backward instead of kept. The layer's prefix and the text mask
    are explicit inputs of the checkpointed call. Set as the layer's ``forward`` (an instance attribute: the
    layer's modules and parameter names stay as they are)."""

    def __init__(self, layer: nn.Module, index: int, state: PrefixState) -> None:
        self.layer, self.index, self.state = layer, index, state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        forward = type(self.layer).forward.__get__(self.layer)
        if not (self.layer.training and torch.is_grad_enabled()):
            return forward(*args, **kwargs)
        prefix = self.state.layers[self.index] if self.state.layers else None
        tensors = (None,) * 5 if prefix is None else (prefix.keys, prefix.values, prefix.mask, prefix.weight,
                                                       prefix.bias)
        match_norm = prefix is not None and prefix.match_norm

        def run(text_mask: torch.Tensor | None, keys: torch.Tensor | None, values: torch.Tensor | None,
                mask: torch.Tensor | None, weight: torch.Tensor | None, bias: torch.Tensor | None,
                *layer_args: Any, **layer_kwargs: Any) -> Any:
            layer_prefix = None if keys is None else LayerPrefix(keys, values, mask, weight, bias, match_norm)
            before = self.state.text_mask, self.state.layers
            self.state.text_mask, self.state.layers = text_mask, [None] * self.index + [layer_prefix]
            try:
                return forward(*layer_args, **layer_kwargs)
            finally:
                self.state.text_mask, self.state.layers = before

        return checkpoint(run, self.state.text_mask, *tensors, *args, use_reentrant=False, **kwargs)


def checkpoint_layers(encoder: nn.Module, state: PrefixState, on: bool) -> None:
    """Turn gradient checkpointing of every layer of ``encoder`` (one with prefix attention) on or off."""
    for index, layer in enumerate(encoder.encoder.layer):
        if on:
            layer.forward = CheckpointedLayer(layer, index, state)
        elif "forward" in vars(layer):
            del layer.forward
