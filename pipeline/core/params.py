"""Declaring a stage's parameters once: a dataclass field per parameter, with its help text and limits.

Each stage has one config dataclass (``DetectConfig``, ``TrainConfig``, ...) whose fields are declared with
``param``. From that one declaration come the command-line options (``stages/options.py``), the checking of the
stage's section of params.yaml (unknown key, wrong type: file, section and key named) and the parameter tables
of docs/STAGES.md and docs/RUNNING.md. Config modules import nothing heavy, so ``dghc ... --help`` stays fast.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

from .errors import DghcError

METADATA_KEY = "dghc"


@dataclass(frozen=True)
class ParamInfo:
    """How a parameter shows itself to users."""

    help: str
    option: str | None = None  # the option's declaration, e.g. "--out" or "--progress/--no-progress"
    argument: bool = False  # a positional argument (``FILES...`` for a list)
    minimum: float | None = None
    maximum: float | None = None
    metavar: str | None = None
    in_params: bool = True  # may be set in a params file (False: command line only, e.g. --force, which
    # in params.yaml would recompute on every `dvc repro`)


def param(default: Any = MISSING, *, help: str, default_factory: Any = MISSING, **info: Any) -> Any:
    """A dataclass field that is also a user-facing parameter (see ``ParamInfo`` for ``info``)."""
    metadata = {METADATA_KEY: ParamInfo(help=help, **info)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# Parameters several stages share, declared once: their default and help live here.
def device_param() -> Any:
    """``device``: every stage that computes takes the GPU when there is one."""
    return param("auto", help="Torch device: auto (the GPU when there is one, else the CPU), cpu, cuda, cuda:N.")


def tagging_precision_param() -> Any:
    """``precision`` of the stages that tag with a trained model (evaluate, predict, report)."""
    return param("no", help="Mixed precision of the tagging (autocast; fp16 needs a CUDA GPU).")


def keep_other_param() -> Any:
    """``keep_other`` of the stages that read gold labels for a trained model (evaluate, report)."""
    return param(False, help="Keep OTHER as its own type instead of MISC (the gold is read as the model was trained: "
                 "OTHER kept when it learned OTHER; refused when it learned MISC).")


def allow_unseen_types_param() -> Any:
    """``allow_unseen_types`` of the stages that score gold labels (train's dev split, evaluate)."""
    return param(False, help="Score gold entities of a type the model does not learn (a typo such as B-LCO, or "
                 "another data set's type) as missed, instead of refusing the file at its first such tag.")


def engine_param() -> Any:
    """``engine`` of the stages that can run on Ray Data (detect, extract)."""
    return param("local", help="local: this process; ray: a Ray Data pipeline (a pool of model actors, each running "
                 "whole batches) writing a folder of shard files plus index.h5 to --out (pip install 'dghc[ray]').",
                 in_params=False)


def address_param() -> Any:
    """``address`` of the Ray cluster (--engine ray)."""
    return param(None, help="Ray cluster to join with --engine ray: HOST:PORT of its head (port 6379), or auto on "
                 "a cluster node; default: start a local Ray on this machine's cores.", in_params=False)


def workers_param() -> Any:
    """``workers``: the size of the Ray actor pool that runs the model."""
    return param(2, help="Model workers with --engine ray (each holds the model; one GPU each where the cluster has "
                 "GPUs, else one CPU core: N workers use N cores).", minimum=1, in_params=False)


def shard_size_param() -> Any:
    """``shard_size``: rows per shard file (--engine ray), the unit of resuming."""
    return param(1024, help="Rows (images, or posts for predict) per shard file with --engine ray, rounded up to "
                 "whole batches; a rerun skips the finished shards.", minimum=1, in_params=False)


@dataclass(frozen=True)
class Param:
    """One declared parameter of a config class, with its type resolved."""

    name: str
    kind: Any  # the field's type with ``None`` removed: bool, int, float, str, Path, Literal[...], list[...]
    optional: bool  # None is a valid value
    default: Any  # MISSING when the field is required
    info: ParamInfo

    @property
    def is_list(self) -> bool:
        return typing.get_origin(self.kind) is list

    @property
    def choices(self) -> tuple[str, ...] | None:
        return tuple(typing.get_args(self.kind)) if typing.get_origin(self.kind) is typing.Literal else None


def params_of(config_class: type) -> list[Param]:
    """The declared parameters of a config dataclass, in field order (fields not declared with ``param`` left out)."""
    hints = typing.get_type_hints(config_class)
    declared = []
    for spec in dataclasses.fields(config_class):
        info = spec.metadata.get(METADATA_KEY)
        if info is None:
            continue
        kind = hints[spec.name]
        args = typing.get_args(kind)
        optional = type(None) in args
        if optional:
            rest = [a for a in args if a is not type(None)]
            kind = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]
        if spec.default is not MISSING:
            default = spec.default
        elif spec.default_factory is not MISSING:  # type: ignore[misc]
            default = spec.default_factory()  # type: ignore[misc]
        else:
            default = MISSING
        declared.append(Param(spec.name, kind, optional, default, info))
    return declared


def check_params(config: Any) -> None:
    """Refuse values outside a parameter's choices or limits, naming the stage's section and the parameter.

    Values from the command line and params.yaml were checked by their click types already; this catches
    configs made in code (tests, notebooks) the same way.
    """
    section = getattr(config, "SECTION", type(config).__name__)
    for p in params_of(type(config)):
        value = getattr(config, p.name)
        if value is None or p.is_list:
            continue
        if p.choices is not None and value not in p.choices:
            raise DghcError(f"{section} parameter {p.name} must be one of {', '.join(map(str, p.choices))}, "
                            f"not {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if p.info.minimum is not None and value < p.info.minimum:
            raise DghcError(f"{section} parameter {p.name} must be at least {p.info.minimum:g}, not {value!r}")
        if p.info.maximum is not None and value > p.info.maximum:
            raise DghcError(f"{section} parameter {p.name} must be at most {p.info.maximum:g}, not {value!r}")


def config_from(config_class: type, **values: Any) -> Any:
    """A stage's config from keyword arguments as Python code gives them: a path may be a ``str`` (or a list of
    them), as on the command line; unknown names are refused with the known ones."""
    declared = {p.name: p for p in params_of(config_class)}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        section = getattr(config_class, "SECTION", config_class.__name__)
        raise DghcError(f"{section}: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(sorted(declared))})")

    def as_path(value: Any) -> Any:
        return Path(value) if isinstance(value, str) and value else value

    for name, value in values.items():
        kind = declared[name].kind
        if kind is Path:
            # "" stays "" (off: log_file="" writes no log), not Path("") == Path(".")
            values[name] = None if value == "" and declared[name].optional else as_path(value)
        elif typing.get_origin(kind) is list and typing.get_args(kind) == (Path,) and isinstance(value, (list, tuple)):
            values[name] = [as_path(item) for item in value]
    return config_class(**values)
