"""From a stage's config dataclass to its command line and its params.yaml section (one declaration, three uses).

``configured(ConfigClass)`` gives a click command one option (or argument) per declared parameter
(``dghc.pipeline.core.params``) plus ``--params FILE`` and ``--set KEY=VALUE``, and hands the command a config built
from, lowest first: the declared defaults, the section of the params file, ``--set``, and options given on the
command line. Every value, whatever its source, goes through the same click type, so params.yaml and the command
line accept and refuse the same things; params.yaml errors name the file, the section and the key.
``params_table`` writes the docs' table of a stage's parameters from the same declaration.
"""
from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Callable, TypeVar

import click
import yaml
from click.core import ParameterSource

from ..pipeline.core.errors import DghcError
from ..pipeline.core.params import Param, params_of

C = TypeVar("C")
GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)


def option_name(p: Param) -> str:
    """The option's declaration: ``--batch-size``; a flag that is on by default comes as a pair, e.g.
    ``--use-image/--no-use-image``."""
    name = p.info.option or "--" + p.name.replace("_", "-")
    if p.kind is bool and p.default is True and "/" not in name:
        name = f"{name}/--no-{name[2:]}"
    return name


def click_type(p: Param) -> click.ParamType:
    kind = typing.get_args(p.kind)[0] if p.is_list else p.kind
    if p.choices:
        return click.Choice(p.choices)
    if kind is bool:
        return click.BOOL
    if kind is int:
        return click.IntRange(p.info.minimum, p.info.maximum) if _limited(p) else click.INT
    if kind is float:
        return click.FloatRange(p.info.minimum, p.info.maximum) if _limited(p) else click.FLOAT
    if kind is Path:
        return click.Path(path_type=Path)
    return click.STRING


def _limited(p: Param) -> bool:
    return p.info.minimum is not None or p.info.maximum is not None


def click_parameter(p: Param) -> click.Parameter:
    """The click option or argument of one declared parameter."""
    default = None if p.default is MISSING else p.default
    if p.info.argument:
        return click.Argument([p.name], type=click_type(p), nargs=-1 if p.is_list else 1,
                              required=False, metavar=p.info.metavar)
    declaration = option_name(p)
    if p.kind is bool:
        return click.Option([declaration, p.name], is_flag=True, default=bool(default), help=p.info.help)
    show = default is not None and default != [] and not isinstance(default, bool)
    return click.Option([declaration, p.name], type=click_type(p), multiple=p.is_list,
                        default=tuple(default) if p.is_list else default, show_default=show,
                        metavar=p.info.metavar, help=p.info.help)


