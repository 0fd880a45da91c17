"""Tables over seeds: mean and std, the paired bootstrap, run folders, and the refusals of bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dghc.cli import dghc
from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.experiments.runs import runs_from_folders, variant_of
from dghc.pipeline.experiments.significance import paired_bootstrap
from dghc.pipeline.experiments.spread import spread
from dghc.pipeline.experiments.table import build_table, markdown

GOLD = [["B-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG"], ["B-MISC"], ["O", "O"], ["B-PER", "I-PER"]] * 8


def test_mean_and_sample_std_and_a_single_run():
    assert spread([0.5, 0.7]).mean == pytest.approx(0.6) and spread([0.5, 0.7]).std == pytest.approx(0.141421, 1e-5)
    one = spread([0.8])
    assert one.std is None and one.format() == "80.00 ± n/a"


def test_bootstrap_of_identical_systems_is_zero_with_p_one():
    result = paired_bootstrap(GOLD, GOLD, GOLD, samples=500, seed=1)
    assert result.difference == 0 and result.low == 0 and result.high == 0 and result.p_value == 1.0


def test_bootstrap_of_a_system_better_on_every_post_gives_p_near_zero():
    worse = [["O"] * len(labels) for labels in GOLD]  # finds nothing
    result = paired_bootstrap(GOLD, GOLD, worse, samples=1000, seed=2)
    print(f"difference {result.difference:.3f} [{result.low:.3f}, {result.high:.3f}], p {result.p_value:.4f}")
    assert result.difference == pytest.approx(1.0) and result.low > 0.9 and result.p_value < 0.01
    # and a system better on some posts only: a smaller difference inside its interval
    half = [g if i % 2 == 0 else ["O"] * len(g) for i, g in enumerate(GOLD)]
    partial = paired_bootstrap(GOLD, GOLD, half, samples=1000, seed=3)
    assert 0 < partial.low < partial.difference < partial.high


def test_bootstrap_counts_match_seqeval(tmp_path):
    from dghc.pipeline.inference.metrics import entity_scores

    predicted = [g if i % 3 else ["O"] * len(g) for i, g in enumerate(GOLD)]
    result = paired_bootstrap(GOLD, predicted, GOLD, samples=10)
    assert result.f1_a == pytest.approx(entity_scores(GOLD, predicted)["overall"]["f1"])


def test_variants_are_named_by_their_switches():
    assert variant_of({}) == "full (DGHC)"
    assert variant_of({"use_image": False, "use_gates": False}) == "text only (BERT-CRF)"
    assert variant_of({"use_gates": False}) == "w/o gating"
    assert variant_of({"use_gates": False, "use_regions": False}) == "w/o gates + regions"


def write_run(folder: Path, *, seed: int, f1: float, data: str = "data/demo/train.txt", **train) -> Path:
    folder.mkdir(parents=True)
    scores = {"overall": {"precision": f1, "recall": f1, "f1": f1, "support": 10},
              "per_type": {"PER": {"precision": f1, "recall": f1, "f1": f1, "support": 5}}}
    (folder / "metrics.json").write_text(json.dumps({"default": scores, "strict": scores, "mode": "x",
                                                     "gates_mean_per_layer": [[0.7, 0.3], [0.4, 0.6]]}))
    (folder / "params.yaml").write_text(yaml.safe_dump({"data": {"train": data, "dev": "d", "test": "t"},
                                                        "train": {"seed": seed, **train}}))
    (folder / "train_log.csv").write_text("epoch,loss,dev_precision,dev_recall,dev_f1\n1,2.0,,,0.5\n2,1.0,,,0.7\n")
    posts = "\n\n".join(f"IMGID:{i}\nJordan\tB-PER\t{'B-PER' if f1 > 0.5 or i % 2 else 'O'}" for i in range(20))
    (folder / "predictions.txt").write_text(posts + "\n")
    return folder


def test_table_of_run_folders_with_one_variant_of_one_run(tmp_path):
    runs = [write_run(tmp_path / "full-1", seed=1, f1=0.8), write_run(tmp_path / "full-2", seed=2, f1=0.9),
            write_run(tmp_path / "text-1", seed=1, f1=0.5, use_image=False)]
    table = build_table(runs_from_folders(runs), "main", samples=200)
    text = markdown(table)
    print(text)
    assert "| text only (BERT-CRF) | 1 | 50.00 ± n/a |" in text and "| full (DGHC) | 2 | 85.00 ± 7.07 |" in text
    assert table.rows[0].versus_full is not None and table.rows[0].versus_full.difference < 0

    result = CliRunner().invoke(dghc, ["table", *map(str, runs), "--out", str(tmp_path / "page"), "--table", "main"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "page" / "table.html").read_text()
    assert "85.00 ± 7.07" in page and page.count("data:image/png;base64,") == 2
    assert sorted(p.name for p in (tmp_path / "page").iterdir()) == ["dev_f1.png", "gates.png", "table.html",
                                                                     "table.md"]


def test_bad_runs_are_refused_naming_them(tmp_path):
    a = write_run(tmp_path / "a", seed=1, f1=0.8)
    b = write_run(tmp_path / "b", seed=1, f1=0.8, data="data/twitter2017/train.txt")
    with pytest.raises(DghcError, match="different data.*a.*twitter2017.*b"):
        build_table(runs_from_folders([a, b]))
    (b / "metrics.json").write_text(json.dumps({"default": {"overall": {"f1": 0.5}}}))
    with pytest.raises(DghcError, match="b: cache/metrics.json: not a metrics file of `dghc evaluate --metrics`"):
        runs_from_folders([b])
    with pytest.raises(DghcError, match="needs runs of text only"):
        build_table(runs_from_folders([a]), "main")


def test_cross_table_shows_the_other_data_sets(tmp_path):
    runs = []
    for seed, f1 in ((1, 0.8), (2, 0.6)):
        folder = write_run(tmp_path / f"full-{seed}", seed=seed, f1=0.9)
        params = yaml.safe_load((folder / "params.yaml").read_text())
        params["cross"] = {"twitter2017": {"test": "t17.txt", "images": "i17"}}
        (folder / "params.yaml").write_text(yaml.safe_dump(params))
        (folder / "cache" / "cross" / "twitter2017").mkdir(parents=True)
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["default"]["overall"]["f1"] = f1
        (folder / "cache" / "cross" / "twitter2017" / "metrics.json").write_text(json.dumps(metrics))
        runs.append(folder)
    text = markdown(build_table(runs_from_folders(runs), "cross"))
    print(text)
    assert "F1 on twitter2017" in text and "70.00 ± 14.14" in text
    with pytest.raises(DghcError, match="no run was scored on another data set"):
        build_table(runs_from_folders([write_run(tmp_path / "plain", seed=1, f1=0.5)]), "cross")


def test_compare_cli_reads_windows_line_endings_and_a_bom_like_plain_files(tmp_path):
    # The same predictions saved with CRLF and a BOM must give the same F1, not 0 (labels read as 'B-PER\r').
    posts = "\n\n".join(f"IMGID:{i}\nJordan\tB-PER\t{'B-PER' if i % 3 else 'O'}\nsmiles\tO\tO" for i in range(12))
    plain = tmp_path / "plain.txt"
    plain.write_text(posts + "\n", encoding="utf-8")
    windows = tmp_path / "windows.txt"
    windows.write_bytes(b"\xef\xbb\xbf" + (posts + "\n").replace("\n", "\r\n").encode("utf-8"))
    result = CliRunner().invoke(dghc, ["compare", str(windows), str(plain), "--samples", "50"])
    print(result.output)
    assert result.exit_code == 0, result.output
    assert "F1 A 80.00, B 80.00" in result.output and "A - B: +0.00 points" in result.output


def test_compare_cli_names_a_file_that_is_not_utf8(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("IMGID:1\nJordan\tB-PER\tB-PER\n", encoding="utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"IMGID:1\nJ\xe9rdan\tB-PER\tB-PER\n")
    result = CliRunner().invoke(dghc, ["compare", str(good), str(bad)])
    print(result.output)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert f"{bad}:2: bytes that are not UTF-8" in result.output and "Traceback" not in result.output


def test_grid_blames_only_its_own_failed_runs(monkeypatch, tmp_path):
    # dvc's queue keeps the failures of earlier grids: a later grid that ran well must not report them
    import subprocess as real

    from dghc.pipeline.experiments import grid as grid_module

    statuses = iter(["Task     Name      Created  Status\nab12     exp-old   10:00    Failed\n",
                     "Task     Name      Created  Status\nab12     exp-old   10:00    Failed\n"
                     "cd34     exp-new   11:00    Success\nef56     exp-bad   11:00    Failed\n"])

    def fake_run(command, **kwargs):
        stdout = next(statuses) if command[1:3] == ["queue", "status"] else ""
        return real.CompletedProcess(command, 0, stdout=stdout, stderr="")

    monkeypatch.setattr(grid_module.subprocess, "run", fake_run)
    with pytest.raises(DghcError, match=r"1 of 2 experiments failed \(exp-bad\)"):
        grid_module.run_grid("main", 1, [], 1, tmp_path, log=lambda _: None)
