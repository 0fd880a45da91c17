"""``dghc report MODEL DATA --out DIR``: an HTML page of sampled posts showing where the image helped or hurt."""
from __future__ import annotations

import logging
from pathlib import Path

import click


@click.command("report")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("data_file", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Folder for the page: OUT/index.html (one self-contained file). Required.")
@click.option("--features", "features", type=click.Path(path_type=Path), default=Path("cache/features.h5"),
              show_default=True, help="Features file covering DATA's images (needed by models that use the image).")
@click.option("--detections", "detections", type=click.Path(path_type=Path), default=None,
              help="Detections file for the region boxes [default: cache/detections.h5 if it exists]. "
                   "Posts absent from it are shown without regions.")
@click.option("--images", "images", type=click.Path(path_type=Path), default=None,
              help="Folder of <id>.jpg [default: images/ beside DATA].")
@click.option("--samples", type=click.IntRange(min=1), default=40, show_default=True, help="Posts to show (helped/hurt ones first).")
@click.option("--seed", default=0, show_default=True, help="Seed of the sample of the other posts.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--keep-other", is_flag=True, help="Keep OTHER as its own type instead of MISC.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--params", "params_file", type=click.Path(path_type=Path), default=None,
              help="params.yaml whose 'report' section gives defaults (options given here win).")
@click.pass_context
def report_command(ctx: click.Context, model_dir, data_file, out, features, detections, images, samples, seed,
                   batch_size, keep_other, device, params_file) -> None:
    """Tag DATA_FILE with the model in MODEL_DIR twice, with the image and with it masked, and write a page
    of sampled posts: image with its regions, gold and predicted entities, relevance score and gates.

    A post's image "helped" when the model makes fewer entity errors with the image than with every visual
    slot masked (its text-only path), "hurt" when it makes more. Helped and hurt posts are shown first.
    """
    from pipeline.report.build import ReportConfig, build_report
    from stages.params import apply_params

    apply_params(ctx, params_file, "report")
    values = ctx.params
    if values["out"] is None:
        raise click.UsageError("give --out DIR (the page is written as DIR/index.html)")

    def path(name: str) -> Path | None:
        return Path(values[name]) if values[name] is not None else None

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = ReportConfig(model=model_dir, data=data_file, out=path("out"), features=path("features"),
                          detections=path("detections"), images=path("images"), samples=values["samples"],
                          seed=values["seed"], batch_size=values["batch_size"], device=values["device"],
                          merge_other=not values["keep_other"])
    result = build_report(config)
    counts = ", ".join(f"{count} {name}" for name, count in result.summary.effects.items())
    click.echo(f"{result.summary.posts} posts ({counts}); {len(result.shown)} shown: {result.path}")
