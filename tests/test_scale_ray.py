"""--engine ray: detect and extract as Ray Data pipelines on a real local Ray cluster, writing sharded stores.

The sharded store's own tests (folder of shard files + index.h5 read as one file) are quick; everything that
starts Ray is slow (a local cluster takes a few seconds to start). The engine must give what the local engine
gives: same ids, statuses and boxes, vectors within 1e-5.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from dghc.cli import dghc
from dghc.pipeline.artifacts.shards import INDEX, check_store_folder, plan_shards, store_file, write_index
from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.detection.config import DetectConfig
from dghc.pipeline.detection.run import run_detect
from dghc.pipeline.detection.store import load_detections
from dghc.pipeline.features import store as layout
from dghc.pipeline.features.clip_encoder import load_clip
from dghc.pipeline.features.config import ExtractConfig
from dghc.pipeline.features.extract import extract_features
from dghc.pipeline.features.store import FeatureStore
from dghc.pipeline.scale.detect import detect_on_ray
from dghc.pipeline.scale.extract import extract_on_ray
from tests.environment import REPO
from tests.extract_fixtures import make_image, save_tiny_clip, write_conll

DGHC = str(Path(sys.executable).with_name("dghc"))


# ------------------------------------------------------------------------------------- the sharded store


def write_shard_store(folder: Path, ids: list[str], shard_size: int, dim: int = 4, m: int = 2) -> np.ndarray:
    """Features shards of ``ids`` written by the stage's own writer, plus their index; returns the vectors."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(ids), 1 + m, dim)).astype(np.float32)
    fingerprint = {"untrained": False, "case": "hand-made"}
    folder.mkdir()
    shards = plan_shards(len(ids), shard_size, batch_size=1, kind="features")
    for shard in shards:
        path = folder / shard.file
        layout.create_features_file(path, ids[shard.start:shard.stop], m, dim, "float32", fingerprint)
        rows = slice(shard.start, shard.stop)
        with layout.open_work_file(path) as handle:
            layout.write_rows(handle, 0, np.zeros(shard.stop - shard.start, np.uint8), vectors[rows],
                              np.ones((shard.stop - shard.start, 1 + m), bool))
    write_index(folder, shards, [{"present": shard.stop - shard.start} for shard in shards],
                text_datasets=(layout.IMAGE_IDS,))
    return vectors


def test_a_folder_of_shards_reads_as_one_features_file(tmp_path):
    ids = [f"id{i:02d}" for i in range(7)]
    vectors = write_shard_store(tmp_path / "store", ids, shard_size=3)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == \
        ["features-00000.h5", "features-00001.h5", "features-00002.h5", INDEX]
    store = FeatureStore(tmp_path / "store", in_memory=False)
    assert store.image_ids == ids
    read, mask = store.batch(["id06", "id00", "id04"])
    assert np.array_equal(read.numpy(), vectors[[6, 0, 4]]) and mask.all()
    with h5py.File(tmp_path / "store" / INDEX, "r") as handle:  # numbers are not copied: virtual datasets
        assert handle[layout.IMAGE_VECTORS].is_virtual and not handle[layout.IMAGE_IDS].is_virtual


def test_a_store_with_a_missing_shard_or_no_index_is_refused_by_name(tmp_path):
    ids = [f"id{i}" for i in range(5)]
    write_shard_store(tmp_path / "store", ids, shard_size=2)
    (tmp_path / "store" / "features-00001.h5").unlink()  # HDF5 would read its rows as zeros, silently
    with pytest.raises(DghcError, match=r"1 of its 3 shards are missing \(features-00001.h5\)"):
        FeatureStore(tmp_path / "store")
    with pytest.raises(DghcError, match="shards are missing"):  # the index named directly is checked too
        FeatureStore(tmp_path / "store" / INDEX)
    (tmp_path / "store" / INDEX).unlink()
    with pytest.raises(DghcError, match="without its index.h5.*rerun the same command to resume"):
        store_file(tmp_path / "store")


