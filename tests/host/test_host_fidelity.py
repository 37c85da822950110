"""The `official` rule inside host sampling against an independent, step-by-step model of
the released algorithm (DDIM, leading timesteps, a fresh AdamW per timestep, both CFG
branches), and the host left exactly as it was after guided, failed and interrupted prompts."""

from __future__ import annotations

import pytest
import torch

from host_support import require_host

HOST = require_host()

import comfy.model_management  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.samplers  # noqa: E402
from tiny_host import conds, tiny_host_model, tiny_spatial_head  # noqa: E402

from readout_core import ReadoutError  # noqa: E402
from readout_core.guidance import GuidanceSettings, GuidanceTerm  # noqa: E402
from readout_core.host_adapter import guided_sampling  # noqa: E402
from readout_core.host_adapter import HostGuidance, host_decoder_layout, make_autograd_safe  # noqa: E402
from readout_core.value_ranges import renormalize  # noqa: E402

STEPS, CFG, LR, RATIO = 10, 3.0, 2e-2, (0.0, 0.5)


def released_reference(patcher, head, control, noise_vp, context_uncond, context_cond):
    """The released loop (the authors' DDIM guidance code), written out by hand: returns the final VP latent."""
    unet = patcher.model.diffusion_model
    alphas = 1.0 / (patcher.model.model_sampling.sigmas.double() ** 2 + 1.0)
    make_autograd_safe(unet)  # the host made the weights inference tensors
    timesteps = list(range(1 + (STEPS - 1) * (1000 // STEPS), 0, -(1000 // STEPS)))  # leading, offset 1
    layout = host_decoder_layout(unet)
    blocks = [unet.output_blocks[layout.host_output_block(i)][0].out_layers for i in range(len(layout.dims))]
    feats: list[torch.Tensor] = [None] * len(blocks)
    handles = [b.register_forward_hook(lambda m, a, out, i=i: feats.__setitem__(i, out)) for i, b in enumerate(blocks)]
    context = torch.cat([context_uncond, context_cond])

    def unet_step(latents, t):
        eps = unet(torch.cat([latents] * 2), torch.full((2,), float(t)), context=context)
        size = latents.shape[-2:]
        stacked = torch.cat([torch.nn.functional.interpolate(f, size=size, mode="bilinear", align_corners=False)
                             for f in feats], dim=1)
        uncond, cond = eps.chunk(2)
        return uncond + CFG * (cond - uncond), stacked

    def loss_fn(stacked, latents, t):
        emb = unet.time_embed(torch.cat([torch.cos(a := t * torch.exp(-torch.log(torch.tensor(10000.0)) *
                                                                      torch.arange(16) / 16)), torch.sin(a)])[None])
        low, high = latents.detach().min(), latents.detach().max()
        total = 0
        for branch in stacked.chunk(2):
            pred = renormalize(head(branch, emb), head.info.control_range, (low, high))
            ctrl = renormalize(control, head.info.control_range, (low, high))
            total = total + 0.5 * torch.nn.functional.mse_loss(pred, ctrl)
        return total

    latents = noise_vp.clone()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            for i, t in enumerate(timesteps):
                t_next = timesteps[i + 1] if i + 1 < len(timesteps) else -1
                if int(RATIO[0] * STEPS) <= i < int(RATIO[1] * STEPS):
                    latents = latents.detach().requires_grad_(True)
                    optimizer = torch.optim.AdamW([latents], lr=LR, weight_decay=0.0)
                    _, stacked = unet_step(latents, t)
                    loss_fn(stacked, latents, torch.tensor(float(t))).backward()
                    optimizer.step()
                with torch.no_grad():
                    eps, _ = unet_step(latents.detach(), t)
                    a_t = alphas[t]
                    a_next = alphas[t_next] if t_next >= 0 else alphas[0]
                    x0 = (latents.detach() - eps * (1 - a_t).sqrt()) / a_t.sqrt()
                    latents = (a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps).float()
    finally:
        for h in handles:
            h.remove()
    return latents, timesteps, alphas


@pytest.mark.parametrize("in_place", [True, False], ids=["moves-sampler-latent", "shifts-denoised"])
def test_official_rule_follows_the_released_algorithm_step_by_step(in_place, monkeypatch):
    if not in_place:  # the fallback used where the sampler's latent cannot be changed in place
        monkeypatch.setattr(guided_sampling, "_can_update_in_place", lambda x: False)
    patcher = tiny_host_model("sd15", seed=3)
    head = tiny_spatial_head(patcher, seed=1)
    control = torch.zeros(1, 3, 16, 16)
    control[..., :8] = 0.8
    control[..., 8:] = -0.8
    positive, negative = conds("sd15", seed=5)
    noise_vp = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode(False):
        reference, timesteps, alphas = released_reference(
            patcher, head, control, noise_vp, negative[0][0], positive[0][0])

    sigmas = [((1 - alphas[t]) / alphas[t]).sqrt().item() for t in timesteps] + [((1 - alphas[0]) / alphas[0]).sqrt().item()]
    guided = patcher.clone()
    HostGuidance(GuidanceSettings(rule="official", weight=LR, start_percent=RATIO[0], end_percent=RATIO[1],
                                  terms=[GuidanceTerm(head=head, target=control, weight=0.5)])).install(guided)
    noise = noise_vp * (sigmas[0] ** 2 + 1) ** 0.5 / sigmas[0]  # the host scales noise by sigma_max
    with torch.inference_mode():
        out = comfy.sample.sample_custom(guided, noise, CFG, comfy.samplers.sampler_object("ddim"),
                                         torch.tensor(sigmas), positive, negative, torch.zeros(1, 4, 16, 16), seed=0, disable_pbar=True)
        unguided = comfy.sample.sample_custom(patcher, noise, CFG, comfy.samplers.sampler_object("ddim"),
                                              torch.tensor(sigmas), positive, negative, torch.zeros(1, 4, 16, 16), seed=0, disable_pbar=True)
    to_vp = lambda latent: patcher.model.process_latent_in(latent) / (sigmas[-1] ** 2 + 1) ** 0.5  # noqa: E731
    ours, plain = to_vp(out), to_vp(unguided)
    error = ((ours - reference).norm() / reference.norm()).item()
    moved = ((plain - reference).norm() / reference.norm()).item()
    print(f"relative difference to the released algorithm: {error:.2e} (guidance moved the result by {moved:.2e})")
    assert moved > 1e-2
    assert error < 1e-4


def _sample(patcher, positive, negative, seed=0):
    latent = torch.zeros(1, 4, 16, 16)
    with torch.inference_mode():
        return comfy.sample.sample(patcher, comfy.sample.prepare_noise(latent, seed), 6, 3.0, "euler", "normal",
                                   positive, negative, latent, seed=seed, disable_pbar=True)


def test_host_is_left_exactly_as_it_was_after_guided_failed_and_interrupted_prompts():
    used, fresh = tiny_host_model("sd15", seed=2), tiny_host_model("sd15", seed=2)
    positive, negative = conds("sd15")
    head = tiny_spatial_head(used)

    def guided(target):
        model = used.clone()
        HostGuidance(GuidanceSettings(rule="official", weight=0.05, end_percent=1.0,
                                      terms=[GuidanceTerm(head=head, target=target)])).install(model)
        return model

    _sample(guided(torch.zeros(1, 3, 16, 16)), positive, negative)
    with pytest.raises(ReadoutError, match="target has 3 images but the latent batch has 1"):
        _sample(guided(torch.zeros(3, 3, 16, 16)), positive, negative)
    comfy.model_management.interrupt_current_processing(True)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        _sample(guided(torch.zeros(1, 3, 16, 16)), positive, negative)
    comfy.model_management.interrupt_current_processing(False)

    unet = used.model.diffusion_model
    assert not any(m._forward_hooks for m in unet.modules())
    assert not used.wrappers and "patches" not in used.model_options.get("transformer_options", {})
    assert not any(p.requires_grad for p in unet.parameters())
    assert torch.equal(_sample(used, positive, negative), _sample(fresh, positive, negative))
