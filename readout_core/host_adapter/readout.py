"""A head's readout of a LATENT through the host's own sampling machinery (Readout Preview)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..features import DecoderFeatureCapture
from .guided_sampling import WRAPPER_KEY
from .unet import check_head_fits, find_diffusion_model, head_on, host_decoder_layout, host_feature_modules, host_head_embedding


def readout_of_latent(patcher: Any, head: nn.Module, latent: dict, conditioning: list, percent: float) -> torch.Tensor:
    """The head's readout of a LATENT, through the host's own sampling machinery.

    One model evaluation at the noise level of ``percent`` (ComfyUI's percent of the
    schedule; no noise is added), conditioned on ``conditioning`` with CFG 1. Returns
    ``[B, K, h, w]`` on the CPU.
    """
    check_head_fits(head, host_decoder_layout(find_diffusion_model(patcher)))
    features, emb = latent_features(patcher, latent, conditioning, percent)
    with torch.no_grad():
        return head_on(head, features.device)(features, emb.to(features.device)).cpu()


def latent_features(patcher: Any, latent: dict, conditioning: list, percent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder features ``[B, C, h, w]`` a head reads from a LATENT, and the timestep
    embedding ``[B, E]``: one evaluation as in `readout_of_latent` (float32)."""
    import comfy.patcher_extension
    import comfy.samplers

    unet = find_diffusion_model(patcher)
    layout = host_decoder_layout(unet)
    captured: dict[str, torch.Tensor] = {}

    def capture(executor, x, timesteps, context, y, control, transformer_options, **kwargs):
        with DecoderFeatureCapture(host_feature_modules(executor.class_obj, layout)) as features:
            out = executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        captured["features"] = features.collected(tuple(x.shape[-2:]))
        captured["timesteps"] = timesteps
        return out

    def one_evaluation(model, x, sigmas, extra_args=None, callback=None, disable=None):
        model(x, sigmas[0] * x.new_ones([x.shape[0]]), **(extra_args or {}))
        return x

    model = patcher.clone()
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY + "_preview", capture)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conditioning, conditioning)
    guider.set_cfg(1.0)
    samples = latent["samples"]
    sigma = float(model.get_model_object("model_sampling").percent_to_sigma(percent))
    sigma = min(sigma, float(model.get_model_object("model_sampling").sigma_max))
    guider.sample(torch.zeros_like(samples), samples, comfy.samplers.KSAMPLER(one_evaluation),
                  torch.tensor([sigma, 0.0]), disable_pbar=True, seed=0)
    batch = samples.shape[0]
    with torch.no_grad():
        emb = host_head_embedding(unet, captured["timesteps"][:batch]).float()
    return captured["features"][:batch].float(), emb
