"""The tiny world's diffusion model: an SD1.5-layout U-Net with small channels.

It denoises 32×32 RGB images directly (the "latent" is the image scaled to -1..1, so
the VAE is the identity) with Stable Diffusion's noise schedule and v-prediction.
It is unconditional: the cross-attention always reads one fixed, learned-free
context token (zeros), so classifier-free guidance does not apply (CFG 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..diffusers_adapter.pipelines import ddim_scheduler, unet_from_config
from ..errors import ReadoutError

WEIGHTS_DIR = Path(__file__).parent / "weights"
UNET_FILE = "unet.safetensors"
CONTEXT_DIM = 32

UNET_CONFIG = {
    "sample_size": 32,
    "in_channels": 3,
    "out_channels": 3,
    "block_out_channels": [32, 32, 64, 64],
    "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "cross_attention_dim": CONTEXT_DIM,
    "attention_head_dim": 8,
    "norm_num_groups": 16,
}
"""SD1.5's ResNet layout (4 levels, 2 ResNets per level: the 12 decoder ResNets the heads read,
at strides 8, 4, 2, 1) with small widths; attention only at the two middle levels, which keeps
a CPU training run to minutes (attention over all 32×32 pixels is most of the cost)."""

SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "prediction_type": "v_prediction"}
"""Stable Diffusion's noise schedule with v-prediction (as SD 2.x): in pixel space the schedule's
last steps keep almost no signal, where ε-prediction gets the image's layout and colours wrong."""


def build_unet():
    """A freshly initialised tiny U-Net (diffusers ``UNet2DConditionModel``)."""
    return unet_from_config(UNET_CONFIG)


def context(batch: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The fixed conditioning the tiny U-Net always reads: ``[batch, 1, CONTEXT_DIM]`` zeros."""
    return torch.zeros(batch, 1, CONTEXT_DIM, device=device, dtype=dtype)


def image_to_latent(image: torch.Tensor) -> torch.Tensor:
    """Images ``[N, 3, H, W]`` in 0..1 → the model's space (-1..1)."""
    return image * 2 - 1


def latent_to_image(latent: torch.Tensor) -> torch.Tensor:
    """The model's space → images in 0..1."""
    return ((latent + 1) / 2).clamp(0, 1)


def save_unet(unet: torch.nn.Module, path: Path) -> None:
    """Weights in fp16 (half the size; the model runs in fp32) with the config in the metadata."""
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in unet.state_dict().items()}
    save_file(tensors, str(path), metadata={"unet_config": json.dumps(UNET_CONFIG), "schedule": json.dumps(SCHEDULE)})


def load_unet(path: Path | None = None):
    """The shipped tiny U-Net in fp32, eval mode, parameters frozen."""
    path = Path(path) if path is not None else WEIGHTS_DIR / UNET_FILE
    if not path.is_file():
        raise ReadoutError(f"The tiny world's U-Net {path} is missing; run `python tools/make_tiny_world.py` to make it.")
    unet = build_unet()
    unet.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return unet.eval().requires_grad_(False)


def scheduler():
    """A fresh DDIM scheduler on the training schedule (leading spacing, offset 1, as released)."""
    return ddim_scheduler(**SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         timestep_spacing="leading")
