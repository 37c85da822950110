"""Guidance measurably reaches its target inside host sampling, for first-order, multistep,
ancestral / SDE and CFG++ samplers.

The tiny U-Net is made a usable denoiser (exact for Gaussian data, plus a share of the
U-Net's own output), so samplers end at data-scale latents; the target is the head's own
readout of another seed's sample, so it is reachable. The final readout loss is read on
the sampled latent at a low noise level, as the head would read a finished image.
"""

from __future__ import annotations

import pytest
import torch

from host_support import require_host

HOST = require_host()

import comfy.sample  # noqa: E402
from tiny_host import conds, make_gaussian_denoiser, tiny_host_model, tiny_spatial_head  # noqa: E402

from readout_core import DecoderFeatureCapture  # noqa: E402
from readout_core.guidance import GuidanceSettings, GuidanceTerm  # noqa: E402
from readout_core.host_adapter import HostGuidance, host_feature_modules, host_head_embedding  # noqa: E402

SETTINGS = {"official": dict(weight=0.05, recurrent_steps=2), "gradient": dict(weight=2e4, recurrent_steps=1)}


@pytest.fixture(scope="module")
def world():
    model = tiny_host_model("sd15", seed=0)
    make_gaussian_denoiser(model, unet_share=0.1)
    head = tiny_spatial_head(model, seed=0)
    positive, negative = conds("sd15")
    world = {"model": model, "head": head, "positive": positive, "negative": negative}
    world["target"] = readout(world, sample(world, model, "euler", seed=99))
    return world


def sample(world, model, sampler, seed):
    latent = torch.zeros(1, 4, 16, 16)
    with torch.inference_mode():
        return comfy.sample.sample(model, comfy.sample.prepare_noise(latent, seed), 12, 3.0, sampler, "normal",
                                   world["positive"], world["negative"], latent, seed=seed, disable_pbar=True)


def readout(world, latent_out, t=50.0):
    inner = world["model"].model
    unet = inner.diffusion_model
    sigma = inner.model_sampling.sigma(torch.tensor([t]))
    with torch.no_grad(), DecoderFeatureCapture(host_feature_modules(unet)) as capture:
        inner.apply_model(inner.process_latent_in(latent_out), sigma, c_crossattn=world["positive"][0][0])
        return world["head"](capture.collected((16, 16)), host_head_embedding(unet, torch.tensor([t])))


@pytest.mark.parametrize("rule", ["official", "gradient"])
@pytest.mark.parametrize("sampler", [
    "euler", "dpmpp_2m", "euler_ancestral", "dpmpp_sde", "euler_cfg_pp",
])
def test_guidance_halves_the_final_readout_loss(world, sampler, rule, request):
    if rule == "gradient" and sampler == "dpmpp_2m":
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=(
            "a multistep sampler mixes the shifted noise estimate with the previous step's, which damps the "
            "gradient rule (measured ratio 0.63); use the official rule with multistep samplers")))
    guided = world["model"].clone()
    HostGuidance(GuidanceSettings(rule=rule, start_percent=0.0, end_percent=1.0, **SETTINGS[rule],
                                  terms=[GuidanceTerm(head=world["head"], target=world["target"], weight=0.5)])
                 ).install(guided)
    loss = lambda latent_out: ((readout(world, latent_out) - world["target"]) ** 2).mean().item()  # noqa: E731
    before = loss(sample(world, world["model"], sampler, seed=0))
    after = loss(sample(world, guided, sampler, seed=0))
    print(f"{sampler} {rule}: unguided {before:.3e} guided {after:.3e} ratio {after / before:.2f}")
    assert after <= 0.5 * before
