"""FeatureStore: batches of vectors and masks by image id, in memory or from the open file; fingerprint checks."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from dghc.pipeline.artifacts.fingerprint import sha256_json
from dghc.pipeline.core.errors import DghcError, FingerprintMismatch
from dghc.pipeline.features.store import FeatureStore

IDS = ["p1", "p2", "p3", "p4", "p5"]
M, DIM = 3, 4
FINGERPRINT = {"format": "dghc-features/1", "model": "untrained-clip-small", "weights_sha256": "ab" * 32,
               "untrained": True, "output": "projected", "dtype": "float16", "dim": DIM, "m": M,
               "crop_padding": 0.0, "min_crop_size": 2, "preprocess": {"size": {"shortest_edge": 224}},
               "detections_fingerprint_sha256": "cd" * 32}


def write_features(path: Path) -> dict[str, np.ndarray]:
    """A features file written by hand from the contract table (not by the extract stage)."""
    rng = np.random.default_rng(0)
    image_mask = np.array([True, True, False, True, True])
    region_mask = np.array([[True, True, False], [False] * 3, [False] * 3, [True] * 3, [True, False, False]])
    image_vectors = (rng.normal(size=(5, DIM)) * image_mask[:, None]).astype(np.float16)
    region_vectors = (rng.normal(size=(5, M, DIM)) * region_mask[:, :, None]).astype(np.float16)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("image_ids", data=np.array(IDS, dtype=object), dtype=h5py.string_dtype("utf-8"))
        handle.create_dataset("status", data=np.array([0, 0, 1, 0, 0], dtype=np.uint8))
        handle.create_dataset("image_vectors", data=image_vectors)
        handle.create_dataset("region_vectors", data=region_vectors)
        handle.create_dataset("image_mask", data=image_mask)
        handle.create_dataset("region_mask", data=region_mask)
        handle.attrs["dim"] = DIM
        handle.attrs["m"] = M
        handle.attrs["fingerprint"] = json.dumps(FINGERPRINT)
        handle.attrs["fingerprint_sha256"] = sha256_json(FINGERPRINT)
    return {"image_vectors": image_vectors, "region_vectors": region_vectors, "image_mask": image_mask,
            "region_mask": region_mask}


@pytest.fixture
def features(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path / "features.h5"
    return path, write_features(path)


@pytest.mark.parametrize("in_memory", [True, False])
def test_batch_gives_slots_in_the_order_asked(features, in_memory):
    path, arrays = features
    with FeatureStore(path, in_memory=in_memory) as store:
        assert (store.dim, store.m, len(store), store.in_memory) == (DIM, M, 5, in_memory)
        ids = ["p4", "unknown", "p1", "p4", "p3"]  # unordered, an unknown id, a duplicate, a missing image
        vectors, mask = store.batch(ids)
    assert vectors.dtype == torch.float32 and vectors.shape == (5, 1 + M, DIM)
    assert mask.dtype == torch.bool and mask.shape == (5, 1 + M)
    for i, image_id in enumerate(ids):
        if image_id == "unknown":
            assert not mask[i].any() and not vectors[i].any()
            continue
        row = IDS.index(image_id)
        np.testing.assert_array_equal(vectors[i, 0].numpy(), arrays["image_vectors"][row].astype(np.float32))
        np.testing.assert_array_equal(vectors[i, 1:].numpy(), arrays["region_vectors"][row].astype(np.float32))
        assert mask[i, 0].item() == arrays["image_mask"][row]
        assert mask[i, 1:].tolist() == arrays["region_mask"][row].tolist()
    assert not mask[4].any()  # p3: image missing


def test_in_memory_is_chosen_by_file_size(features):
    path, _ = features
    assert FeatureStore(path).in_memory is True
    store = FeatureStore(path, memory_limit=0)
    assert store.in_memory is False
    assert store.batch([])[0].shape == (0, 1 + M, DIM)
    store.close()


def test_an_open_store_survives_pickling(features):
    path, arrays = features
    store = FeatureStore(path, in_memory=False)
    store.batch(["p1"])
    copy = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(copy.batch(["p2"])[0][0, 0].numpy(), arrays["image_vectors"][1].astype(np.float32))
    store.close()
    copy.close()


def test_require_names_each_differing_key(features):
    path, _ = features
    store = FeatureStore(path)
    store.require({"output": "projected", "dtype": "float16", "m": 3})
    store.require({"model": "untrained-clip-small", "output": "projected", "crop_padding": 0.0, "min_crop_size": 2})
    with pytest.raises(FingerprintMismatch) as caught:
        store.require({"model": "openai/clip-vit-base-patch32", "output": "projected", "dtype": "float32", "m": 3})
    message = str(caught.value)
    assert str(path) in message
    assert 'model: expected "openai/clip-vit-base-patch32", found "untrained-clip-small"' in message
    assert 'dtype: expected "float32", found "float16"' in message
    assert "output" not in message and "m:" not in message  # only what differs
    with pytest.raises(FingerprintMismatch, match="seed: expected 3, found nothing"):
        store.require({"seed": 3})
    assert store.untrained is True and store.fingerprint == FINGERPRINT


def test_store_refuses_what_is_not_a_features_file(tmp_path):
    with pytest.raises(DghcError, match="features file not found.*dghc extract"):
        FeatureStore(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(DghcError, match="not a readable HDF5 file"):
        FeatureStore(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle.create_dataset("image_ids", data=np.array(["x"], dtype=object), dtype=h5py.string_dtype())
    with pytest.raises(DghcError, match="not a dghc features file.*image_vectors"):
        FeatureStore(tmp_path / "other.h5")


def test_store_reads_what_extract_wrote(tmp_path):
    from dghc.pipeline.features.config import ExtractConfig
    from dghc.pipeline.features.extract import extract_features
    from tests.extract_fixtures import DetectionRow, make_image, save_tiny_clip, write_conll, write_detections

    (tmp_path / "images").mkdir()
    make_image(tmp_path / "images" / "x.jpg", 40, 40, seed=5)
    write_conll(tmp_path / "train.txt", ["x", "y"])
    write_detections(tmp_path / "det.h5", {"x": DetectionRow(0, (40, 40), [(0, 0, 20, 20)]), "y": DetectionRow(1)})
    config = ExtractConfig(data=[tmp_path / "train.txt"], detections=tmp_path / "det.h5", out=tmp_path / "f.h5",
                           model=str(save_tiny_clip(tmp_path / "clip")), num_workers=0, device="cpu", progress=False)
    result = extract_features(config)
    for in_memory in (True, False):
        store = FeatureStore(tmp_path / "f.h5", in_memory=in_memory)
        vectors, mask = store.batch(["y", "x"])
        assert mask.tolist() == [[False] * 4, [True, True, False, False]]
        assert vectors[1, :2].abs().sum(dim=1).gt(0).all() and not vectors[0].any()
        assert store.fingerprint == result.fingerprint and store.dim == 24
        store.require({"model": str(tmp_path / "clip"), "dtype": "float16", "output": "projected"})
        store.close()
