"""HOST ADAPTER — the one module of `readout_core` that knows ComfyUI.

Nothing else in the core imports this module; the node wrappers in ``nodes/`` do.
It maps the host's ``UNetModel`` (``comfy.ldm.modules.diffusionmodules.openaimodel``)
onto the core's decoder layout: which modules produce the published "hidden"
features and how the head's timestep embedding is computed.

In the host's ``ResBlock`` the residual branch is ``h = out_layers(...)`` and the
block returns ``skip_connection(x) + h``, so the output of ``out_layers`` of
``output_blocks[k][0]`` is the feature of decoder layer k.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .errors import FeatureError
from .features import DecoderLayout, decoder_layout, sinusoidal_timestep_embedding

_FAMILY_BY_LEVELS = {4: "sd15", 3: "sdxl"}


def find_diffusion_model(model: Any) -> nn.Module:
    """The ``UNetModel`` inside a host MODEL (a ``ModelPatcher``), a ``BaseModel`` or the U-Net itself.

    Raises `FeatureError` with advice for models without a U-Net decoder (DiT, Flux, ...).
    """
    candidate = getattr(model, "model", model)
    candidate = getattr(candidate, "diffusion_model", candidate)
    if not hasattr(candidate, "output_blocks") or not hasattr(candidate, "time_embed"):
        name = type(candidate).__name__
        raise FeatureError(
            f"Readout Guidance reads the decoder of a Stable Diffusion U-Net (SD1.5 or SDXL), but this model "
            f"is a {name} without one. Load an SD1.5 or SDXL checkpoint."
        )
    return candidate


def host_decoder_layout(unet: nn.Module) -> DecoderLayout:
    """The `DecoderLayout` of a host ``UNetModel``, read from its own attributes."""
    levels = len(unet.channel_mult)
    family = _FAMILY_BY_LEVELS.get(levels)
    per_level = set(unet.num_res_blocks)
    if family is None or len(per_level) != 1:
        raise FeatureError(
            f"Unsupported U-Net layout ({levels} levels, res blocks {list(unet.num_res_blocks)}); Readout "
            "Guidance supports the SD1.5 and SDXL U-Net layouts."
        )
    widths = tuple(unet.model_channels * mult for mult in unet.channel_mult)
    return decoder_layout(family, widths, layers_per_block=per_level.pop())


def host_feature_modules(unet: nn.Module, layout: DecoderLayout | None = None) -> list[nn.Module]:
    """``output_blocks[k][0].out_layers`` for every decoder layer, in reading order."""
    layout = layout or host_decoder_layout(unet)
    modules = []
    for layer, channels in enumerate(layout.dims):
        resblock = unet.output_blocks[layout.host_output_block(layer)][0]
        out_layers = getattr(resblock, "out_layers", None)
        if out_layers is None or resblock.out_channels != channels:
            raise FeatureError(
                f"Output block {layout.host_output_block(layer)} of this U-Net is not the expected ResBlock "
                f"with {channels} channels; the model's layout is not supported."
            )
        modules.append(out_layers)
    return modules


def host_head_embedding(unet: nn.Module, timesteps: torch.Tensor) -> torch.Tensor:
    """The head's timestep embedding: the U-Net's ``time_embed`` of the timestep sinusoid.

    ``timesteps`` are the discrete model timesteps (``model_sampling.timestep(sigma)``),
    one per batch element. SDXL's added label embedding is not included, as released.
    """
    weight = unet.time_embed[0].weight
    sinusoid = sinusoidal_timestep_embedding(timesteps.to(weight.device), unet.model_channels)
    return unet.time_embed(sinusoid.to(weight.dtype))
