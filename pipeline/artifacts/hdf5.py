"""What the HDF5 files' readers share: attribute values read back as the text they were written as."""
from __future__ import annotations

from typing import Any


def attribute_text(value: Any) -> str:
    """An HDF5 string attribute as text: h5py returns ``str`` or ``bytes`` by how it was stored; anything else
    means the file is not one of ours (the reader turns the TypeError into a message naming the file)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if not isinstance(value, str):
        raise TypeError(f"expected text, found {type(value).__name__}")
    return value
