"""``dghc report``: a small self-contained HTML page to see where the image helped or hurt a trained tagger.

Every post of the data is tagged twice by the same model: once as trained (with its image and regions) and
once with every visual slot masked out, which is exactly the model's text-only path (the prefix attends to
nothing; tests/test_model.py holds that to 1e-5). A post's *image effect* compares the two against gold:
``helped`` when the image run makes fewer entity errors (false positives + false negatives) than the
masked run, ``hurt`` when it makes more, ``same`` otherwise. The page shows summary counts and scores, then
a sample of posts: the helped and hurt ones first, then a seeded sample of the rest. Each post shows its
image thumbnail with the kept regions, the tokens with gold and predicted entities, the entities of both
runs, the relevance score and the gates per layer.

Everything is embedded (JPEG thumbnails as data URIs, inline CSS, no script), so the page is one file that
can be mailed or attached to a CI run.
"""
from __future__ import annotations

import base64
import html
import io
import random
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from pipeline.data.conll import Post
from pipeline.core.errors import DghcError
from pipeline.data.images import ImageStatus, load_image
from pipeline.training.inference import PostPrediction
from pipeline.data.tags import bio_spans


TYPE_COLOURS = {"PER": "#f4a261", "LOC": "#2a9d8f", "ORG": "#8ab17d", "MISC": "#b392ac"}
DEFAULT_COLOUR = "#cccccc"
REGION_RGB = (230, 57, 70)  # region boxes on the thumbnails (the test looks for this red)
THUMBNAIL = 320  # longest side of a thumbnail, pixels
JPEG_QUALITY = 80
DEFAULT_DETECTIONS = Path("cache/detections.h5")
DEFAULT_FEATURES = Path("cache/features.h5")


class Effect(str, Enum):
    """What the image did to a post's entities (compared with the same model with the image masked)."""

    HELPED = "helped"
    HURT = "hurt"
    SAME = "same"
    TEXT_ONLY_MODEL = "text-only model"  # the model never reads the image: nothing to compare


EFFECT_TITLES = {
    Effect.HELPED: "The image helped (fewer entity errors than with the image masked)",
    Effect.HURT: "The image hurt (more entity errors than with the image masked)",
    Effect.SAME: "No difference in errors",
    Effect.TEXT_ONLY_MODEL: "Posts (text-only model: the image is not read)",
}
BADGES = {Effect.HELPED: "image helped", Effect.HURT: "image hurt", Effect.SAME: "image: no difference"}


# ------------------------------------------------------------------------------------------- analysis


def entity_errors(gold: Sequence[str], predicted: Sequence[str]) -> int:
    """False positives plus false negatives, counted on exact (type, start, end) spans."""
    return len(set(bio_spans(gold)) ^ set(bio_spans(predicted)))


def image_effect(gold: Sequence[str], with_image: Sequence[str], text_only: Sequence[str] | None) -> Effect:
    if text_only is None:
        return Effect.TEXT_ONLY_MODEL
    image_errors, text_errors = entity_errors(gold, with_image), entity_errors(gold, text_only)
    if image_errors < text_errors:
        return Effect.HELPED
    if image_errors > text_errors:
        return Effect.HURT
    return Effect.SAME


def choose_samples(effects: Sequence[Effect], n: int, seed: int) -> list[int]:
    """Indices of at most ``n`` posts to show, in display order: helped, hurt, then the rest.

    Helped and hurt posts are taken first (alternately, from seeded shuffles, so both kinds show when there
    are more than ``n``); the remaining places go to a seeded sample of the other posts. Within a group posts
    keep their order in the data file, so the same seed gives the same page.
    """
    rng = random.Random(seed)
    groups: dict[Effect, list[int]] = {effect: [] for effect in Effect}
    for index, effect in enumerate(effects):
        groups[effect].append(index)
    helped, hurt = list(groups[Effect.HELPED]), list(groups[Effect.HURT])
    rng.shuffle(helped)
    rng.shuffle(hurt)
    chosen: list[int] = []
    while len(chosen) < n and (helped or hurt):
        for pool in (helped, hurt):
            if pool and len(chosen) < n:
                chosen.append(pool.pop(0))
    rest = groups[Effect.SAME] + groups[Effect.TEXT_ONLY_MODEL]
    rest.sort()
    chosen += sorted(random.Random(seed + 1).sample(rest, min(len(rest), n - len(chosen))))
    order = {effect: rank for rank, effect in enumerate(Effect)}
    return sorted(chosen, key=lambda i: (order[effects[i]], i))


