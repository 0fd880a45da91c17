"""``dghc demo-data OUT``: write the synthetic multimodal demo set the pipeline runs on by default."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import click

from pipeline.errors import DghcError

PARAMS_SECTION = "demo_data"
_OPTIONS = ("seed", "train", "valid", "test")


def _params_defaults(path: Path) -> dict:
    """The ``demo_data`` section of a params.yaml (only the keys this command knows)."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise DghcError(f"{path}: cannot read the parameters ({err})") from None
    section = loaded.get(PARAMS_SECTION, {}) if isinstance(loaded, dict) else {}
    if not isinstance(section, dict):
        raise DghcError(f"{path}: section {PARAMS_SECTION!r} must be a mapping")
    from pipeline.demo_data import DemoConfig

    known = {f.name for f in fields(DemoConfig)} | {"out"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise DghcError(f"{path}: unknown keys in {PARAMS_SECTION!r}: {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(known))})")
    return section


@click.command("demo-data")
@click.argument("out", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=int, default=13, show_default=True, help="Random seed: the same seed gives the same bytes.")
@click.option("--train", type=click.IntRange(min=1), default=400, show_default=True, help="Posts in train.txt.")
@click.option("--valid", type=click.IntRange(min=1), default=100, show_default=True, help="Posts in valid.txt.")
@click.option("--test", type=click.IntRange(min=1), default=100, show_default=True, help="Posts in test.txt.")
@click.option("--params", "params_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help=f"A params.yaml whose '{PARAMS_SECTION}' section gives defaults; options given here win.")
@click.pass_context
def demo_data_command(ctx: click.Context, out: Path | None, seed: int, train: int, valid: int, test: int,
                      params_file: Path | None) -> None:
    """Write a synthetic multimodal NER set to OUT (default data/demo).

    \b
    OUT/train.txt, valid.txt, test.txt  CoNLL with IMGID lines
    OUT/images/<id>.jpg                 the posts' images (about 15% of posts have none)
    OUT/demo.json                       what each image shows; which entities only the image types

    Some names (Jordan, Chelsea, Phoenix...) stand in contexts that do not tell their type; only the image
    does. The command prints the best F1 a text-only model can reach.
    """
    from pipeline.demo_data import DemoConfig, write_demo_data

    values = {"seed": seed, "train": train, "valid": valid, "test": test}
    out_from_params = None
    if params_file is not None:
        section = _params_defaults(params_file)
        out_from_params = section.get("out")
        for name in _OPTIONS:
            given = ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
            if name in section and not given:
                values[name] = section[name]
        for name in ("image_size", "jpeg_quality", "no_image_rate", "ambiguous_rate", "ambiguous_in_typed_rate"):
            if name in section:
                values[name] = section[name]
    for name in _OPTIONS:
        value = values[name]
        if not isinstance(value, int) or isinstance(value, bool) or (name != "seed" and value < 1):
            raise DghcError(f"demo-data: {name} must be {'an integer' if name == 'seed' else 'a positive integer'}, "
                            f"got {value!r}")
    target = out if out is not None else Path(out_from_params or "data/demo")
    try:
        config = DemoConfig(**values)
    except TypeError as err:
        raise DghcError(f"bad demo-data parameters: {err}") from None
    summary = write_demo_data(target, config)
    for line in summary.lines():
        click.echo(line)
