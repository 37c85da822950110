"""Parity of the host path with the diffusers path: a tiny diffusers U-Net, converted to the
host's format with the same weights, gives the same ε, the same captured decoder features,
the same head timestep embedding and the same head readout through the host adapter
(to 1e-4, SD1.5 and SDXL block layouts).

Tolerance: for every compared tensor, ``max|host - diffusers| <= 1e-4 * max(1, max|diffusers|)``,
i.e. absolute 1e-4 for tensors of magnitude up to 1, relative 1e-4 beyond. Every compared
tensor is also checked to be far from zero, so the bound is meaningful.
"""

from __future__ import annotations

import pytest
import torch

from host_support import require_host

HOST = require_host()

diffusers = pytest.importorskip("diffusers", reason="diffusers is needed for the host-vs-diffusers parity test")

import comfy.supported_models  # noqa: E402
import comfy.utils  # noqa: E402

from readout_core import DecoderFeatureCapture, HeadInfo, ReadoutHead  # noqa: E402
from readout_core.diffusers_adapter.feature_modules import (  # noqa: E402
    diffusers_feature_modules,
    diffusers_head_embedding,
    diffusers_layout,
)
from readout_core.host_adapter import host_decoder_layout, host_feature_modules, host_head_embedding  # noqa: E402

TOL = 1e-4
CONTEXT_DIM = 32
POOLED_DIM = 32
TIME_ID_DIM = 256  # ComfyUI's SDXL encode_adm embeds each of the 6 size/crop ids with Timestep(256)
SDXL_HEAD_CHANNELS = 16  # ComfyUI num_head_channels; diffusers gets heads = width / 16 per level
LATENT = 16
TIMESTEPS = torch.tensor([999, 250])
# SDXL size conditioning (all different, so a swapped id would show)
SIZE_COND = dict(height=128, width=96, crop_h=8, crop_w=16, target_height=112, target_width=80)
TIME_IDS = [SIZE_COND[k] for k in ("height", "width", "crop_h", "crop_w", "target_height", "target_width")]

FAMILIES = {
    "sd15": dict(
        diffusers=dict(
            block_out_channels=(32, 64, 128, 128),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            attention_head_dim=8,  # diffusers SD1.x semantics: 8 heads everywhere (ComfyUI num_heads=8)
        ),
        host=dict(
            channel_mult=[1, 2, 4, 4], num_res_blocks=[2] * 4,
            # one entry per input ResNet (high resolution first); output list is consumed with pop()
            transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
            transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
            use_linear_in_transformer=False, adm_in_channels=None,
        ),
    ),
    "sdxl": dict(
        diffusers=dict(
            block_out_channels=(32, 64, 128),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=tuple(c // SDXL_HEAD_CHANNELS for c in (32, 64, 128)),  # = number of heads
            use_linear_projection=True,
            transformer_layers_per_block=1,
            addition_embed_type="text_time",
            addition_time_embed_dim=TIME_ID_DIM,
            projection_class_embeddings_input_dim=POOLED_DIM + 6 * TIME_ID_DIM,
        ),
        host=dict(
            channel_mult=[1, 2, 4], num_res_blocks=[2] * 3,
            transformer_depth=[0, 0, 1, 1, 1, 1],
            transformer_depth_output=[0, 0, 0, 1, 1, 1, 1, 1, 1],
            use_linear_in_transformer=True, num_classes="sequential",
            adm_in_channels=POOLED_DIM + 6 * TIME_ID_DIM,
        ),
    ),
}


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Seeded random weights: default fan-in init for convs / linears (biases included),
    norms with random affine parameters (weights around 1, not all ones; biases not zero)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.reset_parameters()
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1)
            elif isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and m.weight is not None:
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)


def diffusers_unet(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=LATENT, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=CONTEXT_DIM,
        norm_num_groups=32, **FAMILIES[family]["diffusers"],
    )
    _randomize(unet, seed=1)
    return unet.eval().requires_grad_(False)


def host_model(family: str):
    """The host's BaseModel (SD15) / SDXL model for the tiny layout, weights uninitialized."""
    config = {
        "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 32,
        "transformer_depth_middle": 1, "context_dim": CONTEXT_DIM, "use_spatial_transformer": True,
        "legacy": False, "use_temporal_attention": False, "use_temporal_resblock": False, "dtype": torch.float32,
        **FAMILIES[family]["host"],
    }
    if family == "sd15":
        model_config = comfy.supported_models.SD15(config)  # adds num_heads=8, num_head_channels=-1
    else:
        model_config = comfy.supported_models.SDXL(config)
        model_config.unet_config["num_head_channels"] = SDXL_HEAD_CHANNELS  # BASE's 64 would give 0 heads
    model_config.set_inference_dtype(torch.float32, None)
    return model_config.get_model({}), config


def convert_weights(unet: torch.nn.Module, host_unet: torch.nn.Module, config: dict) -> dict[str, torch.Tensor]:
    """The diffusers state dict in the host's key names, checked strictly both ways."""
    key_map = comfy.utils.unet_to_diffusers(config)
    source = unet.state_dict()
    unmapped = sorted(k for k in source if k not in key_map)
    assert not unmapped, f"diffusers keys without a host key: {unmapped}"
    converted = {key_map[k]: v.clone() for k, v in source.items()}
    assert len(converted) == len(source), "two diffusers keys map onto one host key"
    target = host_unet.state_dict()
    assert sorted(converted) == sorted(target), (
        f"host keys not filled: {sorted(set(target) - set(converted))}; "
        f"extra: {sorted(set(converted) - set(target))}"
    )
    bad = {k: (tuple(v.shape), tuple(target[k].shape)) for k, v in converted.items() if v.shape != target[k].shape}
    assert not bad, f"shape mismatches: {bad}"
    return converted


