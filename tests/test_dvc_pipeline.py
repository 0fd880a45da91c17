"""A real `dvc repro` of the whole pipeline on a tiny configuration, in a temporary git repository."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.environment import REPO, TEST_THREADS
from tests.tiny_models import save_tiny_bert

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path, env: dict) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-4000:]}"
    return output


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    """The repository's tracked files (as in the working tree) in a fresh git repo, with a tiny params.yaml."""
    root = tmp_path_factory.mktemp("project")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in filter(None, files.split("\0")):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    encoder = save_tiny_bert(tmp_path_factory.mktemp("encoder"), hidden=32, layers=2, heads=2)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["demo_data"].update(train=24, valid=8, test=8)
    params["detect"].update(imgsz=160, batch_size=16)
    params["extract"].update(num_workers=0)
    params["train"].update(encoder=str(encoder), epochs=1, prompt_dim=16, progress=False)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The subprocesses get a controlled environment: a user's DVC_* settings are dropped, and DVC's site cache is
    # put inside the project by an absolute path, as the Makefile does.
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("DVC_")}
    env = {**inherited, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "DVC_SITE_CACHE_DIR": str(root / ".dvc" / "tmp" / "site-cache"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "YOLO_CONFIG_DIR": str(root / ".yolo"), "OMP_NUM_THREADS": str(TEST_THREADS)}
    env["PYTHONPATH"] = str(root)  # run the copy's code, not the editable install's
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode written next to the code must not count as a change
    run(["git", "init", "-q"], root, env)
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "tiny"], root, env)
    return root, env


def make_demo(root: Path, env: dict) -> str:
    """`make demo` without its install step: the pipeline in the demo's own DVC project, .demo/."""
    return run(["make", "--no-print-directory", "demo-repro"], root, env)


def git_status(root: Path, env: dict) -> str:
    return run(["git", "status", "--porcelain", "--untracked-files=all"], root, env)


def test_make_demo_runs_every_stage_then_nothing_then_only_what_changed(project):
    """The demo's dvc.lock lies in .demo/, which git ignores: the tiny parameters here give other output hashes
    than any lock the repository could hold, as another CPU's floats would, and the clone stays clean."""
    root, env = project
    first = make_demo(root, env)
    assert stages_run(first) == {"demo_data", "detect", "extract", "train", "evaluate"}
    for output in ("cache/detections.h5", "cache/features.h5", "cache/model/model.safetensors", "cache/metrics.json",
                   "cache/train_log.csv", "cache/predictions.txt", ".demo/dvc.lock"):
        assert (root / output).exists(), output
    assert not (root / "dvc.lock").exists()
    assert git_status(root, env) == ""
    assert (root / ".dvc" / "tmp" / "site-cache").is_dir()  # DVC's site cache stays inside the project

    second = make_demo(root, env)
    assert stages_run(second) == set()

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["epochs"] = 2
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = make_demo(root, env)
    assert stages_run(third) == {"train", "evaluate"}

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["detect"]["conf"] = 0.3
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    after_detect_change = make_demo(root, env)
    assert stages_run(after_detect_change) == {"detect", "extract", "train", "evaluate"}

    evaluation_code = root / "pipeline" / "inference" / "evaluation.py"
    evaluation_code.write_text(evaluation_code.read_text() + "\n# a change of the scoring code\n")
    fourth = make_demo(root, env)
    assert stages_run(fourth) == {"evaluate"}
    assert "cache/scores.json" in fourth and "default_f1" in fourth  # `dvc metrics show`
    run(["git", "add", "-A"], root, env)  # the edits above are the user's
    run(["git", "commit", "-qm", "edits"], root, env)
    assert git_status(root, env) == ""


def test_repro_at_the_root_after_the_demo_restores_from_the_run_cache(project):
    """The root project (a user's own runs, experiments) shares the demo's DVC cache: the demo's results come back
    without a stage running, and its dvc.lock is the user's to commit."""
    root, env = project
    before = (root / "cache" / "model" / "model.safetensors").read_bytes()
    output = run([str(BIN / "dvc"), "repro"], root, env)
    assert stages_run(output) == set(), output[-3000:]
    assert output.count("is cached - skipping run") == 5, output[-3000:]
    assert (root / "cache" / "model" / "model.safetensors").read_bytes() == before
    assert git_status(root, env) == "?? dvc.lock\n"


def test_experiment_with_set_param_runs(project):
    root, env = project
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "after repro"], root, env)
    output = run([str(BIN / "dvc"), "exp", "run", "-S", "train.use_image=false"], root, env)
    assert stages_run(output) == {"train", "evaluate"}


def test_cross_data_sets_get_their_own_stage(project):
    """params.yaml's `cross` names other data sets: the trained model is scored on each (the paper's Table 6).
    Here the 'other' set is the demo test split itself, so its scores must equal the evaluate stage's."""
    root, env = project
    # An edit of the text, not a PyYAML round trip: the previous test's `dvc exp run -S` rewrote params.yaml in
    # YAML 1.2, where `precision: no` is a string that PyYAML (YAML 1.1) would turn into `false`.
    text = (root / "params.yaml").read_text()
    assert "\ncross: {}" in text
    text = text.replace("\ncross: {}", "\ncross:\n  again:\n    test: data/demo/test.txt\n    images: data/demo/images")
    (root / "params.yaml").write_text(text)
    output = run([str(BIN / "dvc"), "repro"], root, env)
    assert stages_run(output) == {"cross_evaluate@again"}, output
    cross = json.loads((root / "cache" / "cross" / "again" / "scores.json").read_text())
    main = json.loads((root / "cache" / "scores.json").read_text())
    assert cross == main