class MaskedFeatures:
    """A feature store with every visual slot masked: the tagger then runs its text-only path."""

    def __init__(self, features) -> None:
        self.features, self.dim, self.m = features, features.dim, features.m

    def batch(self, image_ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        vectors, mask = self.features.batch(image_ids)
        return vectors, torch.zeros_like(mask)


# ------------------------------------------------------------------------------------------- rendering


@dataclass
class Region:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original image
    label: str
    score: float
    source: str = ""


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


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def image_with_regions(image: Image.Image, regions: Sequence[Region]) -> Image.Image:
    """A thumbnail (longest side <= THUMBNAIL) with the regions drawn and numbered 1..m (the prefix blocks)."""
    canvas = image.convert("RGB").copy()
    # small images are enlarged (at most twice) so that boxes and labels stay readable
    scale = min(THUMBNAIL / max(canvas.size), 2.0)
    if scale != 1:
        canvas = canvas.resize((max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale))),
                               Image.BILINEAR)
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    for number, region in enumerate(regions, start=1):
        x1, y1, x2, y2 = (v * scale for v in region.box)
        draw.rectangle([x1, y1, x2, y2], outline=REGION_RGB, width=2)
        tag = str(number)
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        draw.rectangle([x1, y1, x1 + right - left + 6, y1 + bottom - top + 6], fill=REGION_RGB)
        draw.text((x1 + 3 - left, y1 + 3 - top), tag, fill=(255, 255, 255), font=font)
    return canvas


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _css_name(entity_type: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", entity_type)


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def token_html(tokens: Sequence[str], gold: Sequence[str], predicted: Sequence[str]) -> str:
    """Tokens with predicted entities filled (class ``pred ent-TYPE``), gold ones underlined (``gold g-TYPE``);
    a predicted entity not in gold is ``fp`` (dashed red), a gold one not predicted is ``fn`` (wavy red)."""
    gold_spans, pred_spans = bio_spans(gold), bio_spans(predicted)
    gold_set, pred_set = set(gold_spans), set(pred_spans)
    gold_at = {i: span for span in gold_spans for i in range(span[1], span[2])}
    pred_at = {i: span for span in pred_spans for i in range(span[1], span[2])}
    parts = []
    for i, token in enumerate(tokens):
        classes, titles, suffix = ["tok"], [], ""
        if i in pred_at:
            span = pred_at[i]
            classes += ["pred", f"ent-{_css_name(span[0])}"]
            titles.append(f"predicted {span[0]}")
            if span not in gold_set:
                classes.append("fp")
            if i == span[2] - 1:
                suffix = f'<sup class="etype">{_esc(span[0])}</sup>'
        if i in gold_at:
            span = gold_at[i]
            classes += ["gold", f"g-{_css_name(span[0])}"]
            titles.append(f"gold {span[0]}")
            if span not in pred_set:
                classes.append("fn")
                titles.append("missed")
        title = f' title="{_esc(", ".join(titles))}"' if titles else ""
        parts.append(f'<span class="{" ".join(classes)}"{title}>{_esc(token)}{suffix}</span>')
    return " ".join(parts)


def _spans_html(tokens: Sequence[str], labels: Sequence[str], gold: Sequence[str] | None) -> str:
    """Entities of one run as chips; with ``gold``, a chip not in gold is marked wrong."""
    gold_set = set(bio_spans(gold)) if gold is not None else None
    chips = []
    for entity_type, start, end in bio_spans(labels):
        wrong = gold_set is not None and (entity_type, start, end) not in gold_set
        chips.append(f'<span class="chip ent-{_css_name(entity_type)}{" wrong" if wrong else ""}">'
                     f'{_esc(" ".join(tokens[start:end]))} <b>{_esc(entity_type)}</b>'
                     f'{" ✗" if wrong else ""}</span>')
    return " ".join(chips) if chips else '<span class="none">none</span>'


def _gates_html(gates: list[list[float]] | None) -> str:
    if not gates:
        return ""
    names = ["image"] + [f"r{k}" for k in range(1, len(gates[0]))]
    header = "".join(f"<th>{name}</th>" for name in names)
    rows = "".join(
        f"<tr><th>L{layer + 1}</th>" + "".join(
            f'<td style="background:rgba(38,70,83,{value:.2f});color:{"#fff" if value > 0.5 else "#222"}">'
            f"{value:.2f}</td>" for value in row) + "</tr>"
        for layer, row in enumerate(gates))
    return f'<table class="gates" title="gate of each visual block per encoder layer"><tr><th></th>{header}</tr>{rows}</table>'


def _picture_html(item: ReportItem) -> str:
    post_id = _esc(item.post.post_id)
    if item.image is None:
        reason = f"<small>{_esc(item.image_reason)}</small>" if item.image_reason else ""
        return f'<div class="noimage"><span>no image: {_esc(item.image_status)}</span>{reason}</div>'
    picture = f'<img src="{_data_uri(image_with_regions(item.image, item.regions))}" alt="image of {post_id}">'
    if item.regions:
        listed = "".join(f"<li>{_esc(region.label or '?')} {region.score:.2f}"
                         f"{' (' + _esc(region.source) + ')' if region.source else ''}</li>"
                         for region in item.regions)
        picture += f'<ol class="regions">{listed}</ol>'
    else:
        picture += f'<p class="note">{_esc(item.region_note or "no region kept")}</p>'
    return picture


def _visual_html(item: ReportItem) -> str:
    """Relevance score and gates, or why the model read no image for this post."""
    prediction = item.prediction
    if item.effect == Effect.TEXT_ONLY_MODEL:
        return ""
    if item.visual_slots is not None and not item.visual_slots[0]:
        return '<p class="note">No image vector in the features file: the model read the text alone.</p>'
    parts = []
    if prediction.relevance is not None:
        parts.append(f'<div class="rel">relevance s <meter min="0" max="1" value="{prediction.relevance:.3f}">'
                     f"</meter> {prediction.relevance:.3f}</div>")
    if item.visual_slots is not None:
        regions = sum(item.visual_slots[1:])
        parts.append(f'<div class="note">visual blocks read: image + {regions} of {len(item.visual_slots) - 1} '
                     "regions</div>")
    parts.append(_gates_html(prediction.gates))
    return "".join(parts)


def item_html(item: ReportItem) -> str:
    post, prediction = item.post, item.prediction
    correct = entity_errors(post.labels, prediction.labels) == 0
    badge = ""
    if item.effect != Effect.TEXT_ONLY_MODEL:
        text = BADGES[item.effect]
        if item.effect == Effect.SAME and item.text_only is not None and item.text_only.labels != prediction.labels:
            text = "image changed the tags, not the error count"
        badge = f'<span class="badge {item.effect.value}">{_esc(text)}</span>'
    rows = [("gold", _spans_html(post.tokens, post.labels, None)),
            ("with image" if item.text_only is not None else "predicted",
             _spans_html(post.tokens, prediction.labels, post.labels))]
    if item.text_only is not None:
        rows.append(("image masked", _spans_html(post.tokens, item.text_only.labels, post.labels)))
    entities = "".join(f"<tr><th>{name}</th><td>{chips}</td></tr>" for name, chips in rows)
    cut = (f'<p class="note">{prediction.words_cut} words did not fit the encoder (tagged O)</p>'
           if prediction.words_cut else "")
    return (f'<section class="post {"ok" if correct else "err"} {item.effect.value.replace(" ", "-")}" '
            f'data-post="{_esc(post.post_id)}" data-effect="{_esc(item.effect.value)}">'
            f'<div class="pic">{_picture_html(item)}</div>'
            f'<div class="txt"><h3>{_esc(post.post_id)} {badge} '
            f'<span class="{"okmark" if correct else "errmark"}">{"✓ correct" if correct else "✗ errors"}</span></h3>'
            f'<p class="tokens">{token_html(post.tokens, post.labels, prediction.labels)}</p>'
            f'<table class="ents">{entities}</table>{cut}{_visual_html(item)}</div></section>')


STYLE = """
body{font-family:system-ui,sans-serif;margin:20px;background:#f6f6f4;color:#222;font-size:14px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:22px 0 6px}h3{font-size:15px;margin:0 0 6px}
.summary{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
.summary table,.ents{border-collapse:collapse}.summary td,.summary th{border:1px solid #ccc;padding:3px 8px;text-align:right}
.summary th:first-child{text-align:left}.counts a{text-decoration:none}.counts span{display:inline-block;padding:4px 10px;margin:2px;border-radius:4px;color:#fff;font-weight:bold}
.notes{color:#8a4b00;margin:6px 0}
.post{display:flex;gap:16px;background:#fff;border:1px solid #ddd;border-left:6px solid #2a9d8f;margin:10px 0;padding:10px}
.post.err{border-left-color:#e63946}.pic{width:320px;flex:none}.pic img{max-width:320px;display:block}
.noimage{width:320px;height:120px;background:#bbb;display:flex;flex-direction:column;align-items:center;justify-content:center;color:#333}
.regions{margin:4px 0 0;padding-left:20px;font-size:12px;color:#a4161a}.note{font-size:12px;color:#666;margin:4px 0}
.tokens{font-size:16px;line-height:2.1;margin:4px 0}.tok{padding:2px 2px;border-radius:3px}
.pred{background:#ccc}.fp{outline:2px dashed #e63946}.gold{border-bottom:3px solid #555}
.fn{text-decoration:underline wavy #e63946}.etype{font-size:9px;color:#333;margin-left:2px}
.ents th{text-align:left;font-weight:normal;color:#666;padding:2px 8px 2px 0;white-space:nowrap}.ents td{padding:2px 0}
.chip{display:inline-block;padding:1px 6px;margin:1px;border-radius:10px;background:#ccc}
.chip.wrong{outline:2px dashed #e63946}.none{color:#999}
.badge{font-size:12px;padding:2px 8px;border-radius:10px;color:#fff;vertical-align:middle}
.badge.helped,.counts .helped{background:#2a9d8f}.badge.hurt,.counts .hurt{background:#e63946}
.badge.same,.counts .same{background:#888}.counts .text-only-model{background:#888}
.okmark{color:#2a9d8f;font-size:13px}.errmark{color:#e63946;font-size:13px}
.rel meter{width:140px;vertical-align:middle}
.gates{border-collapse:collapse;font-size:11px;margin-top:6px}.gates td,.gates th{border:1px solid #ccc;padding:1px 5px}
.legend span{padding:2px 6px;margin-right:6px;border-radius:3px}
"""


def _type_css(types: Sequence[str]) -> str:
    rules = []
    for entity_type in types:
        colour = TYPE_COLOURS.get(entity_type, DEFAULT_COLOUR)
        name = _css_name(entity_type)
        rules.append(f".ent-{name}{{background:{colour}}}.g-{name}{{border-bottom-color:{colour}}}")
    return "".join(rules)


def _summary_html(summary: ReportSummary, types: Sequence[str]) -> str:
    runs = list(summary.scores)
    per_type = sorted({t for run in runs for t in summary.scores[run]["per_type"]})
    header = "<tr><th>run</th><th>P</th><th>R</th><th>F1</th>" + "".join(
        f"<th>F1 {_esc(t)}</th>" for t in per_type) + "</tr>"
    rows = ""
    for run in runs:
        scores = summary.scores[run]
        overall = scores["overall"]
        rows += (f"<tr><th>{_esc(run)}</th><td>{100 * overall['precision']:.1f}</td>"
                 f"<td>{100 * overall['recall']:.1f}</td><td>{100 * overall['f1']:.1f}</td>" + "".join(
                     f"<td>{100 * scores['per_type'][t]['f1']:.1f}</td>" if t in scores["per_type"] else "<td>-</td>"
                     for t in per_type) + "</tr>")
    counts = "".join(f'<a href="#{_esc(name.replace(" ", "-"))}"><span class="{_esc(name.replace(" ", "-"))}">'
                     f"{_esc(name)}: {count}</span></a>" for name, count in summary.effects.items())
    relevance = (f"<p>mean relevance s (posts with an image): {summary.relevance_mean:.3f}</p>"
                 if summary.relevance_mean is not None else "")
    notes = "".join(f'<p class="notes">{_esc(note)}</p>' for note in summary.notes)
    legend = "".join(f'<span class="ent-{_css_name(t)}">{_esc(t)}</span>' for t in types)
    return (f'<div class="summary"><div><p>{summary.posts} posts; image effect per post:</p>'
            f'<p class="counts">{counts}</p>{relevance}</div>'
            f'<div><table>{header}{rows}</table><p class="note">entity-level scores in %, seqeval default mode '
            f"(as conlleval), over all posts of the file</p></div></div>{notes}"
            f'<p class="legend">Predicted entities are filled with their type colour (dashed red: not in gold); '
            f"gold entities are underlined (wavy red: missed). Red boxes on the images are the kept regions, "
            f"numbered as the visual blocks r1..r3 of the gates. {legend}</p>")


def render_report(items: Sequence[ReportItem], summary: ReportSummary) -> str:
    """The whole page as one string (no external resource of any kind)."""
    types = sorted(set(TYPE_COLOURS) | {span[0] for item in items
                                        for labels in (item.post.labels, item.prediction.labels,
                                                       item.text_only.labels if item.text_only else [])
                                        for span in bio_spans(labels)})
    body, current = [], None
    for item in items:
        if item.effect != current:
            current = item.effect
            shown = sum(1 for other in items if other.effect == current)
            total = summary.effects.get(current.value, shown)
            body.append(f'<h2 id="{current.value.replace(" ", "-")}">{_esc(EFFECT_TITLES[current])}: '
                        f"{shown} of {total} shown</h2>")
        body.append(item_html(item))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(summary.title)}</title>"
            f"<style>{STYLE}{_type_css(types)}</style></head><body><h1>{_esc(summary.title)}</h1>"
            f"{_summary_html(summary, types)}{''.join(body)}</body></html>\n")


