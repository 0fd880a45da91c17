"""Tag schemes: BIO <-> BIOES, repair of invalid BIO sequences, type renaming.

A label is ``O`` or ``<prefix>-<TYPE>``. The files use BIO (IOB2); the model trains with BIOES,
which marks single-token and last-token entities explicitly.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

OUTSIDE = "O"
BIO_LABEL = re.compile(r"^(O|[BI]-[A-Za-z][A-Za-z0-9_]*)$")
BIOES_LABEL = re.compile(r"^(O|[BIES]-[A-Za-z][A-Za-z0-9_]*)$")

# Twitter-2015 calls the miscellaneous type OTHER, Twitter-2017 calls it MISC: the same type.
OTHER_AS_MISC: Mapping[str, str] = {"OTHER": "MISC"}


def split_label(label: str) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", None)``."""
    if label == OUTSIDE:
        return OUTSIDE, None
    prefix, _, entity_type = label.partition("-")
    return prefix, entity_type


def is_valid_bio_label(label: str) -> bool:
    return BIO_LABEL.match(label) is not None


def invalid_bio_positions(labels: Sequence[str]) -> list[int]:
    """Positions of ``I-`` tags that do not continue an entity of the same type."""
    bad = []
    previous_type: str | None = None
    for i, label in enumerate(labels):
        prefix, entity_type = split_label(label)
        if prefix == "I" and previous_type != entity_type:
            bad.append(i)
        previous_type = entity_type
    return bad


def repair_bio(labels: Sequence[str]) -> tuple[list[str], int]:
    """Turn every stray ``I-X`` (after ``O`` or another type) into ``B-X``, as seqeval's default mode reads it.

    Returns the repaired labels and the number of repairs.
    """
    repaired = list(labels)
    positions = invalid_bio_positions(labels)
    for i in positions:
        repaired[i] = "B-" + split_label(labels[i])[1]
    return repaired, len(positions)


def rename_types(labels: Sequence[str], mapping: Mapping[str, str]) -> list[str]:
    out = []
    for label in labels:
        prefix, entity_type = split_label(label)
        if entity_type is not None and entity_type in mapping:
            label = f"{prefix}-{mapping[entity_type]}"
        out.append(label)
    return out


def bio_to_bioes(labels: Sequence[str]) -> list[str]:
    """Convert valid BIO to BIOES (repair the BIO first: a stray I- is taken as a start)."""
    out = []
    n = len(labels)
    for i, label in enumerate(labels):
        prefix, entity_type = split_label(label)
        if prefix == OUTSIDE:
            out.append(OUTSIDE)
            continue
        continues = i + 1 < n and labels[i + 1] == f"I-{entity_type}"
        if prefix == "B" or (prefix == "I" and (i == 0 or split_label(labels[i - 1])[1] != entity_type)):
            out.append(f"B-{entity_type}" if continues else f"S-{entity_type}")
        else:
            out.append(f"I-{entity_type}" if continues else f"E-{entity_type}")
    return out


def bioes_to_bio(labels: Sequence[str]) -> list[str]:
    """Convert BIOES to BIO. Ill-formed BIOES (as a model may predict) still gives well-formed BIO."""
    out = []
    previous_type: str | None = None
    open_entity = False
    for label in labels:
        prefix, entity_type = split_label(label)
        if prefix == OUTSIDE:
            out.append(OUTSIDE)
            open_entity = False
        elif prefix in ("B", "S"):
            out.append(f"B-{entity_type}")
            open_entity = prefix == "B"
        else:  # I or E: continues an open entity of the same type, else starts one
            if open_entity and previous_type == entity_type:
                out.append(f"I-{entity_type}")
            else:
                out.append(f"B-{entity_type}")
            open_entity = prefix == "I"
        previous_type = entity_type
    return out


def entity_types(label_lists: Sequence[Sequence[str]]) -> list[str]:
    """Sorted entity types used in the given label sequences."""
    types = {split_label(label)[1] for labels in label_lists for label in labels}
    types.discard(None)
    return sorted(types)  # type: ignore[arg-type]


def bioes_label_set(types: Sequence[str]) -> list[str]:
    """All BIOES labels for the given types, ``O`` first (a stable order used as the model's label map)."""
    return [OUTSIDE] + [f"{p}-{t}" for t in sorted(types) for p in "BIES"]


def bio_spans(labels: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities of a BIO sequence as (type, first token, last token + 1); a stray I- opens an entity."""
    spans: list[tuple[str, int, int]] = []
    start: int | None = None
    current: str | None = None
    for i, label in enumerate(list(labels) + [OUTSIDE]):
        prefix, entity_type = split_label(label)
        continues = prefix == "I" and entity_type == current and start is not None
        if not continues and start is not None:
            spans.append((current, start, i))  # type: ignore[arg-type]
            start, current = None, None
        if prefix in ("B", "I") and not continues:
            start, current = i, entity_type
    return spans
