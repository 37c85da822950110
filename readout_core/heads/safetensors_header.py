"""Reading and checking a ``.safetensors`` header ourselves, before the safetensors library opens the file.

Layout: 8 bytes (little-endian length N), N bytes of JSON header, then the data. The header
maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets into
the data) and may hold ``"__metadata__"`` (strings only). `read_header` refuses, naming the
file and the entry: a length that runs past the file, a header that is not bounded JSON, an
unknown dtype, a shape that is not a list of non-negative integers, offsets whose span is not
the shape's size in that dtype, and entries that overlap, leave holes or end before or past
the data.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import HeadFileError
from ..safe_json import read_json

MAX_HEADER_BYTES = 1024 * 1024
"""Largest header read (a published SD1.5 head's is about 25 kB)."""
MAX_RANK = 8
"""Most dimensions a tensor may have."""
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
"""Bytes per element of each dtype the format names."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header declares it."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def read_header(path: Path) -> tuple[dict[str, str], dict[str, TensorEntry]]:
    """(metadata, name → entry) of the file at ``path``, checked against the file's size."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise _broken(path, f"it is {size} bytes, shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES or 8 + length > size:
            raise _broken(path, f"its header claims {length:,} bytes but the file has {size - 8:,} after the length "
                          f"(and a header may have at most {MAX_HEADER_BYTES:,})")
        raw = handle.read(length)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _broken(path, "its header is not UTF-8 text") from None
    header = read_json(text, f"The header of {path.name}", HeadFileError, MAX_HEADER_BYTES,
                       "It may be truncated or corrupted: download or convert it again.")
    if not isinstance(header, dict):
        raise _broken(path, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _broken(path, "its __metadata__ is not an object of strings")
    entries = {name: _entry(path, name, value) for name, value in header.items()}
    _check_tiling(path, entries, size - 8 - length)
    return metadata, entries


def _entry(path: Path, name: str, value: Any) -> TensorEntry:
    where = f"tensor {name[:80]!r}"
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise _broken(path, f"{where} must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise _broken(path, f"{where} has unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(_is_count(d) for d in shape):
        raise _broken(path, f"{where} has shape {str(shape)[:60]}, not a list of at most {MAX_RANK} non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(v) for v in offsets) \
            or offsets[0] > offsets[1]:
        raise _broken(path, f"{where} has data_offsets {str(offsets)[:60]}, not [begin, end] with begin ≤ end")
    expected = math.prod(shape) * DTYPE_BYTES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise _broken(path, f"{where} spans {offsets[1] - offsets[0]:,} bytes but its {dtype} shape {shape} needs "
                      f"{expected:,}")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def _check_tiling(path: Path, entries: dict[str, TensorEntry], data_bytes: int) -> None:
    """The entries must cover the data exactly, one after another."""
    position = 0
    for name, entry in sorted(entries.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin != position:
            problem = "overlaps the one before" if entry.begin < position else "leaves a gap before it"
            raise _broken(path, f"tensor {name[:80]!r} {problem} (offset {entry.begin:,}, expected {position:,})")
        position = entry.end
    if position != data_bytes:
        raise _broken(path, f"its tensors declare {position:,} bytes of data but the file holds {data_bytes:,}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _broken(path: Path, reason: str) -> HeadFileError:
    return HeadFileError(f"{path.name} is not a readable .safetensors file: {reason}. It may be truncated or "
                         "corrupted: download or convert it again.")
