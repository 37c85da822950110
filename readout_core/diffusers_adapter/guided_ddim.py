"""The released guidance loop on a diffusers U-Net, without a host (demo, tiny world, CLI).

DDIM with leading spacing; on each step inside the guidance window the latent is
moved by a fresh AdamW (lr = weight, ``recurrent_steps`` steps) against
`guidance_loss`, then an ordinary step is taken from the moved latent, as the authors' code does.
In a ``[reference, edits...]`` batch only the edits run with a graph: the reference rows run
once per guided step without autograd, and their prediction serves that step's DDIM update.
One conditioning, no classifier-free guidance: this path serves unconditional or
fixed-prompt models such as the tiny world; in ComfyUI the host adapter guides every
sampler instead.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..features import DecoderFeatureCapture
from ..guidance import AdamState, GuidanceSettings, adam_update, guidance_loss
from .feature_modules import diffusers_feature_modules, diffusers_head_embedding
from .feature_source import DiffusersSource


def guided_window(settings: GuidanceSettings | None, steps: int) -> range:
    """Step indices guided, as released: ``[int(start·N), int(end·N))`` (a fraction of the steps;
    the host's window is a fraction of the noise range: see `GuidanceSettings`)."""
    if settings is None:
        return range(0)
    return range(int(settings.start_percent * steps), int(settings.end_percent * steps))


def sample(source: DiffusersSource, noise: torch.Tensor, settings: GuidanceSettings | None = None, steps: int = 50,
           eta: float = 0.0) -> torch.Tensor:
    """DDIM from ``noise`` ``[N, C, H, W]`` (fp32, CPU) to clean latents, guided where
    ``settings`` says (official rule: the released AdamW update)."""
    scheduler = copy.deepcopy(source.scheduler)
    scheduler.set_timesteps(steps)
    window = guided_window(settings, steps)
    generator = torch.Generator().manual_seed(0)
    x = noise.float() * scheduler.init_noise_sigma
    for index, t in enumerate(scheduler.timesteps):
        # 1. Inside the window, move the guided rows' latent against the guidance loss.
        reference = None
        if index in window and index % settings.guide_every == 0:
            x, reference = _guide(source, x, t, settings)
        # 2. The model's prediction there (the reference rows' from the guidance pass).
        with torch.no_grad():
            prediction = _predict(source, x, t, reference)
        # 3. An ordinary DDIM step.
        x = scheduler.step(prediction, t, x, eta=eta, generator=generator).prev_sample
    return x


def readout(source: DiffusersSource, head: torch.nn.Module, latents: torch.Tensor, timestep: int = 1,
            use_emb: bool = True) -> torch.Tensor:
    """A head's readout of clean ``latents`` (U-Net run at ``timestep``, no noise added)."""
    t = torch.full((latents.shape[0],), timestep)
    with torch.no_grad(), DecoderFeatureCapture(diffusers_feature_modules(source.unet)) as capture:
        source.predict(latents, t)
        emb = diffusers_head_embedding(source.unet, t, latents.shape[0]).float() if use_emb else None
        return head(capture.collected(tuple(latents.shape[-2:])).float(), emb).cpu()


@dataclass
class _ReferencePass:
    """The reference rows of a ``[reference, edits...]`` batch at one step, run once without
    autograd: no loss reaches them (their readouts are detached targets), so they stay where
    they are while the edits move, and their features and prediction serve the whole step."""

    rows: list[int]
    features: torch.Tensor
    prediction: torch.Tensor


def _guide(source: DiffusersSource, x: torch.Tensor, t: torch.Tensor, settings: GuidanceSettings
           ) -> tuple[torch.Tensor, _ReferencePass | None]:
    """``recurrent_steps`` steps of one fresh AdamW on the latent against the guidance loss.

    Only the rows a loss reaches run with a graph; returns the moved latent and the
    reference pass (None without reference rows)."""
    reference = _reference_pass(source, x, t, settings.reference_of)
    guided = _guided_rows(reference, x.shape[0])
    emb = diffusers_head_embedding(source.unet, t.expand(x.shape[0]), x.shape[0])
    state = AdamState()
    for _ in range(settings.recurrent_steps):
        latent = x.detach().requires_grad_(True)
        with DecoderFeatureCapture(diffusers_feature_modules(source.unet)) as capture:
            source.predict(latent[guided], t.expand(len(guided)))
        features = capture.collected(tuple(x.shape[-2:]))
        if reference is not None:
            features = _in_batch_order(reference.rows, reference.features, features)
        loss, _ = guidance_loss(settings.terms, [features], emb, latent, settings.reference_of)
        (grad,) = torch.autograd.grad(loss, latent)
        x = (latent + adam_update(grad.float(), state, settings.weight)).detach()
    return x, reference


def _reference_pass(source: DiffusersSource, x: torch.Tensor, t: torch.Tensor,
                    reference_of: tuple[int | None, ...] | None) -> _ReferencePass | None:
    """The reference rows' features and prediction at ``t`` (None if the batch has none)."""
    rows = [row for row, of in enumerate(reference_of or ()) if of is None]
    if not rows:
        return None
    with torch.no_grad(), DecoderFeatureCapture(diffusers_feature_modules(source.unet)) as capture:
        prediction = source.predict(x[rows], t.expand(len(rows))).float().cpu()
    return _ReferencePass(rows, capture.collected(tuple(x.shape[-2:])), prediction)


def _guided_rows(reference: _ReferencePass | None, batch: int) -> list[int]:
    """The rows that are not reference rows (the whole batch without a reference pass)."""
    skipped = set(reference.rows) if reference is not None else set()
    return [row for row in range(batch) if row not in skipped]


def _predict(source: DiffusersSource, x: torch.Tensor, t: torch.Tensor, reference: _ReferencePass | None
             ) -> torch.Tensor:
    """The model's prediction of every row (fp32, CPU); the reference pass's rows are reused."""
    rows = _guided_rows(reference, x.shape[0])
    prediction = source.predict(x[rows], t.expand(len(rows))).float().cpu()
    return prediction if reference is None else _in_batch_order(reference.rows, reference.prediction, prediction)


def _in_batch_order(reference_rows: list[int], reference_part: torch.Tensor, other_part: torch.Tensor
                    ) -> torch.Tensor:
    """The reference rows and the other rows (each in batch order) merged back into one batch."""
    batch = len(reference_rows) + other_part.shape[0]
    order = reference_rows + [row for row in range(batch) if row not in set(reference_rows)]
    merged = torch.cat([reference_part.to(other_part.device, other_part.dtype), other_part])
    return merged[torch.tensor(order).argsort()]
