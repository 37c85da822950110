"""The host U-Net as the core sees it: decoder layout, feature modules, the head's
timestep embedding, and making inference-mode weights usable by autograd.

In the host's ``ResBlock`` the residual branch is ``h = out_layers(...)`` and the
block returns ``skip_connection(x) + h``, so the output of ``out_layers`` of
``output_blocks[k][0]`` is the feature of decoder layer k.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..errors import FeatureError, ReadoutError
from ..features import DecoderLayout, decoder_layout, sinusoidal_timestep_embedding

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


def check_head_fits(head: nn.Module, layout: DecoderLayout) -> None:
    """Raise `ReadoutError` unless ``head`` reads exactly the decoder layers of ``layout``."""
    info = head.info
    if tuple(info.dims) != tuple(layout.dims):
        raise ReadoutError(
            f"The {info.kind} head was trained for {info.family.upper()} (decoder layers {list(info.dims)}), "
            f"but this model is {layout.family.upper()}-like with layers {list(layout.dims)}. "
            f"Load a {layout.family.upper()} head, or a {info.family.upper()} checkpoint."
        )


def head_on(head: nn.Module, device: torch.device) -> nn.Module:
    """``head`` on ``device``: itself if already there, else a copy (the loader's output is never moved)."""
    if next(head.parameters()).device == device:
        return head
    return copy.deepcopy(head).to(device)


def make_autograd_safe(module: nn.Module) -> int:
    """Replace inference-mode parameters and buffers of ``module`` by ordinary clones.

    The host runs prompts under ``torch.inference_mode()``, so weights loaded there
    cannot be saved for backward. The clones hold the same values (outputs stay bit
    identical) and never require grad. Returns how many tensors were replaced.
    """
    replaced = 0
    with torch.inference_mode(False):
        for sub in module.modules():
            for name, param in list(sub._parameters.items()):
                if param is not None and param.is_inference():
                    sub._parameters[name] = nn.Parameter(param.clone(), requires_grad=False)
                    replaced += 1
            for name, buffer in list(sub._buffers.items()):
                if buffer is not None and buffer.is_inference():
                    sub._buffers[name] = buffer.clone()
                    replaced += 1
    return replaced


def control_modules(conds: dict[str, Any] | None) -> list[nn.Module]:
    """The modules of every ControlNet / T2I-Adapter attached to the guider's conds."""
    found: dict[int, nn.Module] = {}
    for cond_list in (conds or {}).values():
        for cond in cond_list or []:
            control = cond.get("control") if isinstance(cond, dict) else None
            while control is not None:
                for value in vars(control).values():
                    module = getattr(value, "model", value)
                    if isinstance(module, nn.Module):
                        found[id(module)] = module
                control = getattr(control, "previous_controlnet", None)
    return list(found.values())


@contextmanager
def checkpointed_layers(unet: nn.Module, enabled: bool) -> Iterator[None]:
    """Gradient checkpointing of the U-Net's ResBlocks and transformers for one pass.

    Each layer's activations are recomputed during the backward pass instead of kept,
    trading time for memory (SDXL at 1024 px). The layers get an instance ``forward``
    only inside the block; whatever was there before is put back on exit.
    """
    if not enabled:
        yield
        return
    from torch.utils.checkpoint import checkpoint

    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

    saved: list[tuple[nn.Module, object]] = []
    for block in [*unet.input_blocks, unet.middle_block, *unet.output_blocks]:
        for layer in block:
            if not isinstance(layer, (ResBlock, SpatialTransformer)):
                continue
            saved.append((layer, layer.__dict__.get("forward")))
            layer.forward = _checkpointed(layer.forward, checkpoint)
    try:
        yield
    finally:
        for layer, previous in saved:
            del layer.forward
            if previous is not None:
                layer.forward = previous


def _checkpointed(forward: Callable, checkpoint: Callable) -> Callable:
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        # transformer_options is mutated as the U-Net runs; the recomputation must see it
        # as it was for this layer.
        args = tuple(dict(a) if isinstance(a, dict) else a for a in args)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run
