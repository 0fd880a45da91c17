"""``dghc report MODEL DATA --out DIR``: an HTML page of sampled posts showing where the image helped or hurt."""
from __future__ import annotations

import logging

import click

from ..pipeline.core.console import setup_logging
from ..pipeline.report.config import ReportConfig
from .options import configured


@click.command("report")
@configured(ReportConfig)
def report_command(config: ReportConfig) -> None:
    """Tag DATA_FILE with the model in MODEL_DIR twice, with the image and with it masked, and write a page
    of sampled posts: image with its regions, gold and predicted entities, relevance score and gates.

    A post's image "helped" when the model makes fewer entity errors with the image than with every visual
    slot masked (its text-only path), "hurt" when it makes more. Helped and hurt posts are shown first.
    """
    from ..pipeline.report.build import build_report  # torch: imported only when the command runs

    setup_logging(logging.INFO)
    result = build_report(config)
    counts = ", ".join(f"{count} {name}" for name, count in result.summary.effects.items())
    click.echo(f"{result.summary.posts} posts ({counts}); {len(result.shown)} shown: {result.path}")
