"""ComfyUI entry point of the Readout Guidance node pack.

ComfyUI imports this file from ``custom_nodes/<pack>/`` and calls
`comfy_entrypoint`. The shared core (`readout_core`) is imported by its own name,
so the pack folder is appended to ``sys.path`` (appended, never prepended: the
host's own top-level modules win). The node wrappers, which need the host, are
imported only when the host asks for them, so this file imports anywhere.
"""

import os
import sys

_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    sys.path.append(_PACK_DIR)

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    """Return the pack's ComfyExtension (called by ComfyUI when it loads custom nodes)."""
    from .nodes import readout_guidance_extension

    return readout_guidance_extension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
