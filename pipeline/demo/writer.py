"""Writing the demo set: ``OUT/{train,valid,test}.txt``, ``OUT/images/<id>.jpg`` and ``OUT/demo.json``."""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..artifacts.atomic import write_bytes_atomically, write_text_atomically
from ..core.console import points
from ..data.conll import IMAGE_SUFFIX, format_conll
from .config import DemoConfig
from .oracle import text_only_ceiling
from .painter import encode_jpeg, render_image
from .posts import DemoPost, derived_seed, generate_posts

MANIFEST_NAME = "demo.json"


@dataclass
class SplitSummary:
    posts: int
    tokens: int
    entities: int
    entities_per_type: dict[str, int]
    images: int
    image_dependent_entities: int
    visual_classes: dict[str, int]


@dataclass
class DemoSummary:
    out: Path
    config: DemoConfig
    splits: dict[str, SplitSummary]
    text_only_ceiling: dict[str, dict]
    bytes_written: int

    def lines(self) -> list[str]:
        out = [f"demo data written to {self.out} (seed {self.config.seed}, {self.bytes_written / 1e6:.1f} MB)"]
        for split, s in self.splits.items():
            per_type = ", ".join(f"{t} {n}" for t, n in sorted(s.entities_per_type.items()))
            out.append(f"  {split:<5}  {s.posts} posts, {s.images} images, {s.entities} entities ({per_type}), "
                       f"{s.image_dependent_entities} image-dependent")
        for split, c in self.text_only_ceiling.items():
            out.append(f"  best F1 of a text-only model on {split}: {points(c['f1'])} "
                       f"(P {points(c['precision'])}, R {points(c['recall'])}; seqeval {c['mode']} mode)")
        return out


def summarize(posts: Sequence[DemoPost]) -> SplitSummary:
    per_type = Counter(span.entity_type for p in posts for span in p.entities)
    classes = Counter(p.visual_class for p in posts if p.visual_class is not None)
    return SplitSummary(
        posts=len(posts),
        tokens=sum(len(p.post.tokens) for p in posts),
        entities=sum(per_type.values()),
        entities_per_type=dict(sorted(per_type.items())),
        images=sum(p.visual_class is not None for p in posts),
        image_dependent_entities=sum(len(p.image_dependent) for p in posts),
        visual_classes=dict(sorted(classes.items())),
    )


def manifest(config: DemoConfig, splits: dict[str, list[DemoPost]], ceiling: dict[str, dict]) -> dict:
    """What each post shows and which entities only its image types (for analysis; not read by the pipeline)."""
    return {
        "config": config.settings(),
        "text_only_ceiling": ceiling,
        "splits": {split: asdict(summarize(posts)) for split, posts in splits.items()},
        "posts": {
            split: [{"id": p.post.post_id, "visual_class": p.visual_class,
                     "entities": [asdict(e) for e in p.entities]} for p in posts]
            for split, posts in splits.items()
        },
    }


_DEMO_IMAGE = re.compile(r"^(train|valid|test)-\d+\.jpg$")


def write_demo_data(config: DemoConfig = DemoConfig()) -> DemoSummary:
    """Write ``OUT/{train,valid,test}.txt``, ``OUT/images/<id>.jpg`` and ``OUT/demo.json``.

    Images of an earlier run that are not part of this set (another seed or size) are removed, so the folder
    holds exactly this set; other files are left alone.
    """
    out = Path(config.out)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    splits = generate_posts(config)
    wanted: set[str] = set()
    written = 0
    for split, posts in splits.items():
        for index, demo_post in enumerate(posts):
            if demo_post.visual_class is None:
                continue
            name = f"{demo_post.post.post_id}{IMAGE_SUFFIX}"
            image = render_image(demo_post.visual_class, derived_seed(config.seed, split, index, "image"),
                                 config.image_size)
            data = encode_jpeg(image, config.jpeg_quality)
            target = images_dir / name
            if not (target.is_file() and target.read_bytes() == data):
                write_bytes_atomically(target, data)
            wanted.add(name)
            written += len(data)
    for stale in sorted(images_dir.iterdir()):
        if _DEMO_IMAGE.match(stale.name) and stale.name not in wanted:
            stale.unlink()
    for split, posts in splits.items():
        text = format_conll([p.post for p in posts])
        write_text_atomically(out / f"{split}.txt", text)
        written += len(text.encode("utf-8"))
    ceiling = text_only_ceiling(splits)
    manifest_text = json.dumps(manifest(config, splits, ceiling), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_text_atomically(out / MANIFEST_NAME, manifest_text)
    written += len(manifest_text.encode("utf-8"))
    return DemoSummary(out=out, config=config, splits={s: summarize(p) for s, p in splits.items()},
                       text_only_ceiling=ceiling, bytes_written=written)

