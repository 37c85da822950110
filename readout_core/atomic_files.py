"""Saving a file so that it is either complete or absent, never half-written.

Every file the pack writes (head files, downloads, feature caches, training checkpoints)
goes through `atomic_file`: the bytes go to a hidden temporary file beside the destination,
which is flushed to disk and renamed over the destination only when it is complete. On any
failure, an interrupt included, the temporary file is removed and the destination keeps its
old content. Only a process killed outright can leave a hidden ``.<stem>.*.partial*`` file.

The temporary name is ``.<stem>.<pid>.<n>.partial<suffix>``: it keeps the suffix (readers
pick the format by it) and the stem plus digits only (a head's kind, family and control
type may be inferred from its stem), and it sits in the same folder, so the rename is atomic.
"""

from __future__ import annotations

import itertools
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

READABLE = 0o644
"""Mode of saved files: temporary files are created 0600, but the ComfyUI user must read them."""
_counter = itertools.count()


class SaveFailed(OSError):
    """The temporary file could not be created, synced or renamed (the OS's reason is in the message)."""


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; when the block ends without error it becomes ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _create_temporary(path)
    try:
        yield partial
        try:
            with open(partial, "r+b") as written:
                os.fsync(written.fileno())
            os.chmod(partial, READABLE)
            os.replace(partial, path)
        except OSError as exc:
            raise SaveFailed(f"{path} could not be saved: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)


def _create_temporary(path: Path) -> Path:
    for _ in range(100):
        partial = path.with_name(f".{path.stem}.{os.getpid()}.{next(_counter)}.partial{path.suffix}")
        try:
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600))
            return partial
        except FileExistsError:
            continue
        except OSError as exc:
            raise SaveFailed(f"no temporary file can be created in {path.parent}: {exc}") from exc
    raise SaveFailed(f"no free temporary name for {path.name} in {path.parent}")