def test_the_sharded_output_must_be_a_folder_of_its_own(tmp_path):
    with pytest.raises(DghcError, match="named like a file"):
        check_store_folder(tmp_path / "features.h5", "features")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "detections.h5").write_bytes(b"someone else's file")
    with pytest.raises(DghcError, match=r"holds files that are not features shards \(detections.h5\)"):
        check_store_folder(tmp_path / "cache", "features")
    assert (tmp_path / "cache" / "detections.h5").is_file()
    # another stage's store (extract --out pointed at detect's folder) is refused before anything is deleted
    write_shard_store(tmp_path / "detections", ["a", "b"], shard_size=1)
    for item in (tmp_path / "detections").glob("features-*"):
        item.rename(item.with_name(item.name.replace("features", "detections")))
    with pytest.raises(DghcError, match=r"not features shards \(detections-00000.h5"):
        check_store_folder(tmp_path / "detections", "features")
    assert len(list((tmp_path / "detections").iterdir())) == 3


def test_shards_hold_whole_batches_of_the_local_engine():
    from dghc.pipeline.scale.batches import local_batches

    shards = plan_shards(40, shard_size=16, batch_size=3, kind="features")
    assert [(s.start, s.stop, s.file) for s in shards] == \
        [(0, 18, "features-00000.h5"), (18, 36, "features-00001.h5"), (36, 40, "features-00002.h5")]
    batches = local_batches(shards[1:], batch_size=3)
    assert [(b.start, b.stop) for b in batches] == [(18, 21), (21, 24), (24, 27), (27, 30), (30, 33), (33, 36),
                                                    (36, 39), (39, 40)]


def test_detect_on_ray_refuses_input_without_posts(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DghcError, match="no posts in"):
        detect_on_ray(DetectConfig(files=[tmp_path / "empty.txt"], out=tmp_path / "ray", engine="ray", grounding=None,
                                progress=False), log=lambda _: None)


def test_workers_take_a_gpu_each_where_the_cluster_has_gpus():
    from dghc.pipeline.scale.session import worker_resources

    assert worker_resources("auto", {"CPU": 8.0, "GPU": 2.0}).device == "cuda"
    assert worker_resources("auto", {"CPU": 8.0, "GPU": 2.0}).decode_in_tasks
    cpu = worker_resources("auto", {"CPU": 2.0})
    assert (cpu.device, cpu.num_gpus, cpu.num_cpus, cpu.decode_in_tasks) == ("cpu", 0.0, 1.0, False)
    with pytest.raises(DghcError, match="the Ray cluster has no GPU"):
        worker_resources("cuda", {"CPU": 2.0})


def test_decode_tasks_feed_gpu_actors_only_uint8_crops(tmp_path):
    """Float32 pixels never cross the object store: the image processor's own path (no uint8 step) decodes in
    the actors, as on CPU-only clusters."""
    from dghc.pipeline.features.preprocess import ProcessorPreprocessor
    from dghc.pipeline.scale.extract import decodes_in_tasks
    from dghc.pipeline.scale.session import worker_resources

    encoder = load_clip(str(save_tiny_clip(tmp_path / "clip")), device="cpu")
    gpus, cpus = worker_resources("auto", {"CPU": 8.0, "GPU": 2.0}), worker_resources("auto", {"CPU": 8.0})
    assert decodes_in_tasks(gpus, encoder.preprocessor)
    assert not decodes_in_tasks(gpus, ProcessorPreprocessor(encoder.processor))
    assert not decodes_in_tasks(cpus, encoder.preprocessor)


def test_an_address_nothing_answers_on_is_refused_at_once():
    import time

    from dghc.pipeline.scale.session import check_reachable

    started = time.monotonic()
    with pytest.raises(DghcError, match=r"extract: no Ray cluster answers at 127.0.0.1:1 .*HOST:PORT"):
        check_reachable("extract", "127.0.0.1:1")
    assert time.monotonic() - started < 10
    check_reachable("extract", "auto")  # Ray finds the cluster of this node itself


def test_without_ray_installed_the_engine_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    write_conll(tmp_path / "posts.txt", ["a"])
    result = CliRunner().invoke(dghc, ["extract", str(tmp_path / "posts.txt"), "--engine", "ray", "--out",
                                       str(tmp_path / "features"), "--quiet"])
    print(result.output)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'dghc[ray]'" in lines[0] and "--engine local" in lines[0]
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------------------- on a local Ray cluster


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """40 posts: 36 images of several sizes, 2 missing, 2 unreadable; detections from the packaged detector."""
    root = tmp_path_factory.mktemp("ray")
    images = root / "images"
    images.mkdir()
    ids = [f"p{i:02d}" for i in range(40)]
    for i, image_id in enumerate(ids):
        if i in (5, 17):
            (images / f"{image_id}.jpg").write_bytes(b"not an image")
        elif i not in (9, 30):
            make_image(images / f"{image_id}.jpg", 48 + 8 * (i % 5), 40 + 8 * (i % 3), seed=i)
    write_conll(root / "posts.txt", ids)
    run_detect(DetectConfig(files=[root / "posts.txt"], out=root / "detections.h5", imgsz=160, grounding=None,
                            progress=False, device="cpu"), log=lambda _: None)
    save_tiny_clip(root / "clip")
    return {"root": root, "posts": root / "posts.txt", "detections": root / "detections.h5", "clip": root / "clip"}


