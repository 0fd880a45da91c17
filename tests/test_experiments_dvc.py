"""A table for real: 2 seeds x (text only, full) through DVC's experiment queue in a temporary git repository,
then `dghc table` on the experiments, and its page rendered by headless Chromium."""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from dghc.pipeline.demo.oracle import image_dependent_recall
from dghc.pipeline.experiments.runs import runs_from_dvc
from tests.environment import REPO, TEST_THREADS, require_tool

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def run(args: list[str], cwd: Path, env: dict) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def experiments(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("experiments")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in filter(None, files.split("\0")):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["demo_data"].update(train=240, valid=40, test=80)
    params["detect"].update(imgsz=160, batch_size=16)
    params["extract"].update(num_workers=0)
    params["train"].update(epochs=3, eval_begin_epoch=1, progress=False)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("DVC_")}
    env = {**inherited, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "DVC_SITE_CACHE_DIR": str(root / ".dvc" / "tmp" / "site-cache"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "YOLO_CONFIG_DIR": str(root / ".yolo"), "OMP_NUM_THREADS": str(TEST_THREADS), "PYTHONPATH": str(root)}
    run(["git", "init", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "tiny"], root, env)
    run([str(BIN / "dvc"), "repro", "demo_data"], root, env)  # demo.json, to score the image-dependent entities
    run([str(BIN / "dghc"), "experiments", "run", "--table", "main", "--seeds", "2"], root, env)
    return root, env


def test_table_of_two_variants_of_two_runs_full_ahead_on_what_only_the_image_tells(experiments, capsys):
    root, env = experiments
    markdown = run([str(BIN / "dghc"), "table", "--table", "main", "--out", str(root / "page"), "--samples", "300"],
                   root, env)
    with capsys.disabled():  # the table goes to the log of every run, passed or not
        print(f"\n{markdown}")
    assert "| text only (BERT-CRF) | 2 |" in markdown and "| full (DGHC) | 2 |" in markdown
    recalls: dict[str, list[float]] = {}
    for run_ in runs_from_dvc(root):
        predicted = {post_id: labels for post_id, _, labels in run_.predictions}
        recalls.setdefault(run_.variant, []).append(
            image_dependent_recall(root / "data" / "demo" / "demo.json", "test", predicted))
    with capsys.disabled():
        print(f"image-dependent entities typed right: {recalls}")
    assert sorted(map(len, recalls.values())) == [2, 2]
    assert statistics.fmean(recalls["full (DGHC)"]) > statistics.fmean(recalls["text only (BERT-CRF)"])
    assert (root / "page" / "dev_f1.png").stat().st_size > 1000


def test_the_table_page_renders_with_its_numbers(experiments, tmp_path):
    require_tool(Path(CHROMIUM).is_file(), "chromium (Debian package `chromium`; .ci/run installs it)")
    root, _ = experiments
    page = root / "page" / "table.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    env = {**os.environ, "HOME": str(tmp_path)}
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, env=env).stdout
    row = next(line for line in (root / "page" / "table.md").read_text().splitlines()
               if line.startswith("| full (DGHC)"))
    for number in [cell.strip() for cell in row.split("|")[3:6]]:  # P, R, F1 as "mean ± std"
        assert number in dom, (number, dom[:2000])
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri()],
                   capture_output=True, timeout=120, env=env)
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 22)
    assert len(colours) > 200 and max(count for count, _ in colours) < 0.95 * 1200 * 900
