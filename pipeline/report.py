"""A small self-contained HTML page to look at predictions: image with its regions, gold and predicted
entities, the relevance score and the gates per layer. Images are embedded, so the page is one file.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from typing import Sequence

from PIL import Image, ImageDraw

from pipeline.conll import Post
from pipeline.inference import PostPrediction
from pipeline.tags import bio_spans

TYPE_COLOURS = {"PER": "#f4a261", "LOC": "#2a9d8f", "ORG": "#8ab17d", "MISC": "#b392ac"}
DEFAULT_COLOUR = "#cccccc"
THUMBNAIL = 320


@dataclass
class Region:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original image
    label: str
    score: float


@dataclass
class ReportItem:
    post: Post
    prediction: PostPrediction
    image: Image.Image | None = None
    image_status: str = "missing"
    regions: list[Region] = field(default_factory=list)


def image_with_regions(image: Image.Image, regions: Sequence[Region]) -> Image.Image:
    """A thumbnail with the regions drawn and numbered (1..m, the order of the prefix blocks)."""
    canvas = image.convert("RGB").copy()
    scale = THUMBNAIL / max(canvas.size)
    if scale < 1:
        canvas = canvas.resize((max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale))))
    else:
        scale = 1.0
    draw = ImageDraw.Draw(canvas)
    for number, region in enumerate(regions, start=1):
        x1, y1, x2, y2 = (v * scale for v in region.box)
        draw.rectangle([x1, y1, x2, y2], outline=(230, 57, 70), width=2)
        draw.text((x1 + 3, y1 + 2), f"{number} {region.label} {region.score:.2f}", fill=(230, 57, 70))
    return canvas


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _token_html(tokens: Sequence[str], gold: Sequence[str], predicted: Sequence[str]) -> str:
    gold_at = {i: (t, s, e) for t, s, e in bio_spans(gold) for i in range(s, e)}
    pred_at = {i: (t, s, e) for t, s, e in bio_spans(predicted) for i in range(s, e)}
    gold_set, pred_set = set(bio_spans(gold)), set(bio_spans(predicted))
    parts = []
    for i, token in enumerate(tokens):
        style, title = [], []
        if i in pred_at:
            span = pred_at[i]
            style.append(f"background:{TYPE_COLOURS.get(span[0], DEFAULT_COLOUR)}")
            title.append(f"predicted {span[0]}")
            if span not in gold_set:
                style.append("outline:2px dashed #e63946")
        if i in gold_at:
            span = gold_at[i]
            style.append(f"border-bottom:3px solid {TYPE_COLOURS.get(span[0], DEFAULT_COLOUR)}")
            title.append(f"gold {span[0]}")
            if span not in pred_set:
                title.append("missed")
        attributes = f' style="{";".join(style)}" title="{html.escape(", ".join(title))}"' if style else ""
        parts.append(f'<span class="tok"{attributes}>{html.escape(token)}</span>')
    return " ".join(parts)


def _gates_html(gates: list[list[float]] | None) -> str:
    if not gates:
        return ""
    header = "".join(f"<th>{name}</th>" for name in ["image", "r1", "r2", "r3"][: len(gates[0])])
    rows = "".join(
        f"<tr><th>L{layer + 1}</th>" + "".join(
            f'<td style="background:rgba(38,70,83,{value:.2f});color:{"#fff" if value > 0.5 else "#000"}">'
            f"{value:.2f}</td>" for value in row) + "</tr>"
        for layer, row in enumerate(gates))
    return f'<table class="gates"><tr><th></th>{header}</tr>{rows}</table>'


def _item_html(item: ReportItem) -> str:
    post, prediction = item.post, item.prediction
    if item.image is not None:
        picture = f'<img src="{_data_uri(image_with_regions(item.image, item.regions))}" alt="image of {html.escape(post.post_id)}">'
    else:
        picture = f'<div class="noimage">no image ({html.escape(item.image_status)})</div>'
    correct = set(bio_spans(post.labels)) == set(bio_spans(prediction.labels))
    relevance = "" if prediction.relevance is None else (
        f'<div class="rel">relevance <meter min="0" max="1" value="{prediction.relevance:.3f}"></meter> '
        f"{prediction.relevance:.3f}</div>")
    return (f'<section class="post {"ok" if correct else "err"}"><div class="pic">{picture}</div>'
            f'<div class="txt"><h3>{html.escape(post.post_id)} {"✓" if correct else "✗"}</h3>'
            f'<p>{_token_html(post.tokens, post.labels, prediction.labels)}</p>{relevance}'
            f"{_gates_html(prediction.gates)}</div></section>")


STYLE = """
body{font-family:sans-serif;margin:20px;background:#fafafa;color:#222}
.post{display:flex;gap:16px;background:#fff;border:1px solid #ddd;border-left:6px solid #2a9d8f;margin:10px 0;padding:10px}
.post.err{border-left-color:#e63946}.pic{width:320px;flex:none}.pic img{max-width:320px}
.noimage{width:320px;height:120px;background:#eee;display:flex;align-items:center;justify-content:center;color:#777}
.tok{padding:1px 2px;line-height:2}.gates{border-collapse:collapse;font-size:11px;margin-top:6px}
.gates td,.gates th{border:1px solid #ccc;padding:1px 4px}.legend span{padding:2px 6px;margin-right:6px}
"""


def render_report(items: Sequence[ReportItem], title: str, summary: dict | None = None) -> str:
    legend = "".join(f'<span style="background:{c}">{t}</span>' for t, c in TYPE_COLOURS.items())
    summary_html = ""
    if summary:
        summary_html = "<ul>" + "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>"
                                        for k, v in summary.items()) + "</ul>"
    body = "".join(_item_html(item) for item in items)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{summary_html}"
            f'<p class="legend">Predicted entities are filled, gold entities underlined, wrong predictions dashed. '
            f"{legend}</p>{body}</body></html>\n")
