"""Guidance with a ControlNet, a T2I-Adapter or a LoRA in the graph (tiny SD1.5-layout host model, CPU).

The control models are built as the host's loaders build them (weights created under
``torch.inference_mode()``, as when a loader node runs in a prompt) and attached with
the host's own ``ControlNetApplyAdvanced`` node; the LoRA is patched in through
``comfy.sd.load_lora_for_models``, as the LoRA loader nodes do.
"""

from __future__ import annotations

import pytest
import torch

from host_support import require_host

HOST = require_host()

import comfy.cldm.cldm  # noqa: E402
import comfy.controlnet  # noqa: E402
import comfy.lora  # noqa: E402
import comfy.ops  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.sd  # noqa: E402
import comfy.t2i_adapter.adapter  # noqa: E402
import nodes  # noqa: E402
from tiny_host import conds, init_weights, tiny_host_model, tiny_spatial_head  # noqa: E402

from readout_core.guidance import GuidanceSettings, GuidanceTerm  # noqa: E402
from readout_core.host_adapter import HostGuidance  # noqa: E402

CPU = torch.device("cpu")
RULES = {"official": 0.05, "gradient": 5.0}  # rule -> weight


def target() -> torch.Tensor:
    t = torch.full((1, 3, 16, 16), -0.5)
    t[..., :8] = 0.5
    return t


def hint_image() -> torch.Tensor:
    """A 128x128 IMAGE ([B, H, W, C]), an inference tensor as a node's output would be."""
    with torch.inference_mode():
        image = torch.zeros(1, 128, 128, 3)
        image[:, 32:96, 16:80] = 1.0
        image[:, 8:40, 88:120, 1] = 0.5
    return image


def run(model, positive=None, negative=None, seed=1):
    latent = torch.zeros(1, 4, 16, 16)
    if positive is None:
        positive, negative = conds("sd15")
    with torch.inference_mode():
        return comfy.sample.sample(model, comfy.sample.prepare_noise(latent, seed), 5, 3.0, "euler", "normal",
                                   positive, negative, latent, seed=seed, disable_pbar=True)


def guided(model, head, rule):
    clone = model.clone()
    HostGuidance(GuidanceSettings(rule=rule, weight=RULES[rule], end_percent=0.8,
                                  terms=[GuidanceTerm(head=head, target=target())])).install(clone)
    return clone


def tiny_controlnet(model, seed: int = 11) -> comfy.controlnet.ControlNet:
    """A ControlNet for the tiny U-Net, built as ``comfy.controlnet.load_controlnet_state_dict`` does.

    Its zero convs are random (non-zero), so it changes the U-Net's output.
    """
    config = dict(model.model.model_config.unet_config)
    config.pop("out_channels")
    config.update(hint_channels=3, operations=comfy.ops.disable_weight_init, dtype=torch.float32, device=CPU)
    with torch.inference_mode():
        control_model = comfy.cldm.cldm.ControlNet(**config)
        init_weights(control_model, seed)
        for zero_conv in [*control_model.zero_convs, control_model.middle_block_out]:
            assert zero_conv[0].weight.abs().sum() > 0
    assert all(p.is_inference() for p in control_model.parameters())
    return comfy.controlnet.ControlNet(control_model, global_average_pooling=False, load_device=CPU,
                                      manual_cast_dtype=None)


def tiny_t2i_adapter(seed: int = 12) -> comfy.controlnet.T2IAdapter:
    """A T2I-Adapter whose feature widths (32, 64, 128, 128) match the tiny U-Net, from a state
    dict through the host's own ``load_t2i_adapter``."""
    torch.manual_seed(seed)
    source = comfy.t2i_adapter.adapter.Adapter(channels=[32, 64, 128, 128], nums_rb=2, cin=3 * 64, ksize=1,
                                               sk=True, use_conv=False, xl=False)
    state_dict = {k: v.detach().clone() for k, v in source.state_dict().items()}
    with torch.inference_mode():
        adapter = comfy.controlnet.load_t2i_adapter(state_dict)
    assert isinstance(adapter, comfy.controlnet.T2IAdapter)
    assert all(p.is_inference() for p in adapter.t2i_model.parameters())
    return adapter


def apply_control(control_net, image):
    """(positive, negative) with ``control_net`` attached by the host's ControlNetApplyAdvanced node."""
    positive, negative = conds("sd15")
    with torch.inference_mode():
        return nodes.ControlNetApplyAdvanced().apply_controlnet(positive, negative, control_net, image, 1.0, 0.0, 1.0)


LORA_TARGETS = (
    "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k",  # linear
    "lora_unet_middle_block_1_proj_in",  # 1x1 conv
    "lora_unet_output_blocks_2_0_in_layers_2",  # 3x3 conv in a decoder ResBlock
    "lora_unet_output_blocks_5_0_out_layers_3",  # a read decoder feature's own conv
)


