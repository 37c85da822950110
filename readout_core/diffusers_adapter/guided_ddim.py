"""The released guidance loop on a diffusers U-Net, without a host (demo, tiny world, CLI).

DDIM with leading spacing; on each step inside the guidance window the latent is
moved by a fresh AdamW (lr = weight, ``recurrent_steps`` steps) against
`guidance_loss`, then an ordinary step is taken from the moved latent, as the authors' code does.
One conditioning, no classifier-free guidance: this path serves unconditional or
fixed-prompt models such as the tiny world; in ComfyUI the host adapter guides every
sampler instead.
"""

from __future__ import annotations

import copy

import torch

from ..features import DecoderFeatureCapture
from ..guidance import AdamState, GuidanceSettings, adam_update, guidance_loss
from .feature_modules import diffusers_feature_modules, diffusers_head_embedding
from .feature_source import DiffusersSource


def guided_window(settings: GuidanceSettings | None, steps: int) -> range:
    """Step indices guided, as released: ``[int(start·N), int(end·N))`` (a fraction of the steps;
    the host's window is a fraction of the noise range: see `GuidanceSettings`)."""
    if settings is None:
        return range(0)
    return range(int(settings.start_percent * steps), int(settings.end_percent * steps))


def sample(source: DiffusersSource, noise: torch.Tensor, settings: GuidanceSettings | None = None, steps: int = 50,
           eta: float = 0.0) -> torch.Tensor:
    """DDIM from ``noise`` ``[N, C, H, W]`` (fp32, CPU) to clean latents, guided where
    ``settings`` says (official rule: the released AdamW update)."""
    scheduler = copy.deepcopy(source.scheduler)
    scheduler.set_timesteps(steps)
    window = guided_window(settings, steps)
    generator = torch.Generator().manual_seed(0)
    x = noise.float() * scheduler.init_noise_sigma
    for index, t in enumerate(scheduler.timesteps):
        if index in window and index % settings.guide_every == 0:
            x = _guide(source, x, t, settings)
        with torch.no_grad():
            prediction = source.predict(x, t.expand(x.shape[0])).float().cpu()
        x = scheduler.step(prediction, t, x, eta=eta, generator=generator).prev_sample
    return x


def readout(source: DiffusersSource, head: torch.nn.Module, latents: torch.Tensor, timestep: int = 1,
            use_emb: bool = True) -> torch.Tensor:
    """A head's readout of clean ``latents`` (U-Net run at ``timestep``, no noise added)."""
    t = torch.full((latents.shape[0],), timestep)
    with torch.no_grad(), DecoderFeatureCapture(diffusers_feature_modules(source.unet)) as capture:
        source.predict(latents, t)
        emb = diffusers_head_embedding(source.unet, t, latents.shape[0]).float() if use_emb else None
        return head(capture.collected(tuple(latents.shape[-2:])).float(), emb).cpu()


def _guide(source: DiffusersSource, x: torch.Tensor, t: torch.Tensor, settings: GuidanceSettings) -> torch.Tensor:
    """``recurrent_steps`` steps of one fresh AdamW on the latent against the guidance loss."""
    state = AdamState()
    for _ in range(settings.recurrent_steps):
        latent = x.detach().requires_grad_(True)
        with DecoderFeatureCapture(diffusers_feature_modules(source.unet)) as capture:
            source.predict(latent, t.expand(x.shape[0]))
        features = capture.collected(tuple(x.shape[-2:]))
        emb = diffusers_head_embedding(source.unet, t.expand(x.shape[0]), x.shape[0])
        loss, _ = guidance_loss(settings.terms, [features], emb, latent, settings.reference_of)
        (grad,) = torch.autograd.grad(loss, latent)
        x = (latent + adam_update(grad.float(), state, settings.weight)).detach()
    return x
