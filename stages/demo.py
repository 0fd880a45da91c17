"""``dghc demo-data [OUT]``: write the synthetic multimodal demo set the pipeline runs on by default."""
from __future__ import annotations

import click

from ..pipeline.demo.config import DemoConfig
from .options import configured


@click.command("demo-data")
@configured(DemoConfig)
def demo_data_command(config: DemoConfig) -> None:
    """Write a synthetic multimodal NER set to OUT (default data/demo).

    \b
    OUT/train.txt, valid.txt, test.txt  CoNLL with IMGID lines
    OUT/images/<id>.jpg                 the posts' images (about 15% of posts have none)
    OUT/demo.json                       what each image shows; which entities only the image types

    Some names (Jordan, Chelsea, Phoenix...) stand in contexts that do not tell their type; only the image
    does. The command prints the best F1 a text-only model can reach.
    """
    from ..pipeline.demo.writer import write_demo_data  # PIL and numpy: imported only when the command runs

    summary = write_demo_data(config)
    for line in summary.lines():
        click.echo(line)
