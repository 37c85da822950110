"""A diffusers U-Net as a `FeatureSource` (the command-line trainer and the tiny world)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..features import DecoderFeatureCapture
from ..latent_scale import PIXELS_PER_LATENT
from .feature_modules import diffusers_feature_modules, diffusers_head_embedding, diffusers_layout


@dataclass
class DiffusersSource:
    """Features of a diffusers ``UNet2DConditionModel``.

    Attributes:
        unet: the U-Net (any dtype; features come back in fp32).
        family: ``sd15`` or ``sdxl`` (its decoder layout).
        scheduler: a diffusers scheduler with the model's training schedule (noising, SDEdit).
        context: ``[1, L, D]`` the empty prompt's text embedding.
        encode_images: images ``[N, 3, R, R]`` in 0..1 → latents (the VAE, scaled).
        latent_factor: image pixels per latent pixel.
        added_cond: SDXL's ``added_cond_kwargs`` for a batch of one (None for SD1.5).
        name: what identifies the model in the feature cache.
    """

    unet: nn.Module
    family: str
    scheduler: Any
    context: torch.Tensor
    encode_images: Callable[[torch.Tensor], torch.Tensor]
    latent_factor: int = PIXELS_PER_LATENT
    added_cond: dict | None = None
    name: str = ""
    sdedit_steps: int = 50
    dims: tuple[int, ...] = field(init=False)
    emb_dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.dims = diffusers_layout(self.unet, self.family).dims
        self.emb_dim = int(self.unet.time_embedding.linear_2.out_features)

    @property
    def _device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def describe(self) -> dict:
        """The model's name, family and dtype."""
        return {"name": self.name, "family": self.family, "dtype": str(self._dtype)}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in 0..1 → latents (fp32, CPU)."""
        with torch.no_grad():
            return self.encode_images(images.to(self._device)).float().cpu()

    def predict(self, latents: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The U-Net's output (ε or v, as the model predicts) on the fixed conditioning."""
        batch = latents.shape[0]
        extra = {}
        if self.added_cond is not None:
            extra["added_cond_kwargs"] = {k: v.expand(batch, *v.shape[1:]) for k, v in self.added_cond.items()}
        context = self.context.to(self._device, self._dtype).expand(batch, -1, -1)
        return self.unet(latents.to(self._device, self._dtype), timesteps.to(self._device),
                         encoder_hidden_states=context, **extra).sample

    def features(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
                 ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Decoder features and the head's embedding of ``latents`` noised to ``timesteps``."""
        noisy = self.scheduler.add_noise(latents.float(), noise.float(), timesteps.long())
        with torch.no_grad(), DecoderFeatureCapture(diffusers_feature_modules(self.unet)) as capture:
            self.predict(noisy, timesteps)
            emb = diffusers_head_embedding(self.unet, timesteps.to(self._device), latents.shape[0])
        return [f.float().cpu() for f in capture.features], emb.float().cpu()

    def sdedit(self, latents: torch.Tensor, strength: float, seed: int) -> torch.Tensor:
        """DDIM from ``strength`` of the schedule back to a clean latent, empty prompt, CFG 1."""
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(self.sdedit_steps)
        timesteps = scheduler.timesteps[int(round(len(scheduler.timesteps) * (1 - strength))):]
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
        x = scheduler.add_noise(latents.float(), noise, timesteps[:1].long().expand(latents.shape[0]))
        with torch.no_grad():
            for t in timesteps:
                prediction = self.predict(x, t.expand(x.shape[0])).float().cpu()
                x = scheduler.step(prediction, t, x).prev_sample
        return x
