"""The report page: what each shown post needs, laid out by the Jinja2 template ``templates/report.html.j2``.

Python decides what to show (token classes, entity chips, gate shades, thumbnails as data URIs); the template
(with autoescape on: every string from the data is escaped) decides how. Everything is embedded (JPEG
thumbnails, inline CSS, no script), so the page is one file that can be mailed or attached to a CI run.
"""
from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from PIL import Image

from ..core.templates import template_environment
from ..data.conll import Post
from ..data.tags import bio_spans
from ..detection.draw import draw_regions
from ..detection.store import Region
from ..inference.tagging import PostPrediction
from .analysis import Effect, entity_errors

TYPE_COLOURS = {"PER": "#f4a261", "LOC": "#2a9d8f", "ORG": "#8ab17d", "MISC": "#b392ac"}
DEFAULT_COLOUR = "#cccccc"
THUMBNAIL = 320  # longest side of a thumbnail, pixels
JPEG_QUALITY = 80

EFFECT_TITLES = {
    Effect.HELPED: "The image helped (fewer entity errors than with the image masked)",
    Effect.HURT: "The image hurt (more entity errors than with the image masked)",
    Effect.SAME: "No difference in errors",
    Effect.TEXT_ONLY_MODEL: "Posts (text-only model: the image is not read)",
}
BADGES = {Effect.HELPED: "image helped", Effect.HURT: "image hurt", Effect.SAME: "image: no difference"}

_ENVIRONMENT = template_environment("dghc.pipeline.report")


@dataclass
class ReportItem:
    post: Post
    prediction: PostPrediction  # with the image
    text_only: PostPrediction | None = None  # the same model with the image masked (None: text-only model)
    effect: Effect = Effect.TEXT_ONLY_MODEL
    image: Image.Image | None = None
    image_status: str = "missing"
    image_reason: str = ""
    regions: list[Region] = field(default_factory=list)
    region_note: str = ""  # why no regions are drawn, when that is not obvious
    visual_slots: list[bool] | None = None  # the features file's mask (image, r1..rm); None: not read


@dataclass
class ReportSummary:
    title: str
    posts: int
    effects: dict[str, int]  # effect value -> number of posts (all posts, not only the shown ones)
    scores: dict[str, dict]  # run name -> entity_scores(...) (default mode)
    notes: list[str] = field(default_factory=list)
    relevance_mean: float | None = None


def css_name(entity_type: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", entity_type)


def anchor(effect_value: str) -> str:
    return effect_value.replace(" ", "-")


def data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def token_views(tokens: Sequence[str], gold: Sequence[str], predicted: Sequence[str]) -> list[dict[str, Any]]:
    """Per token: its classes (predicted entity ``pred ent-TYPE``, gold entity ``gold g-TYPE``; a predicted entity
    not in gold is ``fp``, a gold one not predicted ``fn``), a tooltip, and the type shown after an entity."""
    gold_spans, pred_spans = bio_spans(gold), bio_spans(predicted)
    gold_set, pred_set = set(gold_spans), set(pred_spans)
    gold_at = {i: span for span in gold_spans for i in range(span[1], span[2])}
    pred_at = {i: span for span in pred_spans for i in range(span[1], span[2])}
    views = []
    for i, token in enumerate(tokens):
        classes, titles, type_after = ["tok"], [], None
        if i in pred_at:
            span = pred_at[i]
            classes += ["pred", f"ent-{css_name(span[0])}"] + (["fp"] if span not in gold_set else [])
            titles.append(f"predicted {span[0]}")
            type_after = span[0] if i == span[2] - 1 else None
        if i in gold_at:
            span = gold_at[i]
            classes += ["gold", f"g-{css_name(span[0])}"]
            titles.append(f"gold {span[0]}")
            if span not in pred_set:
                classes.append("fn")
                titles.append("missed")
        views.append({"text": token, "classes": " ".join(classes), "title": ", ".join(titles),
                      "type_after": type_after})
    return views


def chip_views(tokens: Sequence[str], labels: Sequence[str], gold: Sequence[str] | None) -> list[dict[str, Any]]:
    """Entities of one run as chips; with ``gold``, a chip not in gold is marked wrong."""
    gold_set = set(bio_spans(gold)) if gold is not None else None
    return [{"text": " ".join(tokens[start:end]), "type": entity_type, "css": css_name(entity_type),
             "wrong": gold_set is not None and (entity_type, start, end) not in gold_set}
            for entity_type, start, end in bio_spans(labels)]


def item_view(item: ReportItem) -> dict[str, Any]:
    post, prediction = item.post, item.prediction
    badge = None
    if item.effect != Effect.TEXT_ONLY_MODEL:
        badge = BADGES[item.effect]
        if item.effect == Effect.SAME and item.text_only is not None and item.text_only.labels != prediction.labels:
            badge = "image changed the tags, not the error count"
    runs = [("gold", chip_views(post.tokens, post.labels, None)),
            ("with image" if item.text_only is not None else "predicted",
             chip_views(post.tokens, prediction.labels, post.labels))]
    if item.text_only is not None:
        runs.append(("image masked", chip_views(post.tokens, item.text_only.labels, post.labels)))
    picture = None
    if item.image is not None:
        picture = data_uri(draw_regions(item.image, item.regions, longest_side=THUMBNAIL, captions=False))
    gates = prediction.gates or None
    return {
        "id": post.post_id,
        "correct": entity_errors(post.labels, prediction.labels) == 0,
        "effect": item.effect.value,
        "effect_class": anchor(item.effect.value),
        "badge": badge,
        "badge_class": item.effect.value,
        "tokens": token_views(post.tokens, post.labels, prediction.labels),
        "runs": runs,
        "words_cut": prediction.words_cut,
        "picture": picture,
        "image_status": item.image_status,
        "image_reason": item.image_reason,
        "regions": item.regions,
        "region_note": item.region_note or "no region kept",
        "reads_image": item.effect != Effect.TEXT_ONLY_MODEL,
        "image_vector_absent": item.visual_slots is not None and not item.visual_slots[0],
        "relevance": prediction.relevance,
        "regions_read": None if item.visual_slots is None else (sum(item.visual_slots[1:]),
                                                                len(item.visual_slots) - 1),
        "gate_columns": ["image"] + [f"r{k}" for k in range(1, len(gates[0]))] if gates else [],
        "gates": gates or [],
    }


def render_report(items: Sequence[ReportItem], summary: ReportSummary) -> str:
    """The whole page as one string (no external resource of any kind)."""
    types = sorted(set(TYPE_COLOURS) | {span[0] for item in items
                                        for labels in (item.post.labels, item.prediction.labels,
                                                       item.text_only.labels if item.text_only else [])
                                        for span in bio_spans(labels)})
    groups: list[dict[str, Any]] = []
    for item in items:
        if not groups or groups[-1]["effect"] != item.effect:
            shown = sum(1 for other in items if other.effect == item.effect)
            groups.append({"effect": item.effect, "anchor": anchor(item.effect.value),
                           "title": EFFECT_TITLES[item.effect], "shown": shown,
                           "total": summary.effects.get(item.effect.value, shown), "items": []})
        groups[-1]["items"].append(item_view(item))
    per_type = sorted({t for scores in summary.scores.values() for t in scores["per_type"]})
    return _ENVIRONMENT.get_template("report.html.j2").render(
        summary=summary, groups=groups, per_type=per_type, anchor=anchor,
        types=[{"name": t, "css": css_name(t), "colour": TYPE_COLOURS.get(t, DEFAULT_COLOUR)} for t in types])
