"""Guidance on fp16 / bf16 weights and V-prediction models; non-finite steps are skipped."""

from __future__ import annotations

import logging

import pytest
import torch

from host_support import require_host

HOST = require_host()

import comfy.model_base  # noqa: E402
import comfy.sample  # noqa: E402
from tiny_host import conds, tiny_host_model, tiny_spatial_head  # noqa: E402

from readout_core.guidance import GuidanceSettings, GuidanceTerm  # noqa: E402
from readout_core.host_adapter import HostGuidance  # noqa: E402


def target() -> torch.Tensor:
    t = torch.full((1, 3, 16, 16), -0.5)
    t[..., :8] = 0.5
    return t


def run(model, seed=1):
    latent = torch.zeros(1, 4, 16, 16)
    positive, negative = conds("sd15")
    with torch.inference_mode():
        return comfy.sample.sample(model, comfy.sample.prepare_noise(latent, seed), 5, 3.0, "euler", "normal",
                                   positive, negative, latent, seed=seed, disable_pbar=True)


def guided(model, head, rule="official", weight=0.05):
    clone = model.clone()
    HostGuidance(GuidanceSettings(rule=rule, weight=weight, end_percent=0.8,
                                  terms=[GuidanceTerm(head=head, target=target())])).install(clone)
    return clone


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rule", ["official", "gradient"])
def test_half_precision_weights(dtype, rule):
    model = tiny_host_model("sd15", seed=1, dtype=dtype)
    assert next(model.model.diffusion_model.parameters()).dtype == dtype
    head = tiny_spatial_head(model)
    plain = run(model)
    out = run(guided(model, head, rule=rule, weight=0.05 if rule == "official" else 5.0))
    assert torch.isfinite(out).all()
    assert not torch.equal(out, plain)
    assert next(head.parameters()).dtype == torch.float32  # the head (and its loss) stay in fp32
    assert torch.equal(run(model), plain)  # the model is as it was


def test_v_prediction_model():
    model = tiny_host_model("sd15", seed=1, v_prediction=True)
    assert model.model.model_type == comfy.model_base.ModelType.V_PREDICTION
    head = tiny_spatial_head(model)
    plain = run(model)
    out = run(guided(model, head))
    assert torch.isfinite(out).all() and not torch.equal(out, plain)


def test_non_finite_loss_skips_guidance_with_one_warning(caplog):
    model = tiny_host_model("sd15", seed=1)
    head = tiny_spatial_head(model)
    with torch.no_grad():
        head.mixing_weights[0] = float("nan")
    plain = run(model)
    with caplog.at_level(logging.WARNING, logger="readout_guidance"):
        out = run(guided(model, head))
    warnings = [r for r in caplog.records if "non-finite" in r.getMessage()]
    assert len(warnings) == 1
    assert torch.equal(out, plain)