# ------------------------------------------------------------------------------------------- the stage


@dataclass
class ReportConfig:
    model: Path  # checkpoint folder
    data: Path  # CoNLL file
    out: Path  # folder; the page is out/index.html
    features: Path | None = DEFAULT_FEATURES  # needed by models that use the image
    detections: Path | None = None  # None: cache/detections.h5 when it exists, else no regions
    images: Path | None = None  # None: images/ beside the data file
    samples: int = 40
    seed: int = 0
    batch_size: int = 32
    device: str = "cpu"
    merge_other: bool = True  # read Twitter-2015's OTHER as MISC, as train and evaluate do
    progress: bool = True


@dataclass
class ReportResult:
    path: Path
    summary: ReportSummary
    shown: list[str]  # post ids in page order


def _regions_for(post_id: str, detections, image: Image.Image | None) -> tuple[list[Region], str]:
    if detections is None:
        return [], "no detections file: regions not shown"
    if post_id not in detections.index:
        return [], "not in the detections file: regions not shown"
    row = detections.index[post_id]
    width, height = (int(v) for v in detections.image_size[row])
    if image is not None and (width, height) != (0, 0) and (width, height) != image.size:
        return [], (f"the detections were made on a {width}x{height} image, this one is "
                    f"{image.width}x{image.height}: rerun `dghc detect`")
    regions = [Region(r.box, r.class_name, r.score, r.source) for r in detections.regions(post_id)]
    return regions, ""


