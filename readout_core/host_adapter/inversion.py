"""DDIM inversion of a LATENT inside the host, for editing real images.

DDIM with η = 0 is the Euler method in the host's sigma parametrisation
(``x = x0 + σ·ε``), so inversion walks the schedule upwards:
``x ← x + (σ_next − σ)·ε̂(x, σ_next)``, the model evaluated at the higher noise level
as diffusers' DDIM inversion does (the released inversion). ``refine`` fixed-point
iterations then solve ``x_next = x + (σ_next − σ)·ε̂(x_next, σ_next)``, which makes each
step the exact inverse of the DDIM / Euler step that reconstructs the image. It runs through the host's own CFG guider, so the
conditioning, CFG, model patches and memory management are the host's; EPS and
V-prediction models both work because the guider returns the denoised estimate.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ReadoutError

INVERSION_KEY = "readout_inversion"
"""Key of the LATENT dict entry that records how a latent was inverted."""


def invert_latent(patcher: Any, latent: dict, positive: list, negative: list | None, steps: int, cfg: float,
                  scheduler: str, refine: int = 0) -> dict:
    """The noise latent that ``sampling`` from ``steps`` / ``scheduler`` would turn into ``latent``.

    Returns a LATENT dict: ``samples`` is the inverted latent (the host's un-scaled
    latent space, like VAE Encode's output), and ``readout_inversion`` records the
    schedule and the source latent so a sampler can start from it and check its own
    schedule agrees.
    """
    import comfy.sample
    import comfy.samplers
    import comfy.utils

    if steps < 1 or refine < 0:
        raise ReadoutError(f"Inversion needs at least 1 step and refine ≥ 0, got {steps} and {refine}.")
    if cfg != 1.0 and negative is None:
        raise ReadoutError("Inversion with CFG other than 1.0 needs negative conditioning; connect it or use CFG 1.0.")
    samples = comfy.sample.fix_empty_latent_channels(patcher, latent["samples"])
    if "noise_mask" in latent:
        raise ReadoutError("Invert Image inverts the whole latent; remove the noise mask (Set Latent Noise Mask).")
    sampling = patcher.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, scheduler, steps).float().cpu()
    ascending = sigmas.flip(0)
    progress = comfy.utils.ProgressBar(steps * (1 + refine))

    def inversion(model, x, sigma_list, extra_args=None, callback=None, disable=None):
        import comfy.model_management

        extra_args = extra_args or {}
        ones = x.new_ones([x.shape[0]])
        for index in range(len(sigma_list) - 1):
            comfy.model_management.throw_exception_if_processing_interrupted()
            sigma, sigma_next = sigma_list[index], sigma_list[index + 1]
            moved = x
            for _ in range(1 + refine):
                eps = (moved - model(moved, sigma_next * ones, **extra_args)) / sigma_next
                moved = x + (sigma_next - sigma) * eps
                progress.update(1)
            x = moved
        return x

    guider = comfy.samplers.CFGGuider(patcher)
    guider.set_conds(positive, negative if negative is not None else positive)
    guider.set_cfg(cfg)
    inverted = guider.sample(torch.zeros_like(samples), samples, comfy.samplers.KSAMPLER(inversion), ascending,
                             disable_pbar=True, seed=0)
    out = {key: value for key, value in latent.items() if key != "noise_mask"}
    out["samples"] = inverted.to(samples.dtype).cpu()
    out[INVERSION_KEY] = {"sigmas": sigmas, "steps": steps, "scheduler": scheduler, "cfg": cfg, "refine": refine,
                          "source": samples.cpu()}
    return out


def inversion_record(latent: dict) -> dict | None:
    """What `invert_latent` recorded on ``latent``, or None for an ordinary latent."""
    return latent.get(INVERSION_KEY)
