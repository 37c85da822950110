"""Which U-Net decoder features the heads read, and how they are assembled.

The published heads read the residual-branch output ("hidden" feature: after
norm2 → SiLU → dropout → conv2, before the skip is added) of every decoder ResNet
block, in order: diffusers ``up_blocks[b].resnets[r]`` (b, then r). Each map is
resized bilinearly to the latent size and all are concatenated along channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import FeatureError


@dataclass(frozen=True)
class DecoderLayout:
    """The decoder ResNet blocks a head reads for one U-Net layout.

    Attributes:
        family: ``sd15`` or ``sdxl`` (tiny test U-Nets use their family's block layout).
        dims: output channels of each decoder ResNet, in reading order.
        strides: latent size divided by each layer's feature size.
        blocks: (up block, resnet) index of each layer in diffusers' ``up_blocks``.
        resnets_per_block: ResNets in each up block (``layers_per_block + 1``).
    """

    family: str
    dims: tuple[int, ...]
    strides: tuple[int, ...]
    blocks: tuple[tuple[int, int], ...]
    resnets_per_block: int

    def host_output_block(self, layer: int) -> int:
        """Index into ComfyUI's ``UNetModel.output_blocks`` of layer ``layer``."""
        block, resnet = self.blocks[layer]
        return block * self.resnets_per_block + resnet


def decoder_layout(family: str, block_out_channels: Sequence[int], layers_per_block: int) -> DecoderLayout:
    """Layout of the decoder ResNets of a U-Net with the given encoder widths.

    ``block_out_channels`` are the encoder widths from the highest resolution down
    (diffusers' config); the decoder visits them in reverse, one up block per level,
    each with ``layers_per_block + 1`` ResNets. Every up block but the last upsamples.
    """
    levels = len(block_out_channels)
    per_block = layers_per_block + 1
    dims: list[int] = []
    strides: list[int] = []
    blocks: list[tuple[int, int]] = []
    for block, channels in enumerate(reversed(list(block_out_channels))):
        stride = 2 ** (levels - 1 - block)
        for resnet in range(per_block):
            dims.append(int(channels))
            strides.append(stride)
            blocks.append((block, resnet))
    return DecoderLayout(family, tuple(dims), tuple(strides), tuple(blocks), per_block)


SD15_LAYOUT = decoder_layout("sd15", (320, 640, 1280, 1280), layers_per_block=2)
"""SD1.5: 12 layers, dims [1280]*6 + [640]*3 + [320]*3 at 8, 16, 32, 64 for a 64 latent."""

SDXL_LAYOUT = decoder_layout("sdxl", (320, 640, 1280), layers_per_block=2)
"""SDXL: 9 layers, dims [1280]*3 + [640]*3 + [320]*3 at 32, 64, 128 for a 128 latent."""

LAYOUTS = {"sd15": SD15_LAYOUT, "sdxl": SDXL_LAYOUT}


def resize_and_concat(feature_maps: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Resize each ``[N, C_l, h, w]`` map to ``size`` (bilinear, align_corners False) and concatenate.

    Returns ``[N, sum(C_l), H, W]`` in the order given.
    """
    if not feature_maps:
        raise FeatureError("No decoder features were captured; the U-Net did not run its decoder.")
    batch = feature_maps[0].shape[0]
    resized = []
    for index, feature in enumerate(feature_maps):
        if feature.ndim != 4 or feature.shape[0] != batch:
            raise FeatureError(
                f"Decoder feature {index} has shape {tuple(feature.shape)}; expected [N={batch}, C, h, w]."
            )
        if tuple(feature.shape[-2:]) != tuple(size):
            feature = F.interpolate(feature, size=size, mode="bilinear", align_corners=False)
        resized.append(feature)
    return torch.cat(resized, dim=1)


def sinusoidal_timestep_embedding(
    timesteps: torch.Tensor, width: int, max_period: float = 10000.0
) -> torch.Tensor:
    """The Stable Diffusion timestep sinusoid: ``[cos(t·f_i), sin(t·f_i)]``, f_i = period^(-i/half).

    Matches diffusers ``Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)``.
    """
    timesteps = torch.as_tensor(timesteps, dtype=torch.float32).reshape(-1)
    half = width // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    args = timesteps[:, None] * torch.exp(exponent)[None, :]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if width % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class DecoderFeatureCapture:
    """Context manager that records the outputs of the given feature modules, in order.

    Pass the module whose output *is* each layer's hidden feature: for diffusers,
    `diffusers_feature_modules` (each decoder ResNet's ``conv2``, the last op of the
    residual branch); for ComfyUI, the host adapter's equivalent (``out_layers``).
    Forward hooks are removed on exit, whatever happened inside. Captured tensors
    keep their autograd graph, so guidance can back-propagate through them.
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self._modules = list(modules)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.features: list[torch.Tensor | None] = [None] * len(self._modules)

    def __enter__(self) -> "DecoderFeatureCapture":
        for index, module in enumerate(self._modules):
            self._handles.append(module.register_forward_hook(self._recorder(index)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _recorder(self, index: int):
        def record(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self.features[index] = output

        return record

    def collected(self, latent_hw: tuple[int, int]) -> torch.Tensor:
        """All captured maps resized to ``latent_hw`` and concatenated in layer order."""
        missing = [index for index, feature in enumerate(self.features) if feature is None]
        if missing:
            raise FeatureError(f"Decoder layers {missing} produced no features; run the U-Net inside the capture.")
        return resize_and_concat([f for f in self.features if f is not None], latent_hw)
