"""A table of variants over seeds: mean ± std of P/R/F1 and per-type F1, runs, the paper's figures beside, and
each variant against the full model by a paired bootstrap; as Markdown, and as one self-contained HTML page
with its figures (dev F1 per epoch of every run, mean gate per layer and block per variant)."""
from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..core.errors import DghcError
from ..core.templates import template_environment
from .config import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED
from .runs import FULL, VARIANTS, Run
from .significance import Comparison, paired_bootstrap
from .spread import Spread, spread

PAPER = json.loads((Path(__file__).with_name("paper.json")).read_text(encoding="utf-8"))
TABLES: dict[str, list[str]] = {
    "main": ["text only (BERT-CRF)", FULL],  # the paper's Table 3
    "ablations": ["w/o RE score", "w/o gating", "w/o augmentation", FULL],  # Table 5
}  # and "cross" (Table 6): every variant found, with its F1 on the other data sets of params.yaml's `cross`
_ENVIRONMENT = template_environment("dghc.pipeline.experiments")


@dataclass
class Row:
    variant: str
    runs: list[Run]
    precision: Spread
    recall: Spread
    f1: Spread
    per_type: dict[str, Spread]
    versus_full: Comparison | None
    paper: dict[str, Any] | None
    cross: dict[str, Spread]  # other data set -> F1 of the model on it (the paper's Table 6)


@dataclass
class Table:
    name: str
    data: dict[str, str]
    dataset: str | None  # twitter2015 / twitter2017 when the data is one of them (the paper's figures apply)
    rows: list[Row]
    types: list[str]
    samples: int
    cross: list[str]  # the other data sets some run was scored on


def dataset_of(data: dict[str, str]) -> str | None:
    for name in ("twitter2015", "twitter2017"):
        if name in data.get("train", "").lower():
            return name
    return None


def _scores(run: Run, mode: str = "default") -> dict[str, Any]:
    return run.metrics[mode]


def _versus_full(runs: list[Run], full: list[Run], samples: int, seed: int) -> Comparison | None:
    """Paired bootstrap over the posts of every seed both variants ran (pooled: a post of seed s is a unit)."""
    full_by_seed = {run.seed: run for run in full if run.predictions is not None}
    gold: list[list[str]] = []
    predicted_a: list[list[str]] = []
    predicted_b: list[list[str]] = []
    for run in runs:
        other = full_by_seed.get(run.seed)
        if run.predictions is None or other is None:
            continue
        if [(p[0], p[1]) for p in run.predictions] != [(p[0], p[1]) for p in other.predictions]:
            raise DghcError(f"{run.name} and {other.name} did not tag the same posts with the same gold labels")
        gold += [p[1] for p in run.predictions]
        predicted_a += [p[2] for p in run.predictions]
        predicted_b += [p[2] for p in other.predictions]
    return paired_bootstrap(gold, predicted_a, predicted_b, samples, seed) if gold else None


def build_table(runs: Sequence[Run], name: str = "all", samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
                ) -> Table:
    """Group ``runs`` by variant (refusing runs of different data), in the order of the paper's table."""
    if not runs:
        raise DghcError("no runs to put in a table")
    by_data: dict[tuple, list[str]] = {}
    for run in runs:
        by_data.setdefault(tuple(sorted(run.data.items())), []).append(run.name)
    if len(by_data) > 1:
        listed = "; ".join(f"{dict(data) or 'unknown data'}: {', '.join(names)}" for data, names in by_data.items())
        raise DghcError(f"the runs were made on different data, which one table cannot mix ({listed}); give the "
                        "runs of one data set")
    by_variant: dict[str, list[Run]] = {}
    for run in runs:
        by_variant.setdefault(run.variant, []).append(run)
    cross = sorted({key for run in runs for key in run.cross})
    if name == "cross" and not cross:
        raise DghcError("no run was scored on another data set: name them in params.yaml's `cross` section, whose "
                        "cross_evaluate stage scores the trained model on them (the paper's Table 6)")
    order = TABLES.get(name) or [v for v in VARIANTS if v in by_variant] + \
        sorted(v for v in by_variant if v not in VARIANTS)
    missing = [variant for variant in order if variant not in by_variant]
    if name in TABLES and missing:
        raise DghcError(f"table {name!r} needs runs of {', '.join(missing)}; found runs of "
                        f"{', '.join(sorted(by_variant))}")
    data = dict(next(iter(by_data)))
    dataset = dataset_of(data)
    types = sorted({t for run in runs for t in _scores(run)["per_type"]})
    rows = []
    for variant in order:
        group = sorted(by_variant[variant], key=lambda run: (run.seed is None, run.seed, run.name))
        overall = [_scores(run)["overall"] for run in group]
        per_type = {t: spread([_scores(run)["per_type"][t]["f1"] for run in group if t in _scores(run)["per_type"]])
                    for t in types if any(t in _scores(run)["per_type"] for run in group)}
        versus = None if variant == FULL or FULL not in by_variant else \
            _versus_full(group, by_variant[FULL], samples, seed)
        other = {key: spread([run.cross[key]["default"]["overall"]["f1"] for run in group if key in run.cross])
                 for key in cross if any(key in run.cross for run in group)}
        rows.append(Row(variant, group, spread([o["precision"] for o in overall]),
                        spread([o["recall"] for o in overall]), spread([o["f1"] for o in overall]), per_type, versus,
                        (PAPER.get(dataset) or {}).get(variant) if dataset else None, other))
    return Table(name, data, dataset, rows, types, samples, cross)


