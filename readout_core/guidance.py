"""Readout guidance maths, independent of any sampler host.

A guidance *term* pairs a head with what its readout should match and a weight. At a
guided step the host runs the U-Net with gradients, hands the captured decoder
features of each CFG branch to `guidance_loss`, differentiates it with respect to the
U-Net input (the VP latent), and applies one of two update rules:

- ``official``: the released algorithm — a fresh AdamW over the VP latent per timestep
  (lr = weight, no weight decay), whose first step is ``lr·g/(|g|+eps)`` ≈ ``lr·sign(g)``,
  the loss summed over both CFG branches, then an ordinary step from the moved latent;
- ``gradient``: the paper's formula ``ε̂ = ε + w·∇_{x_t} d`` with the gradient taken
  through the guided (unconditional) branch only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .errors import LossInputError, ReadoutError
from .heads import ReadoutHead
from .losses import spatial_guidance_loss

UPDATE_RULES = ("official", "gradient")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass
class GuidanceTerm:
    """One head, what its readout should become, and how strongly.

    Attributes:
        head: a loaded readout head.
        target: spatial / keypoint heads: ``[B or 1, K, h, w]`` in the head's control
            range (any size; resized to the readout with nearest sampling).
        weight: the term's ``loss_rescale`` (released: 0.5 for spatial heads).
        use_emb: feed the U-Net's timestep embedding to the head (released: off for
            correspondence heads).
    """

    head: ReadoutHead
    target: torch.Tensor | None = None
    weight: float = 1.0
    use_emb: bool = True

    def __post_init__(self) -> None:
        info = self.head.info
        if info.is_relative:
            raise ReadoutError(
                f"A {info.kind} head compares a generation with a reference; it cannot follow a spatial target "
                "image. Use a pose / depth / edge head here, or the appearance / drag nodes for this head."
            )
        if self.target is None:
            raise ReadoutError(f"The {info.kind} head needs a target; connect a Spatial Target.")
        if self.target.ndim != 4 or self.target.shape[1] != info.output_channels:
            raise ReadoutError(
                f"The {info.control_type} target must be [B, {info.output_channels}, H, W], "
                f"got {tuple(self.target.shape)}."
            )


@dataclass
class AdamState:
    """Per-timestep state of the released optimiser (a fresh AdamW per timestep)."""

    step: int = 0
    exp_avg: torch.Tensor | None = None
    exp_avg_sq: torch.Tensor | None = None


def adam_update(grad: torch.Tensor, state: AdamState, lr: float) -> torch.Tensor:
    """The change AdamW (β = 0.9, 0.999, eps 1e-8, no weight decay) makes to a parameter.

    The first step of a fresh state is ``−lr·g/(|g| + eps)``, i.e. a sign step.
    """
    beta1, beta2 = ADAM_BETAS
    if state.exp_avg is None:
        state.exp_avg = torch.zeros_like(grad)
        state.exp_avg_sq = torch.zeros_like(grad)
    state.step += 1
    state.exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    state.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias1 = 1 - beta1**state.step
    bias2 = 1 - beta2**state.step
    denom = (state.exp_avg_sq / bias2).sqrt().add_(ADAM_EPS)
    return -(lr / bias1) * state.exp_avg / denom


def latent_ranges(latent_vp: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(min, max) of each sample's VP latent, detached: the released spatial-loss scale."""
    flat = latent_vp.detach().flatten(1)
    return list(zip(flat.min(dim=1).values, flat.max(dim=1).values))


def guidance_loss(
    terms: Sequence[GuidanceTerm],
    branch_features: Sequence[torch.Tensor],
    emb: torch.Tensor | None,
    latent_vp: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Total guidance loss over CFG branches, terms and samples.

    ``branch_features`` holds one ``[N, C, H, W]`` feature tensor per CFG branch used
    (N = latent batch); ``emb`` is ``[N, E]`` or None. Each sample's loss is the
    released per-image loss, so a batch behaves as its images would alone. Returns
    (total to differentiate, per-sample loss ``[N]`` summed over branches and terms, detached).
    """
    ranges = latent_ranges(latent_vp)
    batch = latent_vp.shape[0]
    per_sample = latent_vp.new_zeros(batch, dtype=torch.float32)
    total = latent_vp.new_zeros((), dtype=torch.float32)
    for features in branch_features:
        if features.shape[0] != batch:
            raise LossInputError(f"Features for {features.shape[0]} samples but the latent batch is {batch}.")
        for term in terms:
            readout = term.head(features.float(), emb.float() if (emb is not None and term.use_emb) else None)
            losses = _spatial_losses(term, readout, ranges)
            total = total + term.weight * losses.sum()
            per_sample = per_sample + term.weight * losses.detach()
    return total, per_sample


def _spatial_losses(
    term: GuidanceTerm, readout: torch.Tensor, ranges: list[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    info = term.head.info
    assert term.target is not None and info.control_range is not None
    target = term.target.to(device=readout.device, dtype=readout.dtype)
    if target.shape[0] not in (1, readout.shape[0]):
        raise ReadoutError(
            f"The {info.control_type} target has {target.shape[0]} images but the latent batch has "
            f"{readout.shape[0]}. Give one target image, or one per latent."
        )
    losses = []
    for index, latent_range in enumerate(ranges):
        sample_target = target[index if target.shape[0] > 1 else 0][None]
        losses.append(spatial_guidance_loss(readout[index][None], sample_target, info.control_range, latent_range))
    return torch.stack(losses)


@dataclass
class GuidanceSettings:
    """When and how guidance acts.

    Attributes:
        rule: ``official`` or ``gradient``.
        weight: official: the AdamW learning rate on the VP latent (released 2e-2);
            gradient: w in ``ε̂ = ε + w·∇``.
        start_percent, end_percent: the part of the schedule (ComfyUI's percent of the
            model's noise range, as in ControlNet's start/end) where guidance acts.
        recurrent_steps: optimiser steps per timestep (official rule).
        gradient_checkpointing: recompute U-Net activations in the backward pass
            instead of keeping them (less memory, more time).
    """

    rule: str = "official"
    weight: float = 2e-2
    start_percent: float = 0.0
    end_percent: float = 0.5
    recurrent_steps: int = 1
    terms: list[GuidanceTerm] = field(default_factory=list)
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.rule not in UPDATE_RULES:
            raise ReadoutError(f"Unknown update rule {self.rule!r}; choose one of {', '.join(UPDATE_RULES)}.")
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise ReadoutError(
                f"start_percent ({self.start_percent}) must be ≤ end_percent ({self.end_percent}), both in 0..1."
            )
        if self.recurrent_steps < 1:
            raise ReadoutError(f"recurrent_steps must be at least 1, got {self.recurrent_steps}.")
        if not self.terms:
            raise ReadoutError("Readout guidance needs at least one guidance term (a head with its target).")
        families = {term.head.info.family for term in self.terms}
        if len(families) > 1:
            raise ReadoutError(f"All heads must be for one base model; got heads for {sorted(families)}.")
