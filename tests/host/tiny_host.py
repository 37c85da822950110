"""Tiny host models and heads for host tests (real SD1.5 / SDXL block layouts, 32 base channels)."""

from __future__ import annotations

import torch

import comfy.model_base
import comfy.model_patcher
import comfy.supported_models
from readout_core import HeadInfo, ReadoutHead
from readout_core.host_adapter import host_decoder_layout

CONTEXT_DIM = 32
SDXL_POOLED = 32


def init_weights(module: torch.nn.Module, seed: int) -> None:
    """Random weights for every conv / linear / norm (the host's ops skip initialisation)."""
    torch.manual_seed(seed)
    for m in module.modules():
        for base in (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm):
            if isinstance(m, base):
                base.reset_parameters(m)
                break


def tiny_host_model(family: str = "sd15", seed: int = 0, dtype: torch.dtype = torch.float32, v_prediction: bool = False):
    """A ModelPatcher around a tiny host U-Net whose weights are inference tensors, as in a real prompt."""
    levels = 4 if family == "sd15" else 3
    config = {
        "use_checkpoint": False, "image_size": 32, "in_channels": 4, "out_channels": 4,
        "model_channels": 32, "num_res_blocks": [2] * levels,
        "channel_mult": [1, 2, 4, 4] if family == "sd15" else [1, 2, 4],
        "transformer_depth": [1] * (2 * levels), "transformer_depth_output": [1] * (3 * levels),
        "transformer_depth_middle": 1, "context_dim": CONTEXT_DIM, "use_spatial_transformer": True,
        "legacy": False, "use_linear_in_transformer": family == "sdxl", "use_temporal_attention": False,
        "use_temporal_resblock": False, "dtype": dtype,
    }
    with torch.inference_mode():
        if family == "sd15":
            config["adm_in_channels"] = None
            model_config = comfy.supported_models.SD15(config)
        else:
            config.update(num_classes="sequential", adm_in_channels=SDXL_POOLED + 6 * 256)
            model_config = comfy.supported_models.SDXL(config)
            model_config.unet_config["num_head_channels"] = 16
        model_config.set_inference_dtype(dtype, None)
        if v_prediction:
            model = comfy.model_base.BaseModel(model_config, model_type=comfy.model_base.ModelType.V_PREDICTION)
        else:
            model = model_config.get_model({})
        init_weights(model.diffusion_model, seed)
        model.diffusion_model.to(dtype)
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)


def random_head(layout, kind: str, seed: int, **info_fields) -> ReadoutHead:
    """A random head of ``kind`` reading ``layout``'s decoder layers (mixing weights drawn too), frozen."""
    torch.manual_seed(seed)
    head = ReadoutHead(HeadInfo(kind=kind, family=layout.family, dims=layout.dims, projection_dim=128, emb_dim=128,
                                **info_fields))
    with torch.no_grad():
        head.mixing_weights.normal_()
    return head.eval().requires_grad_(False)


def tiny_spatial_head(patcher, seed: int = 0, control_type: str = "depth") -> ReadoutHead:
    """A random spatial head reading the tiny model's decoder layers."""
    return random_head(host_decoder_layout(patcher.model.diffusion_model), "spatial", seed, output_channels=3,
                       control_type=control_type, control_range=(-1.0, 1.0))


def conds(family: str, batch: int = 1, seed: int = 0):
    """(positive, negative) conditioning in the host's format for the tiny models."""
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(batch, 7, CONTEXT_DIM, generator=gen)
    neg = torch.zeros(batch, 7, CONTEXT_DIM)
    if family == "sd15":
        return [[pos, {}]], [[neg, {}]]
    extra = {"width": 64, "height": 64}
    return ([[pos, dict(extra, pooled_output=torch.randn(batch, SDXL_POOLED, generator=gen))]],
            [[neg, dict(extra, pooled_output=torch.zeros(batch, SDXL_POOLED))]])



def run_node(node_cls, **inputs):
    """Run a host node class in either API generation (V3 classmethods or classic methods)."""
    if hasattr(node_cls, "define_schema"):
        return node_cls.execute(**inputs).result
    return getattr(node_cls(), node_cls.FUNCTION)(**inputs)


def make_gaussian_denoiser(patcher, data_std: float = 1.0, unet_share: float = 0.1) -> None:
    """Turn a random tiny U-Net into a usable denoiser, for sampling tests.

    The noise prediction becomes the exact one for data ~ N(0, data_std²) plus a small
    share of the U-Net's own output, so samplers converge to data-scale latents while
    the U-Net still runs in full (its decoder features are what the heads read).
    Installed as a DIFFUSION_MODEL wrapper on ``patcher`` (test-only).
    """
    import comfy.patcher_extension

    sampling = patcher.model.model_sampling

    def wrapper(executor, x, timesteps, context, y, control, transformer_options, **kwargs):
        eps_unet = executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        sigma = sampling.sigma(timesteps).to(x.dtype).reshape(-1, 1, 1, 1)
        alpha_bar = 1.0 / (sigma**2 + 1.0)
        eps_exact = (1 - alpha_bar).sqrt() * x / (alpha_bar * data_std**2 + 1 - alpha_bar)
        return eps_exact + unet_share * eps_unet

    patcher.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_gaussian", wrapper)


def spatial_world(pack, model_seed: int, head_seed: int, image: torch.Tensor) -> dict:
    """A tiny SD1.5-layout model, a head, Spatial Target terms for ``image`` and conditioning."""
    model = tiny_host_model("sd15", seed=model_seed)
    head = tiny_spatial_head(model, seed=head_seed)
    with torch.inference_mode():
        (terms,) = run_node(pack["ReadoutGuidance_SpatialTarget"], head=head, image=image, weight=0.5)
    positive, negative = conds("sd15")
    return {"model": model, "head": head, "terms": terms, "positive": positive, "negative": negative}
