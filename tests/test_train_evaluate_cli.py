"""`dghc train` and `dghc evaluate` through the CLI on a tiny real pipeline, and their bad-input messages."""
from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dghc.cli import dghc
from dghc.pipeline.demo.config import DemoConfig
from dghc.pipeline.demo.writer import write_demo_data
from dghc.pipeline.detection.config import DetectConfig
from dghc.pipeline.detection.run import run_detect
from dghc.pipeline.features.config import ExtractConfig
from dghc.pipeline.features.extract import extract_features
from tests.tiny_models import save_tiny_bert


@pytest.fixture(scope="module")
def pipeline_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_pipeline")
    write_demo_data(DemoConfig(out=root / "demo", train=12, valid=4, test=6, image_size=128))
    files = [root / "demo" / f"{s}.txt" for s in ("train", "valid", "test")]
    run_detect(DetectConfig(files=files, out=root / "detections.h5", imgsz=160, grounding=None,
                            progress=False), log=lambda _: None)
    extract_features(ExtractConfig(data=files, detections=root / "detections.h5", out=root / "features.h5",
                                   num_workers=0, device="cpu", progress=False))
    bert = save_tiny_bert(root / "bert", hidden=32, layers=2, heads=2)
    result = invoke("train", "--train", str(files[0]), "--dev", str(files[1]), "--features", str(root / "features.h5"),
                    "--out", str(root / "model"), "--metrics", str(root / "train_metrics.json"),
                    "--set", f"encoder={bert}", "--set", "epochs=2", "--set", "prompt_dim=16",
                    "--set", f"detections_file={root / 'detections.h5'}", "--set", f"log_file={root / 'log.csv'}",
                    "--set", "progress=false", "--state", str(root / "state"))
    assert result.exit_code == 0, result.output
    return {"root": root, "train": files[0], "valid": files[1], "test": files[2], "model": root / "model",
            "features": root / "features.h5", "detections": root / "detections.h5", "bert": bert}


def invoke(*args: str):
    return CliRunner().invoke(dghc, list(args))


def assert_clean_error(result, *phrases: str) -> None:
    assert result.exit_code != 0
    # CliRunner catches tracebacks: an error shown as a clean message leaves SystemExit, anything else is a crash
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for phrase in phrases:
        assert phrase in result.output, result.output


def test_train_writes_checkpoint_metrics_and_log(pipeline_files):
    root = pipeline_files["root"]
    metrics = json.loads((root / "train_metrics.json").read_text())
    # the best epoch is the one with the best dev F1 in the log, and its scores are the ones reported
    rows = list(csv.DictReader((root / "log.csv").open()))
    print(f"dev F1 by epoch: {[row['dev_f1'] for row in rows]}; best epoch {metrics['best_epoch']}")
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    best_f1 = max(float(row["dev_f1"]) for row in rows)
    assert float(rows[metrics["best_epoch"] - 1]["dev_f1"]) == pytest.approx(best_f1)
    assert metrics["dev_default_f1"] == pytest.approx(best_f1, abs=1e-4)
    assert {"dev_default_f1", "dev_strict_f1", "dev_default_precision", "dev_default_recall"} <= set(metrics)
    assert {"model.safetensors", "dghc.json", "encoder"} <= {p.name for p in pipeline_files["model"].iterdir()}
    meta = json.loads((pipeline_files["model"] / "dghc.json").read_text())
    assert meta["features_fingerprint"]["untrained"] is True
    assert meta["detections_fingerprint"]["m"] == 3
    assert (root / "log.csv").read_text().startswith("epoch,loss,dev_precision,dev_recall,dev_f1\n")


def test_evaluate_writes_both_modes_gates_and_predictions(pipeline_files, tmp_path):
    result = invoke("evaluate", str(pipeline_files["model"]), str(pipeline_files["test"]), "--features",
                    str(pipeline_files["features"]), "--metrics", str(tmp_path / "m.json"),
                    "--predictions", str(tmp_path / "p.txt"))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["default"]["mode"] == "default" and metrics["strict"]["mode"] == "strict"
    assert set(metrics["default"]["overall"]) == {"precision", "recall", "f1", "support"}
    assert 0 < metrics["relevance_mean"] < 1
    assert len(metrics["gates_mean_per_layer"]) == 2
    assert all(abs(sum(row) - 1) < 1e-4 for row in metrics["gates_mean_per_layer"])
    lines = [line for line in (tmp_path / "p.txt").read_text().splitlines() if line and not line.startswith("IMGID")]
    gold_tokens = [line for line in pipeline_files["test"].read_text().splitlines()
                   if line and not line.startswith("IMGID")]
    assert len(lines) == len(gold_tokens) and all(len(line.split("\t")) == 3 for line in lines)


