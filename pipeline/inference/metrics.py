"""Entity-level precision, recall and F1 with seqeval, as plain dicts.

Two modes, and every result says which one made it:
- ``default``: conlleval's reading (a stray ``I-X`` opens an entity);
- ``strict``: IOB2 entities only (a stray ``I-X`` is no entity).
"""
from __future__ import annotations

from typing import Literal, Sequence

from seqeval.metrics import classification_report
from seqeval.scheme import IOB2

Mode = Literal["default", "strict"]
MODES: tuple[Mode, ...] = ("default", "strict")


def _scores(row: dict) -> dict:
    return {
        "precision": float(row["precision"]),
        "recall": float(row["recall"]),
        "f1": float(row["f1-score"]),
        "support": int(row["support"]),
    }


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], mode: Mode = "default") -> dict:
    """Overall (micro) and per-type scores of BIO label sequences.

    Returns ``{"mode": mode, "overall": {precision, recall, f1, support}, "per_type": {TYPE: {...}}}``.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sequences but {len(predicted)} predicted")
    for i, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold labels but {len(p)} predicted")
    gold_lists = [list(g) for g in gold]
    pred_lists = [list(p) for p in predicted]
    if mode == "strict":
        report = classification_report(gold_lists, pred_lists, output_dict=True, zero_division=0,
                                       mode="strict", scheme=IOB2)
    elif mode == "default":
        report = classification_report(gold_lists, pred_lists, output_dict=True, zero_division=0)
    else:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    overall = _scores(report.pop("micro avg")) if "micro avg" in report else {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    per_type = {name: _scores(row) for name, row in report.items() if not name.endswith(" avg")}
    return {"mode": mode, "overall": overall, "per_type": per_type}


def all_modes(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, dict]:
    """Scores in both modes: ``{"default": {...}, "strict": {...}}``."""
    return {mode: entity_scores(gold, predicted, mode) for mode in MODES}
