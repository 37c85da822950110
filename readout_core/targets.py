"""Turning user images into readout targets."""

from __future__ import annotations

import torch

from .errors import ReadoutError
from .heads.info import HeadInfo
from .value_ranges import renormalize


def spatial_target_from_image(image: torch.Tensor, info: HeadInfo) -> torch.Tensor:
    """A ComfyUI IMAGE ``[B, H, W, 3]`` in 0..1 → a target ``[B, 3, H, W]`` in the head's control range.

    Pose / depth / edge images as ControlNet preprocessors make them (any size); the
    loss resamples the target to the readout's (latent) size with nearest sampling, as
    the heads were trained.
    """
    if info.kind != "spatial":
        hint = "drag / appearance nodes" if info.is_relative else "a pose / depth / edge head"
        raise ReadoutError(
            f"Spatial Target needs a pose / depth / edge head; this is a {info.kind} head. Use {hint} instead."
        )
    if info.output_channels != 3:
        raise ReadoutError(f"This head outputs {info.output_channels} channels; an RGB image cannot be its target.")
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4) or image.shape[0] == 0:
        raise ReadoutError(f"Spatial Target expects an IMAGE [B, H, W, 3], got shape {tuple(image.shape)}.")
    if not torch.is_floating_point(image):
        raise ReadoutError(f"Spatial Target expects a float IMAGE in 0..1, got {image.dtype}.")
    if not torch.isfinite(image).all():
        raise ReadoutError("The control image contains NaN or infinite values; check the node that made it.")
    channels = image[..., :3] if image.shape[-1] != 1 else image.expand(*image.shape[:-1], 3)
    target = channels.movedim(-1, 1).float().clamp(0, 1)
    assert info.control_range is not None
    return renormalize(target, (0.0, 1.0), info.control_range)
