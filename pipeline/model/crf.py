"""A linear-chain CRF that can only score and decode legal BIOES sequences.

pytorch-crf's ``CRF`` learns a start score, an end score and a transition score per tag (pair). Here those three
are served with a large negative penalty on what BIOES forbids, so that the loss gives illegal paths no
probability and Viterbi never returns one (without this, `B-PER O` could be decoded and read back as an entity):

- a post starts with O, B-X or S-X, and ends with O, E-X or S-X;
- after O, E-X or S-X comes O, B-Y or S-Y; after B-X or I-X comes I-X or E-X (the same type X).

The learned parameters keep pytorch-crf's names, so checkpoints of the unconstrained CRF load unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchcrf import CRF

from ..data.tags import split_label

# Added to a forbidden score: exp(-10000) is 0 in float32, and unlike -inf it keeps log-sum-exp free of NaN.
FORBIDDEN = -10000.0


def _opens(prefix: str) -> bool:
    """The tag leaves an entity open: the next tag must continue it."""
    return prefix in ("B", "I")


def _continues(prefix: str) -> bool:
    """The tag continues an open entity."""
    return prefix in ("I", "E")


def allowed_bioes(labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(start (T,), end (T,), transitions (T, T)) bool: True where BIOES allows the tag, the end, the pair."""
    parts = [split_label(label) for label in labels]
    start = torch.tensor([not _continues(prefix) for prefix, _ in parts])
    end = torch.tensor([not _opens(prefix) for prefix, _ in parts])
    transitions = torch.zeros(len(labels), len(labels), dtype=torch.bool)
    for i, (prefix_from, type_from) in enumerate(parts):
        for j, (prefix_to, type_to) in enumerate(parts):
            if _opens(prefix_from):
                transitions[i, j] = _continues(prefix_to) and type_to == type_from
            else:
                transitions[i, j] = not _continues(prefix_to)
    return start, end, transitions


def _penalised(name: str):
    """A read-only attribute serving the learned parameter ``name`` plus its penalty buffer."""

    def read(self: "ConstrainedCRF") -> torch.Tensor:
        try:
            return self._parameters[name] + self._buffers[f"{name}_penalty"]
        except KeyError:  # not registered yet (during CRF.__init__): look like an absent attribute
            raise AttributeError(name) from None

    return property(read)


class ConstrainedCRF(CRF):
    """pytorch-crf's CRF over BIOES ``labels``; ``constrained=False`` gives the plain CRF (older checkpoints)."""

    start_transitions = _penalised("start_transitions")
    end_transitions = _penalised("end_transitions")
    transitions = _penalised("transitions")

    def __init__(self, labels: Sequence[str], constrained: bool = True) -> None:
        super().__init__(len(labels), batch_first=True)
        start, end, transitions = allowed_bioes(labels)
        if not constrained:
            start, end, transitions = (torch.ones_like(t) for t in (start, end, transitions))
        for name, allowed in (("start_transitions", start), ("end_transitions", end), ("transitions", transitions)):
            # not persistent: the penalties follow from the labels, and state dicts keep pytorch-crf's keys
            self.register_buffer(f"{name}_penalty", (~allowed).float() * FORBIDDEN, persistent=False)

    def reset_parameters(self) -> None:
        # Called by CRF.__init__. CRF's own version initialises through the attributes, here computed copies.
        for name in ("start_transitions", "end_transitions", "transitions"):
            if name in self._parameters:
                nn.init.uniform_(self._parameters[name], -0.1, 0.1)
