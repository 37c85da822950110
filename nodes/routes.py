"""The pack's HTTP routes on the host's server (read by the browser extension in ``web/``)."""

from __future__ import annotations

from .presets import PRESETS

PRESETS_ROUTE = "/readout_guidance/presets"
_registered = False


def register_routes() -> None:
    """Add ``GET /readout_guidance/presets`` (preset name → sampler widget values), once."""
    global _registered
    if _registered:
        return
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return
    server = getattr(PromptServer, "instance", None)
    if server is None:  # imported outside a running server (tests, scripts)
        return

    async def presets(_request):
        return web.json_response(PRESETS)

    server.routes.get(PRESETS_ROUTE)(presets)
    _registered = True
