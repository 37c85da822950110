"""Full-size SD1.5 / SDXL U-Nets with random weights, for the guidance benchmark.

The cost of a step does not depend on the weights, so nothing is downloaded: the host's
own ``UNetModel`` (or diffusers' ``UNet2DConditionModel`` without a host) is built with
the published architecture and filled with small random values.
"""

from __future__ import annotations

import torch

# The host's U-Net configurations, as its model detection reads them from the checkpoints.
HOST_CONFIGS = {
    "sd15": {
        "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
        "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
        "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4],
        "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "use_temporal_attention": False,
        "use_temporal_resblock": False,
    },
    "sdxl": {
        "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
        "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4,
        "model_channels": 320, "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
        "channel_mult": [1, 2, 4], "transformer_depth_middle": 10, "use_linear_in_transformer": True,
        "context_dim": 2048, "num_head_channels": 64, "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
        "use_temporal_attention": False, "use_temporal_resblock": False,
    },
}
CONTEXT = {"sd15": 768, "sdxl": 2048}


def fill_random(module: torch.nn.Module, seed: int = 0) -> None:
    """Small random values in every parameter (the host's layers skip initialisation)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            values = torch.randn(param.shape, generator=generator) * 0.02
            param.copy_(values.to(param.dtype))


def host_model(layout: str, device: torch.device, dtype: torch.dtype):
    """A host ``ModelPatcher`` around a full-size U-Net of ``layout``."""
    import comfy.model_patcher
    import comfy.supported_models

    config = dict(HOST_CONFIGS[layout], dtype=dtype)
    model_config = (comfy.supported_models.SD15 if layout == "sd15" else comfy.supported_models.SDXL)(config)
    model_config.set_inference_dtype(dtype, None)
    model = model_config.get_model({})
    fill_random(model.diffusion_model)
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=torch.device("cpu"))


def host_conds(layout: str, batch: int, size_px: int) -> tuple[list, list]:
    """(positive, negative) in the host's conditioning format (77 tokens)."""
    generator = torch.Generator().manual_seed(1)
    positive = torch.randn(batch, 77, CONTEXT[layout], generator=generator)
    negative = torch.zeros(batch, 77, CONTEXT[layout])
    if layout == "sd15":
        return [[positive, {}]], [[negative, {}]]
    extra = {"width": size_px, "height": size_px}
    return ([[positive, dict(extra, pooled_output=torch.randn(batch, 1280, generator=generator))]],
            [[negative, dict(extra, pooled_output=torch.zeros(batch, 1280))]])


def diffusers_unet(layout: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """diffusers' ``UNet2DConditionModel`` with the SD1.5 / SDXL architecture (no host needed)."""
    from diffusers import UNet2DConditionModel

    if layout == "sd15":
        unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8)
    else:
        unet = UNet2DConditionModel(
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
            attention_head_dim=(5, 10, 20), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
        )
    fill_random(unet)
    return unet.to(device=device, dtype=dtype).eval().requires_grad_(False)