def test_evaluate_on_the_auto_device(pipeline_files, tmp_path):
    # `auto` was passed on to torch.device as written: a RuntimeError traceback instead of the GPU or the CPU
    runs = {}
    for device in ("cpu", "auto"):
        result = invoke("evaluate", str(pipeline_files["model"]), str(pipeline_files["test"]), "--features",
                        str(pipeline_files["features"]), "--device", device, "--metrics", str(tmp_path / f"{device}.json"))
        assert result.exit_code == 0, result.output
        runs[device] = json.loads((tmp_path / f"{device}.json").read_text())["default"]["overall"]
    print(runs)
    if not torch.cuda.is_available():  # auto is the CPU here: the same scores
        assert runs["auto"] == runs["cpu"]


def test_empty_split_is_refused(pipeline_files, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = invoke("evaluate", str(pipeline_files["model"]), str(empty), "--features", str(pipeline_files["features"]))
    assert_clean_error(result, "no posts")
    result = invoke("train", "--train", str(empty), "--dev", str(pipeline_files["valid"]),
                    "--features", str(pipeline_files["features"]), "--out", str(tmp_path / "m"),
                    "--state", str(tmp_path / "state"))  # not the repository's cache/train_state
    assert_clean_error(result, str(empty), "no posts")


def test_features_from_another_vision_model_are_refused(pipeline_files, tmp_path):
    files = [pipeline_files["test"]]
    extract_features(ExtractConfig(data=files, detections=pipeline_files["detections"], out=tmp_path / "other.h5",
                                   num_workers=0, device="cpu", seed=7, progress=False))
    result = invoke("evaluate", str(pipeline_files["model"]), str(pipeline_files["test"]),
                    "--features", str(tmp_path / "other.h5"))
    assert_clean_error(result, "weights_sha256", "expected")


def test_features_for_other_data_are_refused(pipeline_files, tmp_path):
    data = tmp_path / "other.txt"
    data.write_text("IMGID:elsewhere-1\nParis\tB-LOC\n")
    result = invoke("evaluate", str(pipeline_files["model"]), str(data), "--features", str(pipeline_files["features"]))
    assert_clean_error(result, "no row for 1 of the 1 posts", "dghc extract")


def test_model_needs_its_features(pipeline_files):
    result = invoke("evaluate", str(pipeline_files["model"]), str(pipeline_files["test"]))
    assert_clean_error(result, "--features")


def test_changed_checkpoint_is_refused(pipeline_files, tmp_path):
    changed = tmp_path / "model"
    shutil.copytree(pipeline_files["model"], changed)
    meta = json.loads((changed / "dghc.json").read_text())
    meta["model"]["labels"] = meta["model"]["labels"][:5]  # another label set than the weights
    (changed / "dghc.json").write_text(json.dumps(meta))
    result = invoke("evaluate", str(changed), str(pipeline_files["test"]), "--features", str(pipeline_files["features"]))
    assert_clean_error(result, "do not fit", "retrain")

    shutil.rmtree(changed)
    shutil.copytree(pipeline_files["model"], changed)
    config = json.loads((changed / "encoder" / "config.json").read_text())
    config["hidden_size"], config["num_attention_heads"] = 64, 4  # another encoder than the weights
    (changed / "encoder" / "config.json").write_text(json.dumps(config))
    result = invoke("evaluate", str(changed), str(pipeline_files["test"]), "--features", str(pipeline_files["features"]))
    assert_clean_error(result, "do not fit")


def test_unknown_types_and_long_posts_are_reported_and_every_word_is_tagged(pipeline_files, tmp_path, caplog):
    words = [f"word{i}" for i in range(300)]
    data = tmp_path / "odd.txt"
    # ids of the test split, so that the features file has their rows
    data.write_text("IMGID:test-0000\n" + "".join(f"{w}\tO\n" for w in words)
                    + "\nIMGID:test-0001\nExpo\tB-EVENT\n2020\tI-EVENT\n")
    args = ["evaluate", str(pipeline_files["model"]), str(data), "--features", str(pipeline_files["features"]),
            "--predictions", str(tmp_path / "p.txt")]
    # a type the model never learned is refused at its line (a typo, or another data set's type)...
    assert_clean_error(invoke(*args), f"{data}:304: B-EVENT: type EVENT is not one the model learns")
    assert not (tmp_path / "p.txt").exists()
    # ...and scored as missed when asked
    with caplog.at_level(logging.WARNING):
        result = invoke(*args, "--allow-unseen-types")
    assert result.exit_code == 0, result.output
    assert "EVENT" in caplog.text and "not trained on" in caplog.text
    assert "shortened" in caplog.text or "do not fit" in caplog.text
    predicted = (tmp_path / "p.txt").read_text().split("\n\n")[0].splitlines()[1:]
    assert len(predicted) == 300


def test_unknown_parameter_lists_known_ones(pipeline_files):
    result = invoke("train", "--set", "epochz=3")
    assert_clean_error(result, "epochz", "epochs")


def test_evaluate_under_the_precision_switch(pipeline_files, tmp_path):
    args = ["evaluate", str(pipeline_files["model"]), str(pipeline_files["test"]), "--features",
            str(pipeline_files["features"])]
    assert_clean_error(invoke(*args, "--precision", "fp16"), "fp16 needs a CUDA GPU")
    scores, labels = {}, {}
    for precision in ("no", "bf16"):  # bf16 autocast runs on the CPU too
        result = invoke(*args, "--precision", precision, "--summary", str(tmp_path / f"{precision}.json"),
                        "--predictions", str(tmp_path / f"{precision}.txt"))
        assert result.exit_code == 0, result.output
        scores[precision] = json.loads((tmp_path / f"{precision}.json").read_text())["default_f1"]
        labels[precision] = [line.split("\t")[2] for line in (tmp_path / f"{precision}.txt").read_text().splitlines()
                             if line and not line.startswith("IMGID")]
    agreement = sum(a == b for a, b in zip(labels["no"], labels["bf16"])) / len(labels["no"])
    print(f"test F1 in float32 {scores['no']:.4f}, under bf16 autocast {scores['bf16']:.4f}; "
          f"same predicted label on {agreement:.1%} of {len(labels['no'])} tokens")
    # Token labels, not F1: on 6 posts one flipped entity moves F1 a lot; bf16 keeps 8 mantissa bits, so the
    # emissions of a 2-epoch model can tie differently on a few tokens, and no more.
    assert len(labels["no"]) == len(labels["bf16"]) > 0
    assert agreement >= 0.8


def test_dev_scores_read_the_gold_as_written_like_evaluate(pipeline_files, tmp_path, caplog):
    """A stray I- in dev stays as written during training (strict mode: no entity there), as in `dghc evaluate`,
    so the strict dev scores of both agree; the train split is repaired (the model learns B- there)."""
    from dghc.pipeline.training.plan import read_split

    lines = pipeline_files["valid"].read_text().splitlines()
    # the first B- that opens an entity after O or at the start of a post: as I- it is a stray one
    at = next(i for i, line in enumerate(lines) if "\tB-" in line
              and (lines[i - 1].startswith("IMGID") or lines[i - 1].endswith("\tO")))
    token, label = lines[at].split("\t")
    lines[at] = f"{token}\tI-{label[2:]}"
    stray_dev = tmp_path / "valid_stray.txt"
    stray_dev.write_text("\n".join(lines) + "\n")
    kept = [label for post in read_split(stray_dev, True, "dev") for label in post.labels]
    repaired = [label for post in read_split(stray_dev, True, "train") for label in post.labels]
    assert f"I-{label[2:]}" in kept and kept.count(label) == repaired.count(label) - 1

    result = invoke("train", "--train", str(pipeline_files["train"]), "--dev", str(stray_dev), "--features",
                    str(pipeline_files["features"]), "--out", str(tmp_path / "model"), "--metrics",
                    str(tmp_path / "train_metrics.json"), "--set", f"encoder={pipeline_files['bert']}",
                    "--set", "epochs=1", "--set", "prompt_dim=16", "--set", "log_file=", "--set", "progress=false",
                    "--set", f"detections_file={pipeline_files['detections']}", "--state", str(tmp_path / "state"))
    assert result.exit_code == 0, result.output
    assert "1 stray I- tags kept as written" in caplog.text
    result = invoke("evaluate", str(tmp_path / "model"), str(stray_dev), "--features", str(pipeline_files["features"]),
                    "--metrics", str(tmp_path / "m.json"))
    assert result.exit_code == 0, result.output
    evaluated = json.loads((tmp_path / "m.json").read_text())
    assert evaluated["strict"]["overall"]["support"] == evaluated["default"]["overall"]["support"] - 1
    trained = json.loads((tmp_path / "train_metrics.json").read_text())
    for measure in ("precision", "recall", "f1"):
        assert trained[f"dev_strict_{measure}"] == pytest.approx(evaluated["strict"]["overall"][measure], abs=1e-4)


def test_a_model_that_saw_few_images_says_so(pipeline_files, tmp_path, caplog):
    """The share of training posts with an image is recorded; a model whose share is small warns when used."""
    meta = json.loads((pipeline_files["model"] / "dghc.json").read_text())
    share = meta["info"]["train_image_share"]
    assert 0.5 < share <= 1.0  # the demo's posts mostly have an image
    rare = tmp_path / "rare_model"
    shutil.copytree(pipeline_files["model"], rare)
    meta["info"]["train_image_share"] = 0.01
    (rare / "dghc.json").write_text(json.dumps(meta))
    for model, warned in ((pipeline_files["model"], False), (rare, True)):
        caplog.clear()
        result = invoke("evaluate", str(model), str(pipeline_files["test"]), "--features",
                        str(pipeline_files["features"]))
        assert result.exit_code == 0, result.output
        assert ("only 1.0% of the training posts had an image" in caplog.text) == warned, caplog.text


def test_gold_other_is_read_as_the_model_was_trained():
    from types import SimpleNamespace

    from dghc.pipeline.core.errors import DghcError
    from dghc.pipeline.data.tags import OTHER_AS_MISC, bioes_label_set
    from dghc.pipeline.inference.evaluation import gold_type_map

    def model(*types: str):
        return SimpleNamespace(tagger=SimpleNamespace(config=SimpleNamespace(labels=bioes_label_set(list(types)))))

    # trained with --no-merge-other: the gold keeps OTHER, with or without --keep-other
    assert gold_type_map(model("PER", "OTHER"), keep_other=False) is None
    assert gold_type_map(model("PER", "OTHER"), keep_other=True) is None
    # trained with OTHER read as MISC: the gold too; --keep-other would make every OTHER entity a miss
    assert gold_type_map(model("PER", "MISC"), keep_other=False) == OTHER_AS_MISC
    with pytest.raises(DghcError, match="trained with OTHER read as MISC"):
        gold_type_map(model("PER", "MISC"), keep_other=True)


def test_evaluate_refuses_keep_other_for_a_model_that_learned_misc(pipeline_files):
    result = invoke("evaluate", str(pipeline_files["model"]), str(pipeline_files["test"]), "--features",
                    str(pipeline_files["features"]), "--keep-other")
    assert_clean_error(result, "--keep-other: the model was trained with OTHER read as MISC", "leave --keep-other out")


def test_train_warns_when_the_detections_file_is_missing_or_not_the_features_one(pipeline_files, tmp_path, caplog):
    from dghc.pipeline.detection.config import DetectConfig as Detect
    from dghc.pipeline.features.store import FeatureStore
    from dghc.pipeline.training.plan import recorded_detections

    features = FeatureStore(pipeline_files["features"])
    with caplog.at_level(logging.WARNING):
        assert recorded_detections(features, pipeline_files["detections"])["m"] == 3
    assert not caplog.records  # the file the features came from: silent
    with caplog.at_level(logging.WARNING):
        assert recorded_detections(features, tmp_path / "none.h5") is None
    assert "no detections file there" in caplog.text and "--detections" in caplog.text
    caplog.clear()
    other = tmp_path / "other.h5"  # same images, another confidence threshold
    run_detect(Detect(files=[pipeline_files["train"]], out=other, imgsz=160, conf=0.5, grounding=None, progress=False),
               log=lambda _: None)
    with caplog.at_level(logging.WARNING):
        assert recorded_detections(features, other)["conf"] == 0.5
    assert "is not the detections file the features were extracted from" in caplog.text