def extract_config(world, out: Path, **overrides) -> ExtractConfig:
    base = ExtractConfig(files=[world["posts"]], detections=world["detections"], out=out, model=str(world["clip"]),
                         dtype="float32", batch_size=4, num_workers=0, device="cpu", progress=False)
    return replace(base, **overrides)


def assert_same_features(local: Path, sharded: Path, same_fingerprint: bool = True) -> None:
    a, b = FeatureStore(local), FeatureStore(sharded)
    assert a.image_ids == b.image_ids and np.array_equal(a.status, b.status)
    assert a.fingerprint_sha256 == b.fingerprint_sha256 or not same_fingerprint
    va, ma = a.batch(a.image_ids)
    vb, mb = b.batch(b.image_ids)
    gap = float((va - vb).abs().max())
    print(f"largest difference local vs ray: {gap:.3g} (vectors up to {float(va.abs().max()):.3g})")
    assert np.array_equal(ma.numpy(), mb.numpy()) and gap <= 1e-5


@pytest.mark.slow
def test_extract_on_ray_equals_the_local_engine_and_records_bad_images_per_shard(world, tmp_path):
    # batches of 3 (40 images: the last batch is short), shards of 16 images rounded up to whole batches (18)
    local = extract_features(extract_config(world, tmp_path / "local.h5", batch_size=3))
    sharded = extract_on_ray(extract_config(world, tmp_path / "ray", engine="ray", workers=2, shard_size=16,
                                              batch_size=3))
    assert (sharded.images, sharded.present, sharded.missing, sharded.unreadable, sharded.regions) == \
        (local.images, local.present, local.missing, local.unreadable, local.regions) == (40, 36, 2, 2, local.regions)
    assert_same_features(tmp_path / "local.h5", tmp_path / "ray")
    with h5py.File(tmp_path / "ray" / INDEX, "r") as handle:
        shards = json.loads(handle.attrs["shards"])
    # unreadable p05, p17 and missing p09 are in the first shard (rows 0-17), missing p30 in the second (18-35)
    assert [(s["file"], s["rows"], s["counts"]["unreadable"], s["counts"]["missing"]) for s in shards] == \
        [("features-00000.h5", 18, 2, 1), ("features-00001.h5", 18, 0, 1), ("features-00002.h5", 4, 0, 0)]
    again = extract_on_ray(extract_config(world, tmp_path / "ray", engine="ray", workers=2, shard_size=16,
                                            batch_size=3))
    assert again.up_to_date
    # the same vectors in other shards are up to date; --force recomputes them, and the old shards are deleted
    assert extract_on_ray(extract_config(world, tmp_path / "ray", engine="ray", shard_size=30, batch_size=3)).up_to_date
    extract_on_ray(extract_config(world, tmp_path / "ray", engine="ray", workers=2, shard_size=30, batch_size=3,
                                    force=True))
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == ["features-00000.h5", "features-00001.h5", INDEX]
    assert_same_features(tmp_path / "local.h5", tmp_path / "ray")


