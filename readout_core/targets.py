"""Turning user images into readout targets."""

from __future__ import annotations

import torch

from .errors import ReadoutError
from .guidance import resize_target
from .head_info import HeadInfo
from .losses import renormalize


def spatial_target_from_image(
    image: torch.Tensor, info: HeadInfo, latent_hw: tuple[int, int] | None = None
) -> torch.Tensor:
    """A ComfyUI IMAGE ``[B, H, W, 3]`` in 0..1 → a target ``[B, 3, h, w]`` in the head's control range.

    Pose / depth / edge images as ControlNet preprocessors make them (any size). With
    ``latent_hw`` the target is resampled to the latent size (nearest, as the heads
    were trained); otherwise the loss resamples it to the readout size.
    """
    if info.kind != "spatial":
        hint = "drag / appearance nodes" if info.is_relative else "a pose / depth / edge head"
        raise ReadoutError(
            f"Spatial Target needs a pose / depth / edge head; this is a {info.kind} head. Use {hint} instead."
        )
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4) or image.shape[0] == 0:
        raise ReadoutError(f"Spatial Target expects an IMAGE [B, H, W, 3], got shape {tuple(image.shape)}.")
    if not torch.is_floating_point(image):
        raise ReadoutError(f"Spatial Target expects a float IMAGE in 0..1, got {image.dtype}.")
    channels = image[..., :3] if image.shape[-1] != 1 else image.expand(*image.shape[:-1], 3)
    target = channels.movedim(-1, 1).float().clamp(0, 1)
    assert info.control_range is not None
    target = renormalize(target, (0.0, 1.0), info.control_range)
    if info.output_channels != 3:
        raise ReadoutError(f"This head outputs {info.output_channels} channels; an RGB image cannot be its target.")
    return resize_target(target, latent_hw) if latent_hw else target
