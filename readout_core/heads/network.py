"""The readout head network: per-layer bottlenecks, softmax mixing, optional output head.

One implementation covers every published head. Parameter names follow the released
checkpoints exactly, so their state dicts load strictly (see `files`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FeatureError
from .info import HeadInfo


class NormedConv2d(nn.Conv2d):
    """A bias-free convolution followed by GroupNorm, stored as ``<name>.weight`` + ``<name>.norm.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_groups: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.norm = nn.GroupNorm(num_groups, out_channels, eps=1e-5, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class Bottleneck(nn.Module):
    """Residual bottleneck C_in → P with width P/4 and an optional timestep-embedding bias."""

    def __init__(self, in_channels: int, out_channels: int, width: int, emb_dim: int, num_groups: int) -> None:
        super().__init__()
        self.shortcut = (
            NormedConv2d(in_channels, out_channels, 1, num_groups) if in_channels != out_channels else None
        )
        self.conv1 = NormedConv2d(in_channels, width, 1, num_groups)
        self.conv2 = NormedConv2d(width, width, 3, num_groups)
        self.conv3 = NormedConv2d(width, out_channels, 1, num_groups)
        self.emb_layers = nn.Linear(emb_dim, width) if emb_dim > 0 else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        if emb is not None and self.emb_layers is not None:
            h = h + F.relu(self.emb_layers(emb.to(h.dtype)))[:, :, None, None]
        h = F.relu(self.conv2(h))
        h = self.conv3(h)
        skip = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(h + skip)


class ReadoutHead(nn.Module):
    """A readout head: decoder features (+ timestep embedding) → readout map.

    ``forward(features, emb=None)`` takes the resized, concatenated decoder features
    ``[N, sum(info.dims), H, W]`` and the U-Net's timestep embedding ``[N, E]`` (or
    ``[1, E]`` / ``[E]``, broadcast over the batch) and returns ``[N, K, H, W]``: K is
    the output-head channels for spatial / keypoint heads and P for relative heads.
    """

    def __init__(self, info: HeadInfo) -> None:
        super().__init__()
        self.info = info
        layers = []
        for channels in info.dims:
            block = Bottleneck(channels, info.projection_dim, info.bottleneck_dim, info.emb_dim, info.num_groups)
            layers.append(nn.Sequential(block) if info.sequential else block)
        self.bottleneck_layers = nn.ModuleList(layers)
        self.mixing_weights = nn.Parameter(torch.ones(len(info.dims)))
        self.output_head = _output_head(info) if info.output_channels else None

    def forward(self, features: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        self._check_features(features)
        emb = self._batch_embedding(emb, features.shape[0])
        weights = torch.softmax(self.mixing_weights, dim=0)
        mixed: torch.Tensor | None = None
        start = 0
        for index, (channels, layer) in enumerate(zip(self.info.dims, self.bottleneck_layers)):
            chunk = features[:, start : start + channels]
            start += channels
            # Released sequential heads wrap each bottleneck in nn.Sequential and so never see emb.
            out = layer(chunk) if self.info.sequential else layer(chunk, emb)
            term = weights[index] * out
            mixed = term if mixed is None else mixed + term
        assert mixed is not None
        return self.output_head(mixed) if self.output_head is not None else mixed

    def _check_features(self, features: torch.Tensor) -> None:
        if features.ndim != 4:
            raise FeatureError(
                f"Readout head expects features shaped [N, C, H, W], got {tuple(features.shape)}."
            )
        if features.shape[1] != self.info.in_channels:
            raise FeatureError(
                f"This {self.info.family.upper()} head reads {len(self.info.dims)} decoder layers with "
                f"{self.info.in_channels} channels in all (dims={list(self.info.dims)}), but got features "
                f"with {features.shape[1]} channels. Use a head trained for this base model."
            )

    def _batch_embedding(self, emb: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if emb is None or self.info.sequential or self.info.emb_dim == 0:
            return None
        if emb.ndim == 1:
            emb = emb[None]
        if emb.ndim != 2 or emb.shape[1] != self.info.emb_dim:
            raise FeatureError(
                f"Timestep embedding must be [N, {self.info.emb_dim}], got {tuple(emb.shape)}."
            )
        if emb.shape[0] == 1 and batch != 1:
            emb = emb.expand(batch, -1)
        elif emb.shape[0] != batch:
            raise FeatureError(f"Timestep embedding batch {emb.shape[0]} does not match feature batch {batch}.")
        return emb


def _output_head(info: HeadInfo) -> nn.Sequential:
    assert info.output_channels is not None
    modules: list[nn.Module] = [
        nn.Conv2d(info.projection_dim, 128, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(128, 32, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(32, info.output_channels, 1),
    ]
    if info.output_activation:
        modules.append(nn.Tanh())
    return nn.Sequential(*modules)


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters in a module."""
    return sum(p.numel() for p in module.parameters())