def build_report(config: ReportConfig) -> ReportResult:
    """Tag DATA with and without the image, choose the posts to show, write OUT/index.html atomically."""
    from pipeline.training.checkpoint import load_checkpoint
    from pipeline.data.conll import read_conll
    from pipeline.detection.store import load_detections
    from pipeline.training.evaluation import evaluate
    from pipeline.training.visual_features import open_for_model
    from pipeline.artifacts.atomic import write_text_atomically
    from pipeline.data.tags import OTHER_AS_MISC

    if config.samples < 1:
        raise DghcError(f"--samples must be at least 1 (got {config.samples})")
    if Path(config.out).exists() and not Path(config.out).is_dir():
        raise DghcError(f"--out {config.out} is a file: give a folder (the page is written as FOLDER/index.html)")
    checkpoint = load_checkpoint(config.model)
    posts, _ = read_conll(config.data, config.images, type_map=OTHER_AS_MISC if config.merge_other else None)
    if not posts:
        raise DghcError(f"{config.data}: no posts to report on")
    features = open_for_model(checkpoint, config.features)
    detections_path = config.detections
    notes: list[str] = []
    if detections_path is None and DEFAULT_DETECTIONS.is_file():
        detections_path = DEFAULT_DETECTIONS
    detections = load_detections(detections_path) if detections_path is not None else None
    if detections is None:
        notes.append("No detections file was given (and cache/detections.h5 does not exist): regions are not drawn.")
    if features is not None and getattr(features, "untrained", False):
        notes.append("The features come from an UNTRAINED CLIP (random weights): the image vectors are a fixed "
                     "random function of the pixels, not learned visual features.")

    with_image = evaluate(checkpoint, posts, features, config.batch_size, config.device, config.progress,
                          allow_missing_features=True)
    scores = {"with image" if features is not None else "text-only model": with_image.metrics["default"]}
    text_only: list[PostPrediction | None] = [None] * len(posts)
    if features is not None:
        masked = evaluate(checkpoint, posts, MaskedFeatures(features), config.batch_size, config.device,
                          config.progress, allow_missing_features=True)
        text_only = list(masked.predictions)
        scores["image masked (text-only path)"] = masked.metrics["default"]
    effects = [image_effect(post.labels, prediction.labels, alone.labels if alone else None)
               for post, prediction, alone in zip(posts, with_image.predictions, text_only)]
    if features is not None:
        counts = {effect.value: effects.count(effect) for effect in (Effect.HELPED, Effect.HURT, Effect.SAME)}
    else:
        counts = {Effect.TEXT_ONLY_MODEL.value: len(posts)}

    # Which visual slots the model read per post (image, r1..rm): a post without an image vector gets a
    # relevance score from a zero vector, which means nothing and is left out of the mean.
    slots: list[list[bool]] | None = None
    relevance_mean = None
    if features is not None:
        slots = features.batch([post.post_id for post in posts])[1].tolist()
        read = [p.relevance for p, s in zip(with_image.predictions, slots) if s[0] and p.relevance is not None]
        relevance_mean = sum(read) / len(read) if read else None

    chosen = choose_samples(effects, config.samples, config.seed)
    items = []
    for index in chosen:
        post = posts[index]
        loaded = load_image(post.image_path)
        regions, note = _regions_for(post.post_id, detections, loaded.image)
        items.append(ReportItem(post, with_image.predictions[index], text_only[index], effects[index],
                                image=loaded.image, image_status=ImageStatus(loaded.status).label,
                                image_reason=loaded.reason, regions=regions, region_note=note,
                                visual_slots=slots[index] if slots is not None else None))
    statuses = [item.image_status for item in items]
    if any(status != ImageStatus.PRESENT.label for status in statuses):
        folder = config.images if config.images is not None else Path(config.data).parent / "images"
        counts_text = ", ".join(f"{statuses.count(s.label)} {s.label}" for s in ImageStatus if statuses.count(s.label))
        notes.append(f"Images of the shown posts (looked for in {folder}): {counts_text}.")
    summary = ReportSummary(title=f"dghc report: {Path(config.model).name} on {Path(config.data).name}",
                            posts=len(posts), effects=counts, scores=scores, notes=notes,
                            relevance_mean=relevance_mean)
    page = render_report(items, summary)
    out = Path(config.out) / "index.html"
    write_text_atomically(out, page)
    return ReportResult(out, summary, [posts[i].post_id for i in chosen])