@pytest.mark.slow
def test_extract_with_decoding_in_cpu_tasks_as_on_a_gpu_cluster(world, tmp_path, monkeypatch):
    """A GPU cluster decodes in CPU tasks feeding the model actors: what crosses the object store to them is uint8
    crops (not float32 pixels, 4x the bytes), and that split, on the CPU, gives the local engine's bits."""
    import pickle

    import dghc.pipeline.scale.extract as ray_extract
    from dghc.pipeline.scale.session import WorkerResources

    monkeypatch.setattr(ray_extract, "worker_resources",
                        lambda asked, cluster: WorkerResources("cpu", 0.0, 1.0, decode_in_tasks=True))
    handed = []
    run_batches = ray_extract.run_batches

    def measuring_run_batches(payloads, actor, arguments, resources, workers, blocks, prepare=None):
        assert prepare is not None and arguments["crops"] is None  # decoded in tasks, not in the actors
        handed.extend(prepare(payload) for payload in payloads)  # what the tasks pickle for the actors
        return run_batches(payloads, actor, arguments, resources, workers, blocks, prepare)

    monkeypatch.setattr(ray_extract, "run_batches", measuring_run_batches)
    extract_features(extract_config(world, tmp_path / "local.h5"))
    extract_on_ray(extract_config(world, tmp_path / "ray", engine="ray", workers=1, shard_size=16))
    assert len(handed) == 10 and all(batch.pixels.dtype == np.uint8 for batch in handed)
    crop_bytes = 3 * handed[0].pixels.shape[2] * handed[0].pixels.shape[3]  # one image or region, uint8
    for batch in handed:
        sent = len(pickle.dumps(batch))
        assert batch.pixels.shape[0] * crop_bytes <= sent <= batch.pixels.shape[0] * crop_bytes + 2048, sent
    assert_same_features(tmp_path / "local.h5", tmp_path / "ray")
    a, b = FeatureStore(tmp_path / "local.h5"), FeatureStore(tmp_path / "ray")
    assert np.array_equal(a.batch(a.image_ids)[0].numpy(), b.batch(b.image_ids)[0].numpy())  # bit for bit


@pytest.mark.slow
def test_detect_on_ray_equals_the_local_engine(world, tmp_path):
    config = DetectConfig(files=[world["posts"]], imgsz=160, grounding=None, progress=False, device="cpu",
                          batch_size=4)
    local = run_detect(replace(config, out=tmp_path / "local.h5"), log=lambda _: None)
    sharded = detect_on_ray(replace(config, out=tmp_path / "ray", engine="ray", workers=2, shard_size=12),
                         log=lambda _: None)
    assert sharded.counts == local.counts and sharded.regions == local.regions
    a, b = load_detections(tmp_path / "local.h5"), load_detections(tmp_path / "ray")
    print(f"regions: {int(a.valid.sum())}; largest box difference {float(np.abs(a.boxes - b.boxes).max()):.3g}")
    assert a.image_ids == b.image_ids and a.fingerprint_sha256 == b.fingerprint_sha256
    assert np.array_equal(a.status, b.status) and list(a.reason) == list(b.reason)
    assert np.array_equal(a.valid, b.valid) and np.array_equal(a.class_names, b.class_names)
    assert np.allclose(a.boxes, b.boxes, atol=1e-4) and np.allclose(a.scores, b.scores, atol=1e-5)
    # the features stage reads the sharded detections as it reads the file
    extract_features(extract_config(world, tmp_path / "features.h5", detections=tmp_path / "ray"))
    # a rerun after a lost shard recomputes that shard only
    (tmp_path / "ray" / "detections-00001.h5").unlink()
    notes = []
    again = detect_on_ray(replace(config, out=tmp_path / "ray", engine="ray", workers=2, shard_size=12), log=notes.append)
    assert "detect: 3 of 4 shards were finished by an earlier run (28 images): skipped" in notes, notes
    assert again.counts == local.counts and np.array_equal(load_detections(tmp_path / "ray").boxes, b.boxes)


@pytest.mark.slow
def test_an_error_in_a_ray_worker_is_one_line():
    """What a worker raises reaches the user as one line: a DghcError's own message, anything else named."""
    import ray.data

    from dghc.pipeline.scale.session import ray_cluster

    def refuse(batch):
        raise DghcError("clip: the CLIP weights differ from the recorded ones (use --clip-model)")

    def crash(batch):
        raise ValueError("tensor sizes do not match\nand a second line")

    for udf, expected in ((refuse, r"^clip: the CLIP weights differ from the recorded ones \(use --clip-model\)$"),
                          (crash, r"^extract: a Ray worker failed \(ValueError: tensor sizes do not match\); the "
                                  r"finished shards are kept: fix the cause and rerun the same command$")):
        with pytest.raises(DghcError) as caught:
            with ray_cluster("extract", None, 1):
                list(ray.data.from_items([{"x": 1}, {"x": 2}]).map_batches(udf, batch_size=1).iter_batches())
        print(caught.value)
        assert re.match(expected, str(caught.value)) and "\n" not in str(caught.value)


# ------------------------------------------------------------------------------------- killed processes


