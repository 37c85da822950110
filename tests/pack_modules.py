"""Loading a host-free module of the pack's ``nodes/`` folder without the host.

``nodes/__init__.py`` imports ComfyUI, and inside a host ``nodes`` is the host's own
module, so such a module is loaded from its file under a name of its own.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from host_support import PACK_DIR


def node_module(name: str) -> ModuleType:
    """``nodes/<name>.py`` as a module (loaded once; it must import nothing relative)."""
    key = f"readout_pack_nodes_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, PACK_DIR / "nodes" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[key] = module
    return sys.modules[key]
