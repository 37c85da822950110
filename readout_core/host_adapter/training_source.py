"""A ComfyUI MODEL + VAE as the trainer's `FeatureSource` (Train Readout Head node).

Features come from the host's own sampling machinery (model patches, memory
management, the conditioning's format for SD1.5 and SDXL): one model evaluation per
batch with CFG 1 on the given (empty-prompt) conditioning, each latent noised to its
own timestep by the model's ``noise_scaling``. Hard negatives are SDEdits made by the
host's sampler from the same conditioning.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from ..features import DecoderFeatureCapture
from ..latent_scale import PIXELS_PER_LATENT
from .guided_sampling import WRAPPER_KEY
from .unet import find_diffusion_model, host_decoder_layout, host_feature_modules, host_head_embedding

SDEDIT_SAMPLER = ("euler", "normal")
SDEDIT_STEPS = 50


class HostFeatureSource:
    """Features of a host MODEL for training (see the module docstring)."""

    def __init__(self, patcher: Any, vae: Any, conditioning: list, name: str = "") -> None:
        unet = find_diffusion_model(patcher)
        layout = host_decoder_layout(unet)
        self.patcher, self.vae, self.conditioning, self.name = patcher, vae, conditioning, name
        self.family, self.dims = layout.family, layout.dims
        self.emb_dim = int(unet.time_embed[-1].out_features)
        self.latent_factor = int(getattr(vae, "downscale_ratio", PIXELS_PER_LATENT))
        self._layout = layout

    def describe(self) -> dict:
        """What tells checkpoints apart in the feature cache: family, layout, a weight
        fingerprint and the patches (LoRA) applied."""
        unet = find_diffusion_model(self.patcher)
        fingerprint = [float(w.detach().double().sum()) for w in (unet.input_blocks[0][0].weight, unet.out[-1].weight)]
        return {"name": self.name, "family": self.family, "dims": list(self.dims), "weights": fingerprint,
                "patches": _patches_digest(self.patcher), "vae_factor": self.latent_factor}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[N, 3, R, R]`` in 0..1 → the host's latents (as VAE Encode gives them)."""
        return self.vae.encode(images.movedim(1, -1)).float().cpu().clone()

    def features(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
                 ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Decoder maps and the head's embedding of ``latents`` noised to ``timesteps`` (0..999)."""
        import comfy.patcher_extension
        import comfy.samplers

        sampling = self.patcher.get_model_object("model_sampling")
        sigmas = sampling.sigma(timesteps.float()).float()
        captured: dict[str, Any] = {}
        layout = self._layout

        def capture(executor, x, t, context, y, control, transformer_options, **kwargs):
            with DecoderFeatureCapture(host_feature_modules(executor.class_obj, layout)) as recorder:
                out = executor(x, t, context, y, control, transformer_options, **kwargs)
            captured["maps"] = [f.detach().float().cpu().clone() for f in recorder.features]
            captured["timesteps"] = t
            return out

        def one_evaluation(model, x, _sigmas, extra_args=None, callback=None, disable=None):
            sigma = sigmas.to(x.device, x.dtype)
            noisy = sampling.noise_scaling(sigma, noise.to(x.device, x.dtype), x)
            model(noisy, sigma, **(extra_args or {}))
            return x

        model = self.patcher.clone()
        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY + "_training",
                                   capture)
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(self.conditioning, self.conditioning)
        guider.set_cfg(1.0)
        with torch.no_grad():
            guider.sample(torch.zeros_like(latents), latents, comfy.samplers.KSAMPLER(one_evaluation),
                          torch.tensor([float(sigmas.max()), 0.0]), disable_pbar=True, seed=0)
            unet = find_diffusion_model(model)
            emb = host_head_embedding(unet, captured["timesteps"][:latents.shape[0]]).float().cpu().clone()
        return captured["maps"], emb

    def sdedit(self, latents: torch.Tensor, strength: float, seed: int) -> torch.Tensor:
        """The host's sampler re-noises to ``strength`` and denoises with the conditioning (CFG 1)."""
        import comfy.sample

        sampler, scheduler = SDEDIT_SAMPLER
        noise = comfy.sample.prepare_noise(latents, seed)
        steps = max(1, round(SDEDIT_STEPS * strength))
        out = comfy.sample.sample(self.patcher, noise, steps, 1.0, sampler, scheduler, self.conditioning,
                                  self.conditioning, latents, denoise=strength, disable_pbar=True, seed=seed)
        return out.float().cpu().clone()


def _patches_digest(patcher: Any) -> str:
    """A digest of the weight patches (LoRA) on the model: which weights, how strongly."""
    patches = getattr(patcher, "patches", {}) or {}
    summary = sorted((key, [float(p[0]) for p in entries]) for key, entries in patches.items())
    return hashlib.sha256(repr(summary).encode()).hexdigest()[:16]