def read_section(params_file: Path, section: str) -> dict[str, Any]:
    """The ``section`` mapping of a params YAML file ({} when the file has no such section)."""
    try:
        data = yaml.safe_load(Path(params_file).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise DghcError(f"params file {params_file} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DghcError(f"{params_file}: cannot read it ({err})") from None
    except yaml.YAMLError as err:
        raise DghcError(f"{params_file}: not valid YAML: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get(section, {}), (dict, type(None))):
        raise DghcError(f"{params_file}: section '{section}' must be a mapping of parameter names to values")
    return {str(key).replace("-", "_"): value for key, value in (data.get(section) or {}).items()}


def data_values(params_file: Path, config_class: type) -> dict[str, Any]:
    """The parameters a params file's ``data`` section gives a stage (``FROM_DATA``: parameter -> data key, or keys
    for a list), so that ``dghc train --params configs/x.yaml`` trains on x's data, not the demo's defaults."""
    data = read_section(params_file, "data")
    values: dict[str, Any] = {}
    for name, keys in getattr(config_class, "FROM_DATA", {}).items():
        if isinstance(keys, tuple):
            found = [data[key] for key in keys if data.get(key) is not None]
            if found:
                values[name] = found
        elif data.get(keys) is not None:
            values[name] = data[keys]
    return values


def parse_overrides(items: typing.Iterable[str]) -> dict[str, Any]:
    """``["epochs=3", "use_image=false"]`` -> ``{"epochs": "3", "use_image": False}``: booleans, null and lists
    read as YAML, every other value kept as written for the parameter's own type (YAML 1.1 would read seed=010
    as the octal 8 and encoder=0x1f as the number 31)."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DghcError(f"--set {item!r}: write KEY=VALUE, e.g. --set epochs=3")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        keep_yaml = parsed is None or isinstance(parsed, (bool, list, dict))
        result[key.strip().replace("-", "_")] = parsed if keep_yaml else value
    return result


def convert(p: Param, parameter: click.Parameter, value: Any, where: str, ctx: click.Context) -> Any:
    """A value from params.yaml or ``--set`` as the parameter's type, or a DghcError naming ``where``."""
    if value is None:
        if p.optional or p.is_list:
            return [] if p.is_list else None
        raise DghcError(f"{where}: a value is needed (null given)")
    if isinstance(value, bool) and p.choices:  # a choice that YAML 1.1 reads as a boolean
        for spelling in (("no", "yes"), ("false", "true")):  # precision: no; word_shape: true
            if spelling[value] in p.choices:
                value = spelling[value]
                break
    items = list(value) if p.is_list and isinstance(value, (list, tuple)) else [value]
    if p.kind is not bool and any(isinstance(item, bool) for item in items):
        raise DghcError(f"{where}: expected {parameter.type.name}, got a boolean ({str(value).lower()})")
    if isinstance(value, dict) or any(isinstance(item, (list, tuple, dict)) for item in items):
        expected = f"a list of {parameter.type.name}" if p.is_list else f"one {parameter.type.name}"
        raise DghcError(f"{where}: expected {expected}, got {type(value).__name__} {value!r}")
    try:
        converted = [parameter.type.convert(item, parameter, ctx) for item in items]
    except click.BadParameter as err:
        raise DghcError(f"{where}: {err.message}") from None
    except (TypeError, ValueError) as err:  # a click type that does not expect this kind of value at all
        raise DghcError(f"{where}: {value!r} is not a valid {parameter.type.name} ({err})") from None
    return converted if p.is_list else converted[0]


def build_config(ctx: click.Context, config_class: type[C], params_file: Path | None,
                 overrides: typing.Iterable[str]) -> C:
    """The config from defaults < params file section < ``--set`` < options given on the command line."""
    declared = {p.name: p for p in params_of(config_class)}
    parameters = {parameter.name: parameter for parameter in ctx.command.params}
    section = config_class.SECTION  # type: ignore[attr-defined]
    values: dict[str, Any] = {}
    known = f"(known: {', '.join(sorted(declared))})"
    sources = []  # (values, message for unknown keys, prefix naming a key, read from a file)
    # The data section gives the stage its data only when the command line names none of it: files given there
    # with the section's images (or train's dev split) would mix two data sets silently.
    data_given = any(ctx.get_parameter_source(name) in GIVEN and ctx.params.get(name) not in ((), [], None)
                     for name in getattr(config_class, "FROM_DATA", {}))
    if params_file is not None and not data_given:
        sources.append((data_values(params_file, config_class), "", f"{params_file}: data.", False))
    if params_file is not None:
        sources.append((read_section(params_file, section), f"{params_file}: unknown keys in section {section!r}",
                        f"{params_file}: {section}.", True))
    sources.append((parse_overrides(overrides), "--set: unknown parameter(s)", "--set ", False))
    for mapping, unknown_message, where, from_file in sources:
        unknown = sorted(set(mapping) - set(declared))
        if unknown:
            raise DghcError(f"{unknown_message}: {', '.join(unknown)} {known}")
        if from_file:  # keys such as force would act on every `dvc repro`
            for key in sorted(mapping):
                if not declared[key].info.in_params:
                    raise DghcError(f"{where}{key}: a command-line option only ({option_name(declared[key])}): in a "
                                    "params file it would act on every run; remove the key")
        for key, value in mapping.items():
            values[key] = convert(declared[key], parameters[key], value, where + key, ctx)
    for name, p in declared.items():
        given = ctx.get_parameter_source(name) in GIVEN
        if given and not (p.is_list and not ctx.params[name]):  # an empty FILES... is not "given"
            values[name] = list(ctx.params[name]) if p.is_list else ctx.params[name]
    missing = [p for name, p in declared.items() if p.default is MISSING and name not in values]
    if missing:
        names = ", ".join(p.name.upper() if p.info.argument else option_name(p) for p in missing)
        raise click.UsageError(f"missing {names} (on the command line, or in the '{section}' section of "
                               "a params file)")
    return config_class(**values)


def configured(config_class: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a click command callback: it receives ``config`` instead of the declared options.

    Put it under ``@click.command``; options the command declares itself (e.g. ``detect --show``) go on as usual
    and reach the callback by name.
    """
    declared = params_of(config_class)
    names = {p.name for p in declared}

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def callback(params_file: Path | None, overrides: tuple[str, ...], **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            config = build_config(ctx, config_class, params_file, overrides)
            return function(config, **{k: v for k, v in kwargs.items() if k not in names})

        callback.config_class = config_class  # type: ignore[attr-defined]
        section = config_class.SECTION
        callback.__click_params__ = list(getattr(function, "__click_params__", []))  # type: ignore[attr-defined]
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Set one parameter, e.g. --set batch_size=8 (repeatable; options given here win).")(callback)
        click.option("--params", "params_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
                     help=f"A params.yaml whose '{section}' section gives parameters (options given here "
                          "win).")(callback)
        for p in reversed(declared):
            callback.__click_params__.append(click_parameter(p))  # type: ignore[attr-defined]
        return callback

    return decorate


def parse_config(command: click.Command, args: typing.Sequence[str] = ()) -> Any:
    """The config a ``configured`` command would run with, given these command-line arguments (not run)."""
    config_class = command.callback.config_class  # type: ignore[union-attr]
    with command.make_context(command.name, list(args)) as ctx:
        return build_config(ctx, config_class, ctx.params["params_file"], ctx.params["overrides"])


def params_table(config_class: type) -> str:
    """A Markdown table of a stage's parameters: params.yaml key, command-line option, default, meaning."""
    rows = ["| params.yaml key | option | default | meaning |", "|---|---|---|---|"]
    for p in params_of(config_class):
        option = (p.info.metavar or p.name.upper()) if p.info.argument else option_name(p)  # as --help shows it
        if p.default is MISSING:
            default = "required"
        elif p.default is None or p.default == []:
            default = ""
        elif isinstance(p.default, bool):
            default = str(p.default).lower()
        else:
            default = f"`{p.default}`"
        meaning = p.info.help.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
        if not p.info.in_params:
            meaning += " Command line only."
        if p.choices:
            meaning += " One of: " + ", ".join(f"`{c}`" for c in p.choices) + "."
        rows.append(f"| `{p.name}` | `{option}` | {default} | {meaning} |")
    return "\n".join(rows)


def as_arguments(config: Any) -> dict[str, Any]:
    """A stage's config as the keyword arguments of its function in ``dghc.pipeline.api`` (the library takes plain
    arguments; only the command line builds config objects from options and params files)."""
    return {spec.name: getattr(config, spec.name) for spec in dataclasses.fields(config) if spec.init}
