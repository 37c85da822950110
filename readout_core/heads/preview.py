"""Rendering readouts as pictures people can read (host-independent)."""

from __future__ import annotations

import torch

from .info import HeadInfo
from ..value_ranges import renormalize


def render_readout(readout: torch.Tensor, info: HeadInfo) -> torch.Tensor:
    """A readout ``[B, K, h, w]`` → an IMAGE ``[B, h, w, 3]`` in 0..1.

    Spatial heads: the 3-channel control image (pose skeleton, depth, edges) mapped
    from the control range. Keypoint heads: the strongest of the 18 heatmaps,
    coloured by joint. Relative heads: the first three principal components of the
    feature map (computed over the whole batch, so colours are comparable), each
    stretched to 0..1.
    """
    readout = readout.detach().float()
    if info.kind == "spatial":
        assert info.control_range is not None
        image = renormalize(readout, info.control_range, (0.0, 1.0))
    elif info.kind == "keypoint":
        image = _keypoint_colours(readout)
    else:
        image = _pca_colours(readout)
    return image.clamp(0, 1).movedim(1, -1).contiguous()


def _keypoint_colours(heatmaps: torch.Tensor) -> torch.Tensor:
    joints = heatmaps.shape[1]
    hues = torch.arange(joints, dtype=torch.float32) / joints
    palette = torch.stack([_hue_to_rgb(h) for h in hues])  # [J, 3]
    strength, joint = heatmaps.clamp(min=0).max(dim=1)  # [B, h, w]
    colours = palette[joint].movedim(-1, 1)  # [B, 3, h, w]
    return colours * (strength / strength.amax(dim=(-2, -1), keepdim=True).clamp(min=1e-6))[:, None]


def _hue_to_rgb(hue: torch.Tensor) -> torch.Tensor:
    k = (torch.tensor([5.0, 3.0, 1.0]) + hue * 6) % 6
    return 1 - torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _pca_colours(features: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = features.shape
    flat = features.movedim(1, -1).reshape(-1, channels)
    centred = flat - flat.mean(dim=0, keepdim=True)
    _u, _s, components = torch.linalg.svd(centred, full_matrices=False)
    projected = centred @ components[:3].T  # [B*h*w, 3]
    low, high = projected.min(dim=0).values, projected.max(dim=0).values
    projected = (projected - low) / (high - low).clamp(min=1e-6)
    return projected.reshape(batch, height, width, -1).movedim(-1, 1)
