"""``dghc compare PRED_A PRED_B``: paired bootstrap of two systems' entity F1 on the same posts."""
from __future__ import annotations

import click

from ..pipeline.experiments.config import CompareConfig
from .options import configured


@click.command("compare")
@configured(CompareConfig)
def compare_command(config: CompareConfig) -> None:
    """Is A's F1 above B's? The difference, its 95% interval and two-sided p from a paired bootstrap over posts.

    PRED_A and PRED_B are prediction files of `dghc evaluate --predictions` on the same test posts.
    """
    from ..pipeline.core.console import points
    from ..pipeline.core.errors import DghcError
    from ..pipeline.data.conll import read_utf8_text
    from ..pipeline.experiments.runs import read_predictions
    from ..pipeline.experiments.significance import paired_bootstrap

    systems = []
    for path in (config.predictions_a, config.predictions_b):
        try:
            systems.append(read_predictions(read_utf8_text(path), str(path)))
        except OSError as err:
            raise DghcError(f"{path}: cannot read it ({err.strerror})") from None
    a, b = systems
    if [(p[0], p[1]) for p in a] != [(p[0], p[1]) for p in b]:
        raise DghcError(f"{config.predictions_a} and {config.predictions_b} are not predictions of the same posts "
                        "with the same gold labels")
    result = paired_bootstrap([p[1] for p in a], [p[2] for p in a], [p[2] for p in b], config.samples, config.seed)
    click.echo(f"F1 A {points(result.f1_a)}, B {points(result.f1_b)} (seqeval default mode, {result.posts} posts)")
    click.echo(f"A - B: {100 * result.difference:+.2f} points, 95% interval [{100 * result.low:+.2f}, "
               f"{100 * result.high:+.2f}], two-sided p = {result.p_value:.4f} ({result.samples} paired resamples)")
