"""The package layout's promises, checked on the imports themselves (function-level ones too)."""
from __future__ import annotations

import pytest

from tests.conftest import REPO
from tests.imports import project_closure

# Using a trained model must not run training code (predict, evaluate and report load no optimizer, no trainer).
INFERENCE_SIDE = ["pipeline.inference.evaluation", "pipeline.inference.tagging", "pipeline.prediction.run",
                  "pipeline.report.build", "stages.evaluate", "stages.predict"]


@pytest.mark.parametrize("module", INFERENCE_SIDE)
def test_inference_never_imports_training(module):
    training = sorted(str(p.relative_to(REPO)) for p in project_closure(module) if "training" in p.parts)
    assert not training, f"{module} runs {training}"


def test_the_resume_key_hashes_the_code_training_runs_and_only_that():
    """A saved training state is tied to the code the trainer imports (sub-word alignment included), not to
    evaluate's or predict's code, whose edits must not make a long run start over."""
    from pathlib import Path

    import pipeline
    from pipeline.artifacts.fingerprint import import_closure

    files = {str(p.relative_to(REPO)) for p in import_closure("pipeline.training.trainer",
                                                               Path(pipeline.__file__).parent.parent, ("pipeline",))}
    assert {"pipeline/data/alignment.py", "pipeline/model/tagger.py", "pipeline/inference/tagging.py"} <= files
    assert not files & {"pipeline/inference/evaluation.py", "pipeline/prediction/run.py", "pipeline/report/build.py"}


def test_only_the_scale_package_imports_ray():
    """Ray is an optional extra: the local engine, and every reader of a sharded store, work without it."""
    import ast

    importers = set()
    for path in [*(REPO / "pipeline").rglob("*.py"), *(REPO / "stages").rglob("*.py"), REPO / "cli.py"]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name == "ray" or name.startswith("ray.") for name in names):
                importers.add(path.relative_to(REPO).parts[:2])
    assert importers == {("pipeline", "scale")}, importers