def extract_args(world, out: Path) -> list[str]:
    return ["extract", str(world["posts"]), "--detections", str(world["detections"]), "--out", str(out), "--model",
            str(world["clip"]), "--dtype", "float32", "--device", "cpu", "--engine", "ray", "--workers", "2",
            "--shard-size", "2", "--batch-size", "1", "--quiet"]


def start(args: list[str]) -> subprocess.Popen:
    # A session of its own: the driver and the local Ray cluster it starts can be killed together.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([DGHC, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO, start_new_session=True)


def session_processes(session: int) -> list:
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            if os.getsid(process.pid) == session:
                found.append(process)
        except (ProcessLookupError, PermissionError):
            continue
    return found


def kill_session(session: int) -> None:
    for process in session_processes(session):
        try:
            process.kill()
        except Exception:  # noqa: BLE001  (gone already)
            pass


def wait_for_shards(folder: Path, count: int, process: subprocess.Popen, timeout: float = 180) -> None:
    import time

    deadline = time.monotonic() + timeout
    while len(list(folder.glob("features-*.h5"))) < count:
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {count} shards were written: {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {count} shards in {folder}")
        time.sleep(0.01)


@pytest.mark.slow
def test_a_killed_run_resumes_by_skipping_the_finished_shards(world, tmp_path):
    extract_features(extract_config(world, tmp_path / "local.h5"))
    out = tmp_path / "ray"
    process = start(extract_args(world, out))
    try:
        wait_for_shards(out, 3, process)
        assert not (out / INDEX).exists(), "the run finished before it was killed: nothing to resume"
        os.killpg(process.pid, signal.SIGKILL)  # the driver and its Ray cluster
        process.wait(timeout=60)
    finally:
        kill_session(process.pid)
    finished = len(list(out.glob("features-*.h5")))
    rerun = subprocess.run([DGHC, *extract_args(world, out)], capture_output=True, text=True, cwd=REPO,
                           env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}, timeout=600)
    print(rerun.stderr[-3000:])
    assert rerun.returncode == 0
    assert f"{finished} of 20 shards were finished by an earlier run ({2 * finished} images): skipped" in rerun.stderr
    assert_same_features(tmp_path / "local.h5", out)


@pytest.mark.slow
def test_a_killed_ray_worker_loses_no_batch(world, tmp_path):
    extract_features(extract_config(world, tmp_path / "local.h5"))
    out = tmp_path / "ray"
    process = start(extract_args(world, out))
    try:
        wait_for_shards(out, 1, process)
        workers = [p for p in session_processes(process.pid) if "MapWorker" in " ".join(p.info["cmdline"] or [])
                   or "MapWorker" in (p.info["name"] or "")]
        assert workers, "no Ray model worker found in the run's session"
        assert not (out / INDEX).exists(), "the run finished before a worker was killed"
        os.kill(workers[0].pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=600)
    finally:
        kill_session(process.pid)
    print(f"killed worker {workers[0].pid} of {len(workers)}; stderr: {stderr[-3000:]}")
    assert process.returncode == 0
    assert_same_features(tmp_path / "local.h5", out)


