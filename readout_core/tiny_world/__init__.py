"""The tiny world: a small SD1.5-layout diffusion model of flat shapes, its heads and
datasets, all made by this project (`tools/make_tiny_world.py`) and shipped with it, so
readout guidance can be seen working on any CPU without downloads.

- `model`: the tiny U-Net (diffusers layout, pixel space) and its schedule;
- `scenes`: procedural scenes of flat shapes;
- `datasets`: training datasets written as ordinary folders, in the users' formats;
- `experiments`: spatial control, drag and appearance guidance with their measures;
- `demo`: the one-command demo grid; `evaluate`: the many-seed table.
"""

from __future__ import annotations

from pathlib import Path

from ..diffusers_adapter.feature_source import DiffusersSource
from ..errors import ReadoutError
from ..heads.files import load_head
from ..heads.network import ReadoutHead
from . import model

HEAD_FILES = {
    "depth": "tiny_depth.safetensors",
    "appearance": "tiny_appearance.safetensors",
    "correspondence": "tiny_correspondence.safetensors",
}
"""The shipped heads: a depth-order spatial head, appearance, correspondence."""

HEAD_SETTINGS = {"projection_dim": 64, "num_groups": 8}
"""Head size for the tiny world (P = 64, bottleneck width 16)."""


def tiny_source(unet_path: Path | None = None) -> DiffusersSource:
    """The tiny U-Net as a feature source (latent = image, so one latent pixel per image pixel)."""
    unet = model.load_unet(unet_path)
    return DiffusersSource(unet=unet, family="sd15", scheduler=model.scheduler(), context=model.context(1),
                           encode_images=model.image_to_latent, latent_factor=1, name="tiny-world")


def tiny_head(name: str) -> ReadoutHead:
    """One of the shipped heads: ``depth``, ``appearance`` or ``correspondence``."""
    path = model.WEIGHTS_DIR / HEAD_FILES[name]
    if not path.is_file():
        raise ReadoutError(f"The tiny world's {name} head {path} is missing; run `python tools/make_tiny_world.py "
                           "heads` to make it.")
    return load_head(path).eval().requires_grad_(False)
