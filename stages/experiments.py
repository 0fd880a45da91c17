"""``dghc experiments run``: the grid of a table (variants x seeds) through DVC's experiment queue."""
from __future__ import annotations

import click

from ..pipeline.experiments.config import ExperimentsConfig
from .options import configured


@click.group("experiments")
def experiments_group() -> None:
    """Run the experiments of the paper's tables with DVC."""


@experiments_group.command("run")
@configured(ExperimentsConfig)
def run_command(config: ExperimentsConfig) -> None:
    """Queue every variant of --table x --seeds as a DVC experiment and run them; then `dghc table`.

    \b
    main:      text only (BERT-CRF), full (DGHC)                           the paper's Table 3
    ablations: w/o RE score, w/o gating, w/o augmentation, full (DGHC)     the paper's Table 5
    """
    from ..pipeline.experiments.grid import run_grid

    count = run_grid(config.table, config.seeds, config.changes, config.jobs, config.repo,
                     log=lambda message: click.echo(message, err=True))
    click.echo(f"{count} experiments ran; `dghc table --table {config.table}` lays them out")
