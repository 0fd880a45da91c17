"""``dghc table``: runs grouped by variant, mean ± std over seeds, significance, the paper's figures beside."""
from __future__ import annotations

import click

from ..pipeline.experiments.config import TableConfig
from .options import configured


@click.command("table")
@configured(TableConfig)
def table_command(config: TableConfig) -> None:
    """Lay out the runs (the DVC experiments of --repo, or RUN_DIR folders) as a table: Markdown on stdout,
    and OUT/table.html (self-contained) with OUT/dev_f1.png and OUT/gates.png."""
    from ..pipeline.artifacts.atomic import atomic_folder
    from ..pipeline.experiments.runs import runs_from_dvc, runs_from_folders
    from ..pipeline.experiments.table import build_table, figures, html, markdown

    runs = runs_from_folders(config.runs) if config.runs else runs_from_dvc(config.repo)
    table = build_table(runs, config.table, config.samples, config.seed)
    pictures = figures(table)
    with atomic_folder(config.out) as staging:
        (staging / "table.html").write_text(html(table, pictures), encoding="utf-8")
        (staging / "table.md").write_text(markdown(table), encoding="utf-8")
        for name, data in pictures.items():
            (staging / name).write_bytes(data)
    click.echo(markdown(table))
    click.echo(f"written: {config.out / 'table.html'}", err=True)
