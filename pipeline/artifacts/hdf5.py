"""What the HDF5 files' readers share: attribute values read back as the text they were written as."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import DghcError


def attribute_text(value: Any) -> str:
    """An HDF5 string attribute as text: h5py returns ``str`` or ``bytes`` by how it was stored; anything else
    means the file is not one of ours (the reader turns the TypeError into a message naming the file)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if not isinstance(value, str):
        raise TypeError(f"expected text, found {type(value).__name__}")
    return value


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # the first 8 bytes of every HDF5 file


def refuse_foreign_file(out: Path, what: str, marks: tuple[str, ...]) -> None:
    """An existing ``--out`` that dghc did not write is the user's: refuse it before any work, and say it was left
    untouched. dghc's files are HDF5 with the attributes ``marks`` (e.g. a detections file's fingerprint_sha256 and
    sources_run); a damaged file of ours cannot be told from a foreign one, and is refused the same way."""
    import h5py

    if not out.is_file():
        return
    try:
        with out.open("rb") as handle:
            is_hdf5 = handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return  # unreadable: the write itself will name the problem
    reason = "not an HDF5 file"
    if is_hdf5:
        try:
            with h5py.File(out, "r") as handle:
                missing = [mark for mark in marks if mark not in handle.attrs]
            reason = f"an HDF5 file without a {what}'s attributes ({', '.join(missing)})" if missing else ""
        except OSError as err:
            reason = f"an HDF5 file that cannot be opened ({str(err)[:100]})"
    if reason:
        raise DghcError(f"--out {out} is not a {what} dghc wrote ({reason}): it was left untouched; give another "
                        "--out, or move that file away first")
