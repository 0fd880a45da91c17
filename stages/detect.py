"""``dghc detect``: the top m regions of each post's image -> cache/detections.h5 (``--show`` draws them)."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.core.errors import DghcError
from ..pipeline.detection.config import DEFAULT_OUT, DetectConfig
from .options import as_arguments, configured


@click.command("detect")
@configured(DetectConfig)
@click.option("--show", "show", default=None, metavar="ID",
              help="Draw the kept boxes of image ID into --out FILE.png instead of detecting.")
@click.option("--detections", type=click.Path(path_type=Path), default=None,
              help=f"With --show: the detections file to read (default {DEFAULT_OUT}).")
def detect_command(config: DetectConfig, show: str | None, detections: Path | None) -> None:
    """Find the top regions of each post's image in the CoNLL FILES -> cache/detections.h5.

    Two sources are merged by class-agnostic NMS: a generic detector and a text-prompted grounding detector
    prompted with phrases of the post. Each image ends present, missing or unreadable (with the reason); a
    summary of the counts is printed. An interrupted run resumes when rerun.

    With --engine ray, a Ray Data pipeline (a pool of detector actors) writes a folder: shard files plus an
    index.h5 that every reader opens as one detections file; a rerun skips finished shards.
    """
    if show is not None:
        _show(config, show, detections or DEFAULT_OUT)
        return
    from ..pipeline.api.detect import detect  # torch and ultralytics: imported only when the stage runs

    if not config.files:
        raise click.UsageError("give the CoNLL files to read (or a params file with detect: files: [...])")
    if config.out_file.suffix.lower() == ".png":
        raise click.UsageError(f"--out {config.out_file} looks like an image: without --show, --out is the HDF5 file")
    click.echo(detect(**as_arguments(config)).format())


def _show(config: DetectConfig, image_id: str, detections_file: Path) -> None:
    from ..pipeline.data.conll import check_image_id, image_path_for
    from ..pipeline.detection.draw import show_detections
    from ..pipeline.detection.run import collect_items
    from ..pipeline.detection.store import load_detections

    problem = check_image_id(image_id)
    if problem:
        raise DghcError(f"--show: {problem}")
    if config.out is None:
        raise click.UsageError("--show ID needs --out FILE.png")
    if config.images is not None:
        image_path = image_path_for(config.images, image_id)
    elif config.files:
        items = {item.image_id: item for item in collect_items(config.files, None, 1)}
        if image_id not in items:
            raise DghcError(f"--show: no post with id {image_id!r} in {', '.join(map(str, config.files))}")
        image_path = items[image_id].path
    else:
        raise click.UsageError("--show ID needs the CoNLL files or --images DIR to find the image")
    regions = show_detections(load_detections(detections_file), image_id, image_path, Path(config.out))
    click.echo(f"{config.out}: {len(regions)} region(s) of {image_id}")
    for region in regions:
        x1, y1, x2, y2 = region.box
        click.echo(f"  {region.slot + 1}. {region.source}: {region.class_name} {region.score:.3f} "
                   f"box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})")
