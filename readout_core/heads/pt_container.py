"""Opening a ``.pt`` file safely: the zip container is checked first, then weights-only unpickling.

Readout heads are ``torch.save`` zip archives (PyTorch 1.6 and newer). Before torch reads
one, `load_weights_only` checks that the file is such an archive whose entries are stored
uncompressed and fit in the file, so nothing can inflate in memory; older non-zip pickles are
refused (their storage sizes come from the pickle and are allocated before they are read).
Whatever torch's reader raises on a damaged archive becomes a `HeadFileError` naming the file.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import HeadFileError

MAX_PICKLE_BYTES = 16 * 1024 * 1024
"""Largest ``data.pkl`` (the checkpoint's structure, without the tensor data) read."""
MAX_ENTRIES = 10_000
"""Most entries a checkpoint archive may hold."""
_SCANNED_BYTES = 1024 * 1024


def load_weights_only(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on a checked zip checkpoint, or `HeadFileError`."""
    _check_archive(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        imported = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if imported:
            raise _code_refused(path, imported.group(1)) from exc
        raise _unreadable(path, f"not a weights-only pickle: {str(exc)[:200]}") from exc
    except Exception as exc:  # torch's reader raises many types on damaged archives; none may escape
        raise _unreadable(path, f"{type(exc).__name__}: {str(exc)[:200]}") from exc


def _check_archive(path: Path) -> None:
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except Exception as exc:  # zipfile raises BadZipFile, ValueError, EOFError, ... on random bytes
        imported = _pickle_import(path)
        if imported:
            raise _code_refused(path, imported) from exc
        raise _unreadable(path, "no zip directory; readout heads are zip archives written by torch.save") from exc
    if len(entries) > MAX_ENTRIES:
        raise _unreadable(path, f"the archive has {len(entries):,} entries, more than a checkpoint's {MAX_ENTRIES:,}")
    pickles = [entry for entry in entries if entry.filename.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise _unreadable(path, "a zip archive without exactly one data.pkl, so not a PyTorch checkpoint")
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise _unreadable(path, f"its data.pkl is {pickles[0].file_size:,} bytes; a head's is far below "
                          f"{MAX_PICKLE_BYTES:,}")
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.file_size > size:
            raise _unreadable(path, f"archive entry {entry.filename[:80]!r} is compressed or larger than the file; "
                              "torch.save stores entries uncompressed")


def _pickle_import(path: Path) -> str | None:
    """The first global a plain pickle imports (read without unpickling), or None."""
    with open(path, "rb") as handle:
        data = handle.read(_SCANNED_BYTES)
    strings: list[str] = []
    try:
        for opcode, argument, _position in pickletools.genops(data):
            if opcode.name in ("GLOBAL", "INST"):  # protocols 0-2 name Python 3's builtins __builtin__
                return str(argument).replace("__builtin__ ", "builtins ").replace(" ", ".")
            if opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"{strings[-2]}.{strings[-1]}"
            if isinstance(argument, str):
                strings = [*strings[-1:], argument]
    except Exception:  # genops stops with various errors on bytes that are not a pickle
        return None
    return None


def _code_refused(path: Path, imported: str) -> HeadFileError:
    return HeadFileError(
        f"Refused to open {path.name}: it asks to import {imported[:100]} when unpickled, so loading it could run "
        "code from the file. Readout heads hold only tensors and a plain config; use the official file or a "
        ".safetensors head."
    )


def _unreadable(path: Path, reason: str) -> HeadFileError:
    return HeadFileError(
        f"{path.name} could not be read as a PyTorch checkpoint ({reason}). It is probably truncated or corrupted, "
        "or not a readout head: download it again."
    )