@pytest.mark.slow
def test_dvc_tracks_the_sharded_folder_and_a_rerun_keeps_the_finished_shards(world, tmp_path):
    """A real `dvc repro` of an extract stage on Ray whose output is the folder (persist: true, so that DVC leaves
    the finished shards for the rerun): tracked as one output, then a lost shard is all that is recomputed."""
    import shutil

    import yaml

    root = tmp_path / "project"
    root.mkdir()
    for name in ("posts.txt", "detections.h5"):
        shutil.copy2(world["root"] / name, root / name)
    for name in ("images", "clip"):
        shutil.copytree(world["root"] / name, root / name)
    stage = {"cmd": "dghc extract posts.txt --detections detections.h5 --model clip --dtype float32 --device cpu "
                    "--engine ray --workers 2 --shard-size 16 --batch-size 4 --out features --quiet",
             "deps": ["posts.txt", "detections.h5", "images", "clip"], "outs": [{"features": {"persist": True}}]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"extract": stage}}))
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("DVC_")}
    env = {**inherited, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(root / ".dvc" / "tmp" / "site-cache"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def run(*args: str) -> str:
        result = subprocess.run(list(args), cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{' '.join(args)}:\n{(result.stdout + result.stderr)[-3000:]}"
        return result.stdout + result.stderr

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "project")
    run("dvc", "repro")
    outs = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["extract"]["outs"]
    assert [(out["path"], out["nfiles"]) for out in outs] == [("features", 4)]  # 3 shards and the index
    assert "up to date" in run("dvc", "status")
    (root / "features" / "features-00001.h5").unlink()
    assert "modified" in run("dvc", "status")
    rerun = run("dvc", "repro")
    assert "extract: 2 of 3 shards were finished by an earlier run (24 images): skipped" in rerun, rerun[-3000:]
    assert "up to date" in run("dvc", "status")
    extract_features(extract_config(world, tmp_path / "local.h5"))
    assert_same_features(tmp_path / "local.h5", root / "features", same_fingerprint=False)  # model named "clip" there


# ------------------------------------------------------------------------------------- what a rerun keeps


def test_an_extract_shard_counts_as_finished_only_for_the_batch_size_and_device_type_it_was_computed_with(tmp_path):
    """Batches cut otherwise, or computed on another kind of device, give other bits (the local engine's resume key
    has both): a shard written on the GPU, or with another batch size, is recomputed, not mixed in."""
    from dghc.pipeline.artifacts.fingerprint import sha256_json
    from dghc.pipeline.artifacts.shards import unfinished_shards
    from dghc.pipeline.scale.extract import shard_file_writer, shard_is_finished

    ids = [f"id{i}" for i in range(6)]
    fingerprint = {"untrained": False, "case": "hand-made"}
    shards = plan_shards(len(ids), shard_size=3, batch_size=3, kind="features")
    written_with = {"batch_size": 3, "device_type": "cuda"}  # a run killed on a GPU

    def write_shards(folder: Path) -> None:
        folder.mkdir()
        write = shard_file_writer(ids, m=1, dim=2, dtype="float32", fingerprint=fingerprint, computed_with=written_with)
        for shard in shards:
            rows = shard.stop - shard.start
            write(folder / shard.file, shard, {"status": np.zeros(rows, np.uint8),
                                               "vectors": np.ones((rows, 2, 2), np.float32),
                                               "slots": np.ones((rows, 2), bool)})

    def rerun(folder: Path, **settings) -> tuple[list[int], int]:
        """The shards a rerun with ``settings`` computes, as the engine judges them (and how many rows it keeps)."""
        run = {**written_with, **settings}

        def is_finished(path: Path, shard) -> bool:
            return shard_is_finished(path, shard, ids, sha256_json(fingerprint), run)

        todo, resumed = unfinished_shards(folder, shards, is_finished, force=False, stage="extract", unit="images",
                                          note=print)
        print(f"rerun with {run}: computes shards {[shard.number for shard in todo]}, keeps {resumed} rows")
        return [shard.number for shard in todo], resumed

    for number, settings in enumerate(({"device_type": "cpu"}, {"batch_size": 2})):
        write_shards(tmp_path / f"changed{number}")
        assert rerun(tmp_path / f"changed{number}", **settings) == ([0, 1], 0), f"shards of {written_with} kept"
        assert not list((tmp_path / f"changed{number}").glob("features-*")), "the stale shards are deleted"
    write_shards(tmp_path / "same")
    assert rerun(tmp_path / "same") == ([], 6)


@pytest.mark.slow
def test_extract_on_ray_recomputes_the_shards_of_another_batch_size(world, tmp_path, capsys):
    def notes() -> str:
        said = capsys.readouterr().err
        with capsys.disabled():
            print(said)
        return said

    out = tmp_path / "ray"
    settings = {"engine": "ray", "workers": 1, "shard_size": 12}  # shards of 12 rows for batches of 3 or 4
    extract_on_ray(extract_config(world, out, batch_size=3, **settings))
    (out / INDEX).unlink()  # killed before the index: the 4 shards stay
    notes()
    extract_on_ray(extract_config(world, out, batch_size=4, **settings))
    assert "shards were finished by an earlier run" not in notes(), "the shards of batch size 3 were kept"
    extract_features(extract_config(world, tmp_path / "local.h5", batch_size=4))
    with capsys.disabled():
        assert_same_features(tmp_path / "local.h5", out)
    # the same settings keep what a killed run finished
    (out / INDEX).unlink()
    (out / "features-00001.h5").unlink()
    extract_on_ray(extract_config(world, out, batch_size=4, **settings))
    assert "extract: 3 of 4 shards were finished by an earlier run (28 images): skipped" in notes()
    with capsys.disabled():
        assert_same_features(tmp_path / "local.h5", out)
