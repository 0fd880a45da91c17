"""``dghc extract``: CLIP vectors of each post's image and of its detected regions -> cache/features.h5."""
from __future__ import annotations

import click

from ..pipeline.features.config import ExtractConfig
from .options import as_arguments, configured


@click.command("extract")
@configured(ExtractConfig)
def extract_command(config: ExtractConfig) -> None:
    """Encode each post's image and its detected regions with CLIP, into an HDF5 file.

    Reads the image ids of the CoNLL FILES, the images, and the boxes of the detect stage's file; writes
    per image the vector of the whole image, the vectors of its m region crops, their masks and the image's
    status. An interrupted run resumes where it stopped.

    With --engine ray, a Ray Data pipeline (a pool of CLIP actors) writes a folder: shard files plus an
    index.h5 that every reader opens as one features file; a rerun skips finished shards.
    """
    from ..pipeline.api.extract import extract  # torch: imported only when the stage runs

    result = extract(**as_arguments(config))
    click.echo(f"wrote {result.path}: {result.images} images ({result.present} present, {result.missing} missing, "
               f"{result.unreadable} unreadable), {result.regions} region crops (degenerate boxes left out: "
               f"{result.empty_boxes}); {result.dim}-dim {config.output} vectors of {config.model}"
               + (" (up to date, nothing recomputed)" if result.up_to_date else ""))
    if result.untrained:
        click.echo("note: the CLIP model is UNTRAINED (random weights): the image features carry no learned "
                   "visual meaning; use --model openai/clip-vit-base-patch32 (or a local copy) for real features")
