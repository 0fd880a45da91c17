"""Parameters of `dghc experiments run`, `dghc table` and `dghc compare`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from ..core.params import check_params, param

# The paired bootstrap's defaults, shared by `dghc table` and `dghc compare` (and their library functions).
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


@dataclass
class ExperimentsConfig:
    """Parameters of ``dghc experiments run``."""

    SECTION: ClassVar[str] = "experiments"

    table: Literal["main", "ablations"] = param("main", help="Which table's variants to run: main (text only, "
                                                "full: the paper's Table 3) or ablations (w/o RE score, w/o gating, "
                                                "w/o augmentation, full: Table 5).")
    seeds: int = param(3, help="Seeds per variant (1, 2, ... N).", minimum=1)
    jobs: int = param(1, help="Experiments run at a time.", minimum=1)
    changes: list[str] = param(default_factory=list, option="--set-param", metavar="SECTION.KEY=VALUE",
                                 help="Another params.yaml value for every run, e.g. train.epochs=2 (repeatable).")
    repo: Path = param(Path("."), help="The DVC repository (its dvc.yaml and params.yaml).")

    def __post_init__(self) -> None:
        check_params(self)


@dataclass
class TableConfig:
    """Parameters of ``dghc table``."""

    SECTION: ClassVar[str] = "table"

    runs: list[Path] = param(default_factory=list, argument=True, metavar="[RUN_DIR]...",
                             help="Run folders (a run's params.yaml and cache files); none: the DVC experiments of "
                                  "--repo.")
    table: Literal["main", "ablations", "cross", "all"] = param(
        "all", help="The paper's table to lay out (main: Table 3, ablations: Table 5, cross: Table 6, every variant "
                    "with its F1 on the other data sets of params.yaml's `cross`), or every variant found.")
    repo: Path = param(Path("."), help="The DVC repository whose experiments to read.")
    out: Path = param(Path("reports/table"), help="Folder for table.html and the figures (PNG).")
    samples: int = param(BOOTSTRAP_SAMPLES, help="Bootstrap resamples for the comparison with the full model.", minimum=1)
    seed: int = param(BOOTSTRAP_SEED, help="Seed of the bootstrap.")

    def __post_init__(self) -> None:
        check_params(self)


@dataclass
class CompareConfig:
    """Parameters of ``dghc compare``."""

    SECTION: ClassVar[str] = "compare"

    predictions_a: Path = param(help="Predictions of system A (`dghc evaluate --predictions`).", argument=True,
                                metavar="PRED_A")
    predictions_b: Path = param(help="Predictions of system B, on the same posts.", argument=True, metavar="PRED_B")
    samples: int = param(BOOTSTRAP_SAMPLES, help="Bootstrap resamples.", minimum=1)
    seed: int = param(BOOTSTRAP_SEED, help="Seed of the bootstrap.")

    def __post_init__(self) -> None:
        check_params(self)
