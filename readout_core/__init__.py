"""Readout Guidance core: heads, decoder features, losses. Independent of ComfyUI.

Sub-packages name the concepts: `heads` (the network, its files and the published heads),
`training` (from a dataset folder to a head), `pose` (body poses), `diffusers_adapter` (the
only part that knows diffusers), `host_adapter` (the only part that knows ComfyUI) and
`tiny_world` (the shipped demo model). The shared pieces sit at the top: `features`,
`guidance`, `losses`, `targets`, `drag_points`, `crop_boxes`, `value_ranges`, `latent_scale`,
`atomic_files`, `safe_json`, `errors`, `cpu_threads`, `progress`.

Importing this package is instant: each name below loads its module (and torch, numpy,
safetensors) on first use, so ``python -m readout_core --help`` needs none of them. The one
module that talks to the ComfyUI host, `readout_core.host_adapter`, is imported by the node
wrappers, never from here.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from .errors import FeatureError, HeadConfigError, HeadFileError, LossInputError, ReadoutError

__version__ = "0.1.0"

_LAZY_NAMES = {
    "features": ("LAYOUTS", "SD15_LAYOUT", "SDXL_LAYOUT", "DecoderFeatureCapture", "DecoderLayout", "decoder_layout",
                 "resize_and_concat", "sinusoidal_timestep_embedding"),
    "heads.files": ("HEAD_EXTENSIONS", "build_head", "convert_published_head", "load_head", "read_head_file",
                   "save_head"),
    "heads.info": ("KINDS", "HeadInfo"),
    "heads.network": ("ReadoutHead", "count_parameters"),
}
_MODULE_OF = {name: module for module, names in _LAZY_NAMES.items() for name in names}

__all__ = sorted(["FeatureError", "HeadConfigError", "HeadFileError", "LossInputError", "ReadoutError", *_MODULE_OF])


def __getattr__(name: str) -> Any:
    """Load a public name's module on first use (PEP 562); submodules load the same way."""
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))
