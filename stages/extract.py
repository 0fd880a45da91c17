"""``dghc extract``: CLIP vectors of each post's image and of its detected regions -> cache/features.h5."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stages.params import apply_params

UNTRAINED_NAME = "untrained-clip-small"  # pipeline.features.clip_encoder.UNTRAINED_NAME (not imported: torch)


@click.command("extract")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--data", "data", multiple=True, type=click.Path(path_type=Path),
              help="A CoNLL file whose posts' images to encode (repeatable; same as giving FILES).")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Folder of <IMGID>.jpg images (default: images/ beside each CoNLL file).")
@click.option("--detections", type=click.Path(path_type=Path), default=Path("cache/detections.h5"),
              show_default=True, help="The detect stage's file (boxes of the regions to crop).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("cache/features.h5"), show_default=True)
@click.option("--model", default=UNTRAINED_NAME, show_default=True,
              help=f"CLIP vision model: hub name (openai/clip-vit-base-patch32), a local folder, or "
                   f"{UNTRAINED_NAME} (UNTRAINED: random weights, the only one available offline).")
@click.option("--output", type=click.Choice(["pooled", "projected"]), default="projected", show_default=True,
              help="Cache the pooled CLS vector (hidden size) or its projection (projection size).")
@click.option("--dtype", type=click.Choice(["float16", "float32"]), default="float16", show_default=True,
              help="Stored precision of the vectors.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per batch (each with its region crops).")
@click.option("--num-workers", type=click.IntRange(min=0), default=None,
              help="Processes that decode and preprocess images; 0: the main process, on a pool of threads between "
                   "two forwards. Default: 0 on the CPU (workers would compete with the forward for the cores), "
                   "up to 4 with a GPU.")
@click.option("--crop-padding", type=click.FloatRange(min=0.0), default=0.0, show_default=True,
              help="Context added around each box, as a fraction of its width and height on each side.")
@click.option("--min-crop-size", type=click.IntRange(min=1), default=2, show_default=True,
              help="Boxes narrower or lower than this many pixels (after clamping) leave their slot empty.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--params", "params_file", type=click.Path(path_type=Path), default=None,
              help="params.yaml whose 'extract' section gives defaults (options given here win).")
@click.option("--force", is_flag=True, help="Recompute even when the output is up to date.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def extract_command(ctx: click.Context, **_: Any) -> None:
    """Encode each post's image and its detected regions with CLIP, into an HDF5 file.

    Reads the image ids of the CoNLL FILES, the images, and the boxes of the detect stage's file; writes
    per image the vector of the whole image, the vectors of its m region crops, their masks and the image's
    status. An interrupted run resumes where it stopped.
    """
    apply_params(ctx, ctx.params["params_file"], "extract")
    options = ctx.params
    from pipeline.features.extract import ExtractConfig, extract_features

    config = ExtractConfig(
        data=[*options["files"], *options["data"]], images=options["images"], detections=options["detections"],
        out=options["out"], model=options["model"], output=options["output"], dtype=options["dtype"],
        batch_size=options["batch_size"], num_workers=options["num_workers"], crop_padding=options["crop_padding"],
        min_crop_size=options["min_crop_size"], device=options["device"], force=options["force"])
    result = extract_features(config, progress=not options["quiet"])
    click.echo(f"wrote {result.path}: {result.images} images ({result.present} present, {result.missing} missing, "
               f"{result.unreadable} unreadable), {result.regions} region crops (degenerate boxes left out: "
               f"{result.empty_boxes}); {result.dim}-dim {config.output} vectors of {config.model}"
               + (" (up to date, nothing recomputed)" if result.up_to_date else ""))
    if result.untrained:
        click.echo("note: the CLIP model is UNTRAINED (random weights): the image features carry no learned "
                   "visual meaning; use --model openai/clip-vit-base-patch32 (or a local copy) for real features")
