"""``dghc demo-data OUT``: write the synthetic multimodal demo set the pipeline runs on by default."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stages.params import apply_params

PARAMS_SECTION = "demo_data"
DEFAULT_OUT = Path("data/demo")
# DemoConfig's fields, each a click option of the same name (pipeline.demo.generator is not imported here: it
# imports PIL and numpy, and `dghc --help` must stay fast).
CONFIG_OPTIONS = ("seed", "train", "valid", "test", "image_size", "jpeg_quality", "no_image_rate", "ambiguous_rate",
                  "ambiguous_in_typed_rate")


@click.command("demo-data")
@click.argument("out", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=13, show_default=True,
              help="Random seed: the same seed gives the same bytes.")
@click.option("--train", type=click.IntRange(min=1), default=400, show_default=True, help="Posts in train.txt.")
@click.option("--valid", type=click.IntRange(min=1), default=100, show_default=True, help="Posts in valid.txt.")
@click.option("--test", type=click.IntRange(min=1), default=100, show_default=True, help="Posts in test.txt.")
@click.option("--image-size", type=click.IntRange(min=8), default=224, show_default=True,
              help="Width and height of the images in pixels.")
@click.option("--jpeg-quality", type=click.IntRange(1, 100), default=90, show_default=True,
              help="JPEG quality of the images.")
@click.option("--no-image-rate", type=click.FloatRange(0.0, 1.0), default=0.15, show_default=True,
              help="Share of posts without an image file.")
@click.option("--ambiguous-rate", type=click.FloatRange(0.0, 1.0), default=0.4, show_default=True,
              help="Of posts with an image: share with an ambiguous name in a neutral context (only the image "
                   "tells its type).")
@click.option("--ambiguous-in-typed-rate", type=click.FloatRange(0.0, 1.0), default=0.2, show_default=True,
              help="Share of typed slots filled with an ambiguous name (the text tells its type).")
@click.option("--params", "params_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help=f"A params.yaml whose '{PARAMS_SECTION}' section gives defaults (also 'out'); options given "
                   f"here win.")
@click.pass_context
def demo_data_command(ctx: click.Context, **_: Any) -> None:
    """Write a synthetic multimodal NER set to OUT (default data/demo).

    \b
    OUT/train.txt, valid.txt, test.txt  CoNLL with IMGID lines
    OUT/images/<id>.jpg                 the posts' images (about 15% of posts have none)
    OUT/demo.json                       what each image shows; which entities only the image types

    Some names (Jordan, Chelsea, Phoenix...) stand in contexts that do not tell their type; only the image
    does. The command prints the best F1 a text-only model can reach.
    """
    apply_params(ctx, ctx.params["params_file"], PARAMS_SECTION)
    from pipeline.demo.generator import DemoConfig, write_demo_data

    options = ctx.params
    config = DemoConfig(**{name: options[name] for name in CONFIG_OPTIONS})
    summary = write_demo_data(options["out"] or DEFAULT_OUT, config)
    for line in summary.lines():
        click.echo(line)
