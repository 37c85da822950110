"""Loading a diffusers Stable Diffusion 1.5 / SDXL folder as a `DiffusersSource`, and building
diffusers models and schedulers from configs (the tiny world)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ReadoutError
from ..latent_scale import PIXELS_PER_LATENT
from .feature_source import DiffusersSource


def load_pipeline_source(path: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> DiffusersSource:
    """The U-Net, VAE (kept in fp32) and empty-prompt embedding of a local diffusers pipeline."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise ReadoutError(f"{path} is not a diffusers model folder (no model_index.json). Give a diffusers "
                           "SD1.5 / SDXL folder, or train inside ComfyUI with the Train Readout Head node.")
    from diffusers import DDIMScheduler, DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    pipe.to(device)
    vae = pipe.vae.to(torch.float32)
    with torch.no_grad():
        if sdxl:
            context, _, pooled, _ = pipe.encode_prompt("", device=device, num_images_per_prompt=1,
                                                       do_classifier_free_guidance=False)
            size = PIXELS_PER_LATENT * pipe.unet.config.sample_size
            added = {"text_embeds": pooled, "time_ids": torch.tensor([[size, size, 0, 0, size, size]], device=device,
                                                                     dtype=pooled.dtype)}
        else:
            context, _ = pipe.encode_prompt("", device, 1, False)
            added = None
    scaling = float(vae.config.scaling_factor)

    def encode(images: torch.Tensor) -> torch.Tensor:
        return vae.encode(images.float() * 2 - 1).latent_dist.mean * scaling

    return DiffusersSource(unet=pipe.unet.requires_grad_(False), family="sdxl" if sdxl else "sd15",
                           scheduler=DDIMScheduler.from_config(pipe.scheduler.config), context=context, encode_images=encode,
                           latent_factor=2 ** (len(vae.config.block_out_channels) - 1), added_cond=added,
                           name=path.name)


def unet_from_config(config: dict) -> torch.nn.Module:
    """A freshly initialised diffusers ``UNet2DConditionModel`` with these config values."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)


def ddim_scheduler(**config):
    """A diffusers ``DDIMScheduler`` with these config values."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**config)