def tiny_lora(model, seed: int = 13, rank: int = 4):
    """``model`` with a small kohya-format LoRA applied by ``comfy.sd.load_lora_for_models``."""
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    weights = model.model.state_dict()
    gen = torch.Generator().manual_seed(seed)
    lora = {}
    with torch.inference_mode():
        for name in LORA_TARGETS:
            shape = weights[key_map[name]].shape
            kernel = tuple(shape[2:])
            lora[f"{name}.lora_down.weight"] = torch.randn(rank, shape[1], *kernel, generator=gen) * 0.3
            lora[f"{name}.lora_up.weight"] = torch.randn(shape[0], rank, *[1] * len(kernel), generator=gen) * 0.3
            lora[f"{name}.alpha"] = torch.tensor(float(rank))
        patched, _clip = comfy.sd.load_lora_for_models(model, None, lora, 1.0, 0.0)
    assert set(patched.patches) == {key_map[name] for name in LORA_TARGETS}
    return patched


def _check_control(model, head, control_net, rule):
    plain = run(model)
    positive, negative = apply_control(control_net, hint_image())
    assert positive[0][1]["control"] is negative[0][1]["control"]
    controlled = run(model, positive, negative)
    assert torch.isfinite(controlled).all()
    assert (controlled - plain).abs().max() > 1e-3  # the control model really acts

    out = run(guided(model, head, rule), positive, negative)
    assert torch.isfinite(out).all()
    assert not torch.equal(out, controlled)

    assert torch.equal(run(model, positive, negative), controlled)  # nothing left changed
    assert torch.equal(run(model), plain)


@pytest.mark.parametrize("rule", list(RULES))
def test_guidance_with_controlnet(rule):
    model = tiny_host_model("sd15", seed=1)
    _check_control(model, tiny_spatial_head(model), tiny_controlnet(model), rule)


@pytest.mark.parametrize("rule", list(RULES))
def test_guidance_with_t2i_adapter(rule):
    model = tiny_host_model("sd15", seed=1)
    _check_control(model, tiny_spatial_head(model), tiny_t2i_adapter(), rule)


@pytest.mark.parametrize("kind", ["controlnet", "t2i_adapter"])
def test_guidance_window_after_the_control_features_are_cached(kind):
    """The control hint (and the adapter's features) are first computed and cached in
    inference mode, before the guidance window; the guided steps then reuse them."""
    model = tiny_host_model("sd15", seed=1)
    control_net = tiny_controlnet(model) if kind == "controlnet" else tiny_t2i_adapter()
    positive, negative = conds("sd15")
    with torch.inference_mode():
        positive, negative = nodes.ControlNetApplyAdvanced().apply_controlnet(
            positive, negative, control_net, hint_image(), 0.7, 0.0, 0.9)
    controlled = run(model, positive, negative)
    clone = model.clone()
    HostGuidance(GuidanceSettings(rule="official", weight=RULES["official"], start_percent=0.3, end_percent=0.8,
                                  terms=[GuidanceTerm(head=tiny_spatial_head(model), target=target())])).install(clone)
    out = run(clone, positive, negative)
    assert torch.isfinite(out).all()
    assert not torch.equal(out, controlled)
    assert torch.equal(run(model, positive, negative), controlled)


def test_controlnet_residuals_need_the_skip_clone():
    """The ControlNet tests really exercise the in-place residual adds: without the pack's
    ``input_block_patch_after_skip`` clone, the host's ``h += ctrl`` breaks backward."""
    model = tiny_host_model("sd15", seed=1)
    positive, negative = apply_control(tiny_controlnet(model), hint_image())
    clone = guided(model, tiny_spatial_head(model), "gradient")
    del clone.model_options["transformer_options"]["patches"]["input_block_patch_after_skip"]
    with pytest.raises(RuntimeError, match="inplace"):
        run(clone, positive, negative)


@pytest.mark.parametrize("rule", list(RULES))
def test_guidance_with_lora(rule):
    base = tiny_host_model("sd15", seed=1)
    head = tiny_spatial_head(base)
    plain = run(base)
    with_lora = tiny_lora(base)
    lora_plain = run(with_lora)
    assert torch.isfinite(lora_plain).all()
    assert (lora_plain - plain).abs().max() > 1e-3  # the LoRA really acts

    out = run(guided(with_lora, head, rule))
    assert torch.isfinite(out).all()
    assert not torch.equal(out, lora_plain)

    assert torch.equal(run(with_lora), lora_plain)  # the LoRA model is as it was
    assert torch.equal(run(base), plain)  # the LoRA is unpatched from the base model
    assert torch.equal(plain, run(tiny_host_model("sd15", seed=1)))
    assert not torch.equal(run(guided(base, head, rule)), out)  # the guided run used the LoRA weights
