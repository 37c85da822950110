"""Finding a real ComfyUI host for the host tests (COMFYUI_PATH, or the pack inside custom_nodes)."""

from __future__ import annotations

import os
import re
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[1]


def find_host() -> tuple[Path | None, str]:
    """Return (ComfyUI folder or None, a sentence saying what was found and why)."""
    configured = os.environ.get("COMFYUI_PATH")
    if configured:
        path = Path(configured).expanduser().resolve()
        if (path / "comfy").is_dir() and (path / "nodes.py").is_file():
            return path, f"ComfyUI {host_version(path)} at {path} (from COMFYUI_PATH)"
        return None, f"COMFYUI_PATH={configured} is not a ComfyUI folder (no comfy/ and nodes.py): host tests skipped"
    parent = PACK_DIR.parent
    if parent.name == "custom_nodes" and (parent.parent / "comfy").is_dir():
        return parent.parent, f"ComfyUI {host_version(parent.parent)} at {parent.parent} (pack is in custom_nodes)"
    return None, "no ComfyUI host found (set COMFYUI_PATH or put the pack in ComfyUI/custom_nodes): host tests skipped"


def host_version(path: Path) -> str:
    """The host's version string from comfyui_version.py, or 'unknown'."""
    version_file = path / "comfyui_version.py"
    if version_file.is_file():
        match = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", version_file.read_text())
        if match:
            return match.group(1)
    return "unknown"


def require_host() -> Path:
    """Make the host importable for a host test module, or skip the module saying why.

    The host folder goes first on ``sys.path`` (its ``nodes.py`` must win over the
    pack's ``nodes/`` package) and the host is told to run on the CPU before
    ``comfy.model_management`` is imported.
    """
    import sys

    import pytest

    host, sentence = find_host()
    if host is None:
        pytest.skip(sentence, allow_module_level=True)
    if str(host) in sys.path:  # something imported earlier (a benchmark script) may have put the pack first
        sys.path.remove(str(host))
    sys.path.insert(0, str(host))
    from comfy.cli_args import args

    args.cpu = True
    return host
