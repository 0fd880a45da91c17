"""``dghc data ...``: look at CoNLL files before training on them."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.data.conll import read_conll
from ..pipeline.data.stats import DatasetStats, compute_stats


@click.group("data")
def data_group() -> None:
    """Inspect data files."""


@data_group.command("stats")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--images", "images_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of <IMGID>.jpg images (default: images/ beside each file).")
@click.option("--keep-other", is_flag=True, help="Keep OTHER as its own type (default: count it as MISC).")
def stats_command(files: tuple[Path, ...], images_dir: Path | None, keep_other: bool) -> None:
    """Print posts, tokens, entities per type, BIO repairs and images present for each FILE.

    Entities are counted by their B- tags as written in the file; stray I- tags (an I- after O or after
    another type) are counted as BIO repairs, each of which would open one more entity.
    """
    for path in files:
        posts, _ = read_conll(path, images_dir, invalid_bio="keep", type_map=None)
        stats = compute_stats(posts, merge_other=not keep_other)
        click.echo(format_stats(path, stats))


def format_stats(path: Path, stats: DatasetStats) -> str:
    lines = [
        f"{path}",
        f"  posts:              {stats.posts}",
        f"  tokens:             {stats.tokens}",
        f"  entities (B- tags): {stats.entities}",
    ]
    for entity_type, count in sorted(stats.entities_per_type.items()):
        lines.append(f"    {entity_type:<16} {count}")
    lines.append(f"  BIO repairs:        {stats.bio_repairs} (entities after repair: {stats.entities + stats.bio_repairs})")
    lines.append(f"  images present:     {stats.images_present} of {stats.posts} posts")
    return "\n".join(lines)
