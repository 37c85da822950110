"""Named settings for the Readout Reference Sampler: the released presets and the pack's own.

Each preset gives the sampler node's widget values; choosing one in the browser fills
the widgets (``web/presets.js``, served by ``routes``), and every number stays editable.
The values are those of the authors' released presets and drag-editing settings. This
module imports nothing of the host, so that the core's tests can check it.
"""

from __future__ import annotations

from readout_core.errors import ReadoutError

EDIT_STARTS = ("reference noise (drag)", "new noise (variations)")

_DRAG = {
    "steps": 100, "sampler_name": "ddim", "scheduler": "ddim_uniform", "update_rule": "official",
    "guidance_weight": 0.02, "start_percent": 0.0, "end_percent": 0.5, "edit_start": EDIT_STARTS[0],
}

PRESETS: dict[str, dict[str, object]] = {
    "drag: generated image (SDXL)": dict(_DRAG, cfg=7.5, reference_cfg=7.5),
    "drag: real image (SD1.5)": dict(_DRAG, cfg=3.5, reference_cfg=1.0),
    "appearance variations": dict(_DRAG, cfg=7.5, reference_cfg=7.5, edit_start=EDIT_STARTS[1]),
}
"""Preset name → sampler widget values. The real-image preset expects Invert Image with
the same steps and scheduler at CFG 1.0 (released: 100 DDIM steps)."""

CUSTOM = "custom"
PRESET_NAMES = (CUSTOM, *PRESETS)


def check_preset_name(name: object) -> str:
    """``name`` if it names a preset (or ``custom``); otherwise `ReadoutError` listing the names."""
    if isinstance(name, str) and name in PRESET_NAMES:
        return name
    shown = repr(name)[:80] if isinstance(name, str) else f"a {type(name).__name__}"
    raise ReadoutError(f"Unknown preset {shown}; choose one of: {', '.join(PRESET_NAMES)}.")