def _versus_text(row: Row) -> str:
    if row.versus_full is None:
        return "" if row.variant == FULL else "n/a"
    c = row.versus_full
    return f"{100 * c.difference:+.2f} [{100 * c.low:+.2f}, {100 * c.high:+.2f}], p = {c.p_value:.3f}"


def markdown(table: Table) -> str:
    """The table as Markdown: scores in %, mean ± std over the runs."""
    header = ["variant", "runs", "P", "R", "F1", *[f"F1 {t}" for t in table.types], "vs full: ΔF1 [95% CI], p",
              "paper F1", *[f"F1 on {key}" for key in table.cross]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        paper = f"{row.paper['f1']:.2f} ({row.paper['where']})" if row.paper else "—"
        cells = [row.variant, str(len(row.runs)), row.precision.format(), row.recall.format(), row.f1.format(),
                 *[row.per_type[t].format() if t in row.per_type else "—" for t in table.types], _versus_text(row),
                 paper, *[row.cross[key].format() if key in row.cross else "—" for key in table.cross]]
        lines.append("| " + " | ".join(cells) + " |")
    data = ", ".join(f"{k} {v}" for k, v in sorted(table.data.items())) or "unknown"
    lines += ["", f"Test split scores in % (seqeval default mode), mean ± sample std over the runs of each variant "
                  f"(n/a: one run); data: {data}. ΔF1 against the full model: paired bootstrap over the test posts of "
                  f"the seeds both ran, {table.samples} resamples."
                  + (" F1 on another data set: the same models scored on it (the paper's Table 6)." if table.cross
                     else "")]
    if table.dataset is None:
        lines.append("The paper's figures are for Twitter-2015/2017 and are not shown for this data.")
    return "\n".join(lines) + "\n"


def figures(table: Table) -> dict[str, bytes]:
    """PNG figures: dev F1 per epoch of every run (one colour per variant); mean gate per layer and block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    pictures: dict[str, bytes] = {}
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    colours = plt.get_cmap("tab10")
    for index, row in enumerate(table.rows):
        for number, run in enumerate(row.runs):
            if run.dev_f1:
                axes.plot([epoch for epoch, _ in run.dev_f1], [100 * f1 for _, f1 in run.dev_f1],
                          color=colours(index), alpha=0.8, marker="o", markersize=3,
                          label=row.variant if number == 0 else None)
    axes.set_xlabel("epoch")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_ylabel("dev F1 (%)")
    axes.set_title("Dev F1 per epoch, every run")
    if axes.lines:
        axes.legend(fontsize=8)
    pictures["dev_f1.png"] = _png(figure)
    gated = [(row, [run.metrics.get("gates_mean_per_layer") for run in row.runs]) for row in table.rows]
    gated = [(row, [g for g in gates if g]) for row, gates in gated]
    gated = [(row, np.mean(np.array(gates, dtype=float), axis=0)) for row, gates in gated if gates]
    if gated:
        figure, all_axes = plt.subplots(1, len(gated), figsize=(3.2 * len(gated), 3.4), dpi=100, squeeze=False)
        for axes, (row, mean) in zip(all_axes[0], gated):
            image = axes.imshow(mean, vmin=0, vmax=1, cmap="Blues", aspect="auto")
            axes.set_title(row.variant, fontsize=9)
            axes.set_xticks(range(mean.shape[1]), ["image"] + [f"r{k}" for k in range(1, mean.shape[1])])
            axes.set_yticks(range(mean.shape[0]), [f"L{k}" for k in range(1, mean.shape[0] + 1)])
        figure.colorbar(image, ax=all_axes[0].tolist(), shrink=0.8, label="mean gate")
        pictures["gates.png"] = _png(figure)
    plt.close("all")
    return pictures


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def html(table: Table, pictures: dict[str, bytes]) -> str:
    """One self-contained page: the table and its figures (embedded)."""
    rows = [{"variant": row.variant, "runs": len(row.runs), "names": ", ".join(run.name for run in row.runs),
             "precision": row.precision.format(), "recall": row.recall.format(), "f1": row.f1.format(),
             "per_type": [row.per_type[t].format() if t in row.per_type else "—" for t in table.types],
             "versus": _versus_text(row),
             "paper": f"{row.paper['f1']:.2f} ({row.paper['where']})" if row.paper else "—",
             "cross": [row.cross[key].format() if key in row.cross else "—" for key in table.cross]}
            for row in table.rows]
    images = {name: "data:image/png;base64," + base64.b64encode(data).decode("ascii")
              for name, data in pictures.items()}
    return _ENVIRONMENT.get_template("table.html.j2").render(
        table=table, rows=rows, images=images, source=PAPER["source"],
        data=", ".join(f"{k} {v}" for k, v in sorted(table.data.items())) or "unknown")
