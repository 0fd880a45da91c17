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
