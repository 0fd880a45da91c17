"""Visual prefix tokens (docs/ARCHITECTURE.md, eqs. 10-14).

A projection turns each visual block into ``prompt_len`` prefix tokens per layer, each with a key and a value:
P_b = Linear(tanh(Linear(V^C_b))) : d_v -> prompt_dim -> prompt_len * 2 * d, either one output shared by all
layers (``shared``) or one per layer (``per_layer``, the paper's eq. 13). Layer l's prefix is [P_1 ; ... ; P_B]
weighted by that layer's gates g_l,b, in one of two ways (``scaling``):

- ``values`` (the paper): g_l,b multiplies block b's keys and values; the relevance score s has already scaled
  V^C. A projection's biases still give a constant prefix when s -> 0: the score cannot switch the image off.
- ``attention``: the tokens are left as projected and log(s * g_l,b) is added to the attention logits of block
  b's slots, so their share of attention scales with s * g_l,b and vanishes as s -> 0.

With ``match_norm`` (``prefix_norm: text``) the attention layer first rescales every prefix key and value to the
mean length of its text keys and values, then applies the gates: the image steers attention by direction.

Heads are split by viewing d as (heads, head_size) and moving the head axis forward (a plain reshape to
(heads, length, head_size) would scramble heads: docs/ARCHITECTURE.md, section 6: traps avoided).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import PrefixProjection, PrefixScaling
from .prefix_attention import LayerPrefix


class VisualPrefix(nn.Module):
    def __init__(self, vision_dim: int, hidden_size: int, num_heads: int, num_layers: int, prompt_len: int,
                 prompt_dim: int, dropout: float, projection: PrefixProjection, scaling: PrefixScaling,
                 match_norm: bool) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of {num_heads} heads")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.prompt_len = prompt_len
        self.scaling = scaling
        self.match_norm = match_norm
        self.projected_layers = num_layers if projection == "per_layer" else 1
        self.project = nn.Sequential(
            nn.Linear(vision_dim, prompt_dim),
            nn.Tanh(),
            nn.Linear(prompt_dim, self.projected_layers * prompt_len * 2 * hidden_size),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, blocks: torch.Tensor, block_mask: torch.Tensor, gates: torch.Tensor,
                relevance: torch.Tensor | None = None) -> list[LayerPrefix]:
        """blocks (batch, B, d_v), block_mask (batch, B), gates (batch, layers, B), relevance (batch,) or None
        -> one prefix per layer. With ``values`` scaling, ``blocks`` come already scaled by the relevance."""
        batch, num_blocks, _ = blocks.shape
        num_layers = gates.shape[1]
        tokens = self.dropout(self.project(blocks))  # (batch, B, layers or 1, prompt_len * 2 * d)
        tokens = tokens.view(batch, num_blocks, self.projected_layers, self.prompt_len, 2, self.hidden_size)
        tokens = tokens.transpose(1, 2)  # (batch, layers or 1, B, prompt_len, 2, d)
        # per slot of each layer (batch, layers, B * prompt_len): block b's gate in layer l, for its slots
        slot_gates = gates.repeat_interleave(self.prompt_len, dim=2)
        if self.scaling == "values":  # the gate multiplies the slot's key and value (in the attention layer)
            weight, bias = slot_gates, None
        else:  # log(s * g_l,b) on the logits of block b's slots in layer l
            scale = slot_gates if relevance is None else relevance[:, None, None] * slot_gates
            weight, bias = None, torch.log(scale.clamp(min=1e-30))
        tokens = tokens.expand(batch, num_layers, *tokens.shape[2:])
        prefix_len = num_blocks * self.prompt_len
        # -> (layers, key/value, batch, heads, prefix_len, head_size): heads split from d, then moved forward
        per_layer = tokens.reshape(batch, num_layers, prefix_len, 2, self.num_heads, self.head_size)
        per_layer = per_layer.permute(1, 3, 0, 4, 2, 5)
        slot_mask = block_mask.repeat_interleave(self.prompt_len, dim=1)  # (batch, B * prompt_len)
        return [LayerPrefix(keys=per_layer[layer, 0], values=per_layer[layer, 1], mask=slot_mask,
                            weight=None if weight is None else weight[:, layer],
                            bias=None if bias is None else bias[:, layer], match_norm=self.match_norm)
                for layer in range(num_layers)]
