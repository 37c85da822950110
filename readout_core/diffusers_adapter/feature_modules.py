"""Where a diffusers ``UNet2DConditionModel`` keeps the features and the time embedding the heads read."""

from __future__ import annotations

import torch
from torch import nn

from ..features import DecoderLayout, decoder_layout


def diffusers_decoder_resnets(unet: nn.Module) -> list[nn.Module]:
    """The decoder ResNet blocks of a diffusers ``UNet2DConditionModel``, in reading order."""
    return [resnet for block in unet.up_blocks for resnet in block.resnets]


def diffusers_feature_modules(unet: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are the published features: each decoder ResNet's ``conv2``."""
    return [resnet.conv2 for resnet in diffusers_decoder_resnets(unet)]


def diffusers_layout(unet: nn.Module, family: str) -> DecoderLayout:
    """The `DecoderLayout` of a diffusers U-Net, read from its config."""
    config = unet.config
    return decoder_layout(family, tuple(config.block_out_channels), int(config.layers_per_block))


def diffusers_head_embedding(unet: nn.Module, timesteps: torch.Tensor | int, batch: int) -> torch.Tensor:
    """The head's timestep embedding from a diffusers U-Net: ``time_embedding(time_proj(t))``.

    SDXL's added text/time embedding is deliberately not included (as released).
    """
    dtype = next(unet.time_embedding.parameters()).dtype
    device = next(unet.time_embedding.parameters()).device
    t = torch.as_tensor(timesteps, device=device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    return unet.time_embedding(unet.time_proj(t).to(dtype))