def check_close(name: str, host: torch.Tensor, reference: torch.Tensor, report: dict) -> None:
    assert host.shape == reference.shape, f"{name}: {tuple(host.shape)} vs {tuple(reference.shape)}"
    assert torch.isfinite(host).all() and torch.isfinite(reference).all(), name
    scale = float(reference.abs().max())
    assert scale > 1e-2 and float(reference.std()) > 1e-3, f"{name} is too close to zero to test anything"
    diff = float((host.double() - reference.double()).abs().max())
    report[name] = diff
    assert diff <= TOL * max(1.0, scale), f"{name}: max |host - diffusers| = {diff:.3g} (scale {scale:.3g})"


@pytest.fixture(scope="module")
def report():
    """Max differences per family, printed with -s (kept for the record)."""
    out: dict[str, dict[str, float]] = {}
    yield out
    for family, diffs in out.items():
        worst = max(diffs, key=diffs.get)
        print(f"\n[{family}] max diff {diffs[worst]:.3g} ({worst}); "
              + ", ".join(f"{k}={v:.2g}" for k, v in diffs.items()))


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_host_path_matches_diffusers(family, report):
    diffs = report.setdefault(family, {})
    unet = diffusers_unet(family)
    model, config = host_model(family)
    host_unet = model.diffusion_model
    host_unet.load_state_dict(convert_weights(unet, host_unet, config), strict=True)
    host_unet.eval().requires_grad_(False)

    # Both sides read the same layout, and the host adapter reads it from the host's own attributes.
    layout = host_decoder_layout(host_unet)
    assert layout == diffusers_layout(unet, family)
    assert layout.family == family

    gen = torch.Generator().manual_seed(2)
    x_vp = torch.randn(2, 4, LATENT, LATENT, generator=gen)
    context = torch.randn(2, 7, CONTEXT_DIM, generator=gen)
    diff_kwargs, host_kwargs = {}, {}
    if family == "sdxl":
        pooled = torch.randn(2, POOLED_DIM, generator=gen)
        y = model.encode_adm(pooled_output=pooled, **SIZE_COND)  # the host's own label vector
        assert y.shape == (2, POOLED_DIM + 6 * TIME_ID_DIM)
        diff_kwargs["added_cond_kwargs"] = {"text_embeds": pooled,
                                            "time_ids": torch.tensor([TIME_IDS] * 2, dtype=torch.float32)}
        host_kwargs["y"] = y

    with torch.no_grad():
        with DecoderFeatureCapture(diffusers_feature_modules(unet)) as ref_capture:
            eps_ref = unet(x_vp, TIMESTEPS, encoder_hidden_states=context, **diff_kwargs).sample
        with DecoderFeatureCapture(host_feature_modules(host_unet, layout)) as host_capture:
            eps_host = host_unet(x_vp, TIMESTEPS.float(), context=context, **host_kwargs)

        # Sanity: the converted U-Net is the same function.
        check_close("eps", eps_host, eps_ref, diffs)

        # The host's sampling path: EPS-scaled input and sigma in, discrete timestep recovered inside.
        sampling = model.model_sampling
        sigma = sampling.sigma(TIMESTEPS.float())
        assert torch.equal(sampling.timestep(sigma).long(), TIMESTEPS)
        x_host = x_vp * (sigma**2 + 1).sqrt()[:, None, None, None]
        with DecoderFeatureCapture(host_feature_modules(host_unet, layout)) as path_capture:
            denoised = model.apply_model(x_host, sigma, c_crossattn=context, **host_kwargs)
        eps_path = (x_host - denoised) / sigma[:, None, None, None]
        check_close("eps via apply_model", eps_path, eps_ref, diffs)

        assert len(ref_capture.features) == len(host_capture.features) == len(layout.dims)
        for index, (ref, host, path) in enumerate(zip(ref_capture.features, host_capture.features,
                                                      path_capture.features)):
            size = LATENT // layout.strides[index]
            assert ref.shape == (2, layout.dims[index], size, size)
            check_close(f"layer {index}", host, ref, diffs)
            check_close(f"layer {index} via apply_model", path, ref, diffs)

        features_ref = ref_capture.collected((LATENT, LATENT))
        features_host = host_capture.collected((LATENT, LATENT))
        assert features_ref.shape == (2, sum(layout.dims), LATENT, LATENT)
        check_close("concatenated features", features_host, features_ref, diffs)
        check_close("concatenated features via apply_model", path_capture.collected((LATENT, LATENT)),
                    features_ref, diffs)

        emb_ref = diffusers_head_embedding(unet, TIMESTEPS, batch=2)
        emb_host = host_head_embedding(host_unet, sampling.timestep(sigma).float())
        assert emb_ref.shape == (2, 4 * 32)
        check_close("head embedding", emb_host, emb_ref, diffs)

        torch.manual_seed(3)
        info = HeadInfo(kind="spatial", family=family, dims=layout.dims, projection_dim=128, emb_dim=4 * 32,
                        output_channels=3, control_type="depth", control_range=(-1.0, 1.0))
        head = ReadoutHead(info)
        _randomize(head, seed=4)
        head.mixing_weights.normal_()
        head = head.eval().requires_grad_(False)
        readout_ref = head(features_ref, emb_ref)
        readout_host = head(features_host, emb_host)
        assert readout_ref.shape == (2, 3, LATENT, LATENT)
        check_close("head readout", readout_host, readout_ref, diffs)
