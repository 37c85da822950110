"""Readout guidance maths, independent of any sampler host.

A guidance *term* pairs a head with what its readout should match and a weight:
a spatial target (`GuidanceTerm`), body poses for a keypoint head (`KeypointTerm`), or a reference sampled side by side in the same
batch (`AppearanceTerm`, `CorrespondenceTerm` for drag). At a
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

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .crop_boxes import PixelBox
from .drag_points import DragPoints
from .errors import LossInputError, ReadoutError
from .latent_scale import PIXELS_PER_LATENT
from .heads.network import ReadoutHead
from .losses import appearance_loss, correspondence_loss, keypoint_guidance_loss, spatial_guidance_loss
from .pose.heatmaps import pose_heatmaps
from .pose.keypoints import JOINTS, PoseFrame

UPDATE_RULES = ("official", "gradient")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass
class GuidanceTerm:
    """A spatial / keypoint head, what its readout should become, and how strongly.

    Attributes:
        head: a loaded readout head.
        target: ``[B or 1, K, h, w]`` in the head's control range (any size; resized to
            the readout with nearest sampling).
        weight: the term's ``loss_rescale`` (released: 0.5 for spatial heads).
        use_emb: feed the U-Net's timestep embedding to the head.
    """

    head: ReadoutHead
    target: torch.Tensor | None = None
    weight: float = 1.0
    use_emb: bool = True
    needs_reference = False

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

    def sample_loss(self, readout: torch.Tensor, index: int, reference: torch.Tensor | None,
                    latent_range: tuple) -> torch.Tensor:
        """The released spatial loss of sample ``index`` of ``readout`` ``[N, K, h, w]``."""
        info = self.head.info
        assert self.target is not None and info.control_range is not None
        target = self.target.to(device=readout.device, dtype=readout.dtype)
        if target.shape[0] not in (1, readout.shape[0]):
            raise ReadoutError(
                f"The {info.control_type} target has {target.shape[0]} images but the latent batch has "
                f"{readout.shape[0]}. Give one target image, or one per latent."
            )
        sample_target = target[index if target.shape[0] > 1 else 0][None]
        return spatial_guidance_loss(readout[index][None], sample_target, info.control_range, latent_range)


@dataclass
class KeypointTerm:
    """A keypoint head and the body pose its 18 joint heatmaps should show.

    The poses are rendered as the heads were trained (`pose.heatmaps`) at the readout's
    size when guidance first sees it; joints missing from the pose are left out of the loss.

    Attributes:
        head: a keypoint head (18 joint heatmaps).
        poses: one pose for every latent, or one per latent of the batch.
        weight: the term's share of the guidance loss.
        use_emb: feed the U-Net's timestep embedding to the head.
    """

    head: ReadoutHead
    poses: tuple[PoseFrame, ...]
    weight: float = 1.0
    use_emb: bool = True
    needs_reference = False
    _targets: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        info = self.head.info
        if info.kind != "keypoint" or info.output_channels != JOINTS:
            raise ReadoutError(
                f"A pose target needs a keypoint head (18 joint heatmaps, e.g. readout_sdv15_pose_keypoint.pt); "
                f"this is a {info.kind} head. For a spatial pose head use Spatial Target with a pose image."
            )
        self.poses = tuple(self.poses)
        if not self.poses:
            raise ReadoutError("A pose target needs at least one pose.")
        if not any(bool(pose.present().any()) for pose in self.poses):
            raise ReadoutError("The pose has no joints (every confidence is 0); give a pose with at least one joint.")

    def targets(self, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmaps ``[P, 18, h, w]`` and joint masks ``[P, 18]`` of the poses at ``size`` (h, w), cached."""
        if size not in self._targets:
            rendered = [pose_heatmaps(pose, size) for pose in self.poses]
            self._targets[size] = (torch.stack([r[0] for r in rendered]), torch.stack([r[1] for r in rendered]))
        return self._targets[size]

    def sample_loss(self, readout: torch.Tensor, index: int, reference: torch.Tensor | None,
                    latent_range: tuple) -> torch.Tensor:
        """The masked heatmap loss of sample ``index`` of ``readout`` ``[N, 18, h, w]``."""
        if len(self.poses) not in (1, readout.shape[0]):
            raise ReadoutError(
                f"The pose target has {len(self.poses)} poses but the latent batch has {readout.shape[0]}. "
                "Give one pose for all latents, or one per latent."
            )
        heatmaps, masks = self.targets(tuple(readout.shape[-2:]))
        pose = index if len(self.poses) > 1 else 0
        target = heatmaps[pose][None].to(device=readout.device, dtype=readout.dtype)
        return keypoint_guidance_loss(readout[index][None], target, masks[pose][None], latent_range)


@dataclass
class AppearanceTerm:
    """Keep the look of the reference: an appearance (or identity) head's distance to it.

    Attributes:
        head: an appearance or identity head.
        weight: the term's ``loss_rescale`` (released: 1).
        reference_box, generated_box: optional crops ``(x0, y0, x1, y1)`` in image pixels
            of the reference and of the generation (identity / face guidance); both or
            neither.
    """

    head: ReadoutHead
    weight: float = 1.0
    reference_box: PixelBox | None = None
    generated_box: PixelBox | None = None
    use_emb: bool = True
    needs_reference = True

    def __post_init__(self) -> None:
        kind = self.head.info.kind
        if kind not in ("appearance", "identity"):
            raise ReadoutError(f"Appearance guidance needs an appearance or identity head; this is a {kind} head.")
        if (self.reference_box is None) != (self.generated_box is None):
            raise ReadoutError("Give both crop boxes (reference and generated) or neither.")

    def sample_loss(self, readout: torch.Tensor, index: int, reference: torch.Tensor | None,
                    latent_range: tuple) -> torch.Tensor:
        """The released appearance loss between sample ``index`` and its reference readout."""
        assert reference is not None
        boxes = None
        if self.reference_box is not None and self.generated_box is not None:
            boxes = (_feature_box(self.reference_box, readout), _feature_box(self.generated_box, readout))
        return appearance_loss(readout[index][None], reference[None], latent_range, boxes=boxes)


@dataclass
class CorrespondenceTerm:
    """Drag: the reference's content at the handles should appear at the targets.

    Attributes:
        head: a correspondence head (run without the timestep embedding, as released).
        points: the handle → target pairs in image pixels.
        weight: the term's ``loss_rescale`` (released: 1).
        ghost_weight: share of the anti-ghosting term (released: 0.5).
    """

    head: ReadoutHead
    points: DragPoints
    weight: float = 1.0
    ghost_weight: float = 0.5
    use_emb: bool = False
    needs_reference = True

    def __post_init__(self) -> None:
        kind = self.head.info.kind
        if kind != "correspondence":
            raise ReadoutError(f"Drag guidance needs a correspondence head; this is a {kind} head.")
        if len(self.points) == 0:
            raise ReadoutError("Drag guidance needs at least one handle → target pair inside the image.")

    def sample_loss(self, readout: torch.Tensor, index: int, reference: torch.Tensor | None,
                    latent_range: tuple) -> torch.Tensor:
        """The released correspondence loss of sample ``index`` against its reference readout."""
        assert reference is not None
        source, target = self.points.latent_points(tuple(readout.shape[-2:]))
        return correspondence_loss(readout[index][None], reference[None], source, target, self.ghost_weight)


AnyTerm = GuidanceTerm | KeypointTerm | AppearanceTerm | CorrespondenceTerm


def _feature_box(box: PixelBox, readout: torch.Tensor) -> tuple[int, int, int, int]:
    """A pixel box as a box of the readout's (latent-resolution) grid, covering at least one cell."""
    x0, y0, x1, y1 = (v / PIXELS_PER_LATENT for v in box)
    height, width = readout.shape[-2:]
    fx0, fy0 = min(int(x0), width - 1), min(int(y0), height - 1)
    return fx0, fy0, max(fx0 + 1, min(width, math.ceil(x1))), max(fy0 + 1, min(height, math.ceil(y1)))


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
    terms: Sequence[AnyTerm],
    branch_features: Sequence[torch.Tensor],
    emb: torch.Tensor | None,
    latent_vp: torch.Tensor,
    reference_of: Sequence[int | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Total guidance loss over CFG branches, terms and samples.

    ``branch_features`` holds one ``[N, C, H, W]`` feature tensor per CFG branch used
    (N = latent batch); ``emb`` is ``[N, E]`` or None. ``reference_of[i]`` is the batch
    index of sample i's reference, or None for a sample that is itself a reference
    (left unguided); without it every sample is guided and no term may need a
    reference. Each sample's loss is the released per-image loss, so a batch behaves
    as its images would alone. Returns (total to differentiate, per-sample loss ``[N]``
    summed over branches and terms, detached).
    """
    ranges = latent_ranges(latent_vp)
    batch = latent_vp.shape[0]
    pairing = check_pairing(terms, reference_of, batch)
    per_sample = latent_vp.new_zeros(batch, dtype=torch.float32)
    total = latent_vp.new_zeros((), dtype=torch.float32)
    for features in branch_features:
        if features.shape[0] != batch:
            raise LossInputError(f"Features for {features.shape[0]} samples but the latent batch is {batch}.")
        for term in terms:
            readout = _readout(term, features, emb, pairing)
            for index, reference_index in enumerate(pairing):
                if reference_index is None:
                    continue
                reference = readout[reference_index].detach() if reference_index != index else None
                loss = term.weight * term.sample_loss(readout, index, reference, ranges[index])
                total = total + loss
                per_sample[index] += loss.detach()
    return total, per_sample


def _readout(term: AnyTerm, features: torch.Tensor, emb: torch.Tensor | None, pairing: list) -> torch.Tensor:
    """``term``'s head on every sample of one branch. The samples no loss is computed for (the
    references: their readouts are detached targets) are read without autograd, so the head
    keeps activations only for the samples being guided."""
    emb = emb.float() if (emb is not None and term.use_emb) else None
    guided = [index for index, reference_index in enumerate(pairing) if reference_index is not None]
    if len(guided) == len(pairing):
        return term.head(features.float(), emb)
    rest = [index for index, reference_index in enumerate(pairing) if reference_index is None]

    def read(rows: list[int]) -> torch.Tensor:
        return term.head(features[rows].float(), None if emb is None else emb[rows])

    with torch.no_grad():
        unguided = read(rest)
    if not guided:
        return unguided
    merged = torch.cat([unguided, read(guided)])
    return merged[torch.tensor(rest + guided, device=merged.device).argsort()]


def check_pairing(terms: Sequence[AnyTerm], reference_of: Sequence[int | None] | None, batch: int) -> list:
    """``reference_of`` checked against the batch (every sample guided, paired to itself, when None)."""
    if reference_of is None:
        if any(term.needs_reference for term in terms):
            raise ReadoutError(
                "Appearance and drag guidance compare each sample with a reference generated side by side; "
                "sample with the Readout Reference Sampler instead of a plain KSampler."
            )
        return list(range(batch))
    pairing = list(reference_of)
    if len(pairing) != batch:
        raise ReadoutError(f"The reference layout covers {len(pairing)} samples but the latent batch is {batch}.")
    for index, reference_index in enumerate(pairing):
        if reference_index is not None and not (0 <= reference_index < batch and pairing[reference_index] is None):
            raise ReadoutError(f"Sample {index}'s reference {reference_index} is not a reference sample of the batch.")
    return pairing


@dataclass
class GuidanceSettings:
    """When and how guidance acts.

    Attributes:
        rule: ``official`` or ``gradient``.
        weight: official: the AdamW learning rate on the VP latent (released 2e-2);
            gradient: w in ``ε̂ = ε + w·∇``.
        start_percent, end_percent: where guidance acts. In ComfyUI (`host_adapter`) a
            percent of the model's noise range, as ControlNet's start/end: a step is guided
            when its sigma lies between ``percent_to_sigma(start)`` and
            ``percent_to_sigma(end)``. In the core's own DDIM loop
            (`diffusers_adapter.guided_ddim`, the released code) a fraction of the steps:
            steps ``int(start·N)`` to ``int(end·N) - 1`` of N. On the released DDIM schedule
            (ComfyUI's ``ddim`` sampler, ``ddim_uniform`` scheduler) both pick the same steps
            (the host fidelity test compares them step by step); on other schedules the
            host's window follows the noise level, so it may hold more or fewer steps.
        recurrent_steps: optimiser steps per timestep (official rule).
        gradient_checkpointing: recompute U-Net activations in the backward pass
            instead of keeping them (less memory, more time).
        guide_every: guide only every k-th sampling step inside the window (1 = all).
        reference_of: the batch layout when references are sampled side by side
            (see `guidance_loss`); None: every sample is guided on its own.
    """

    rule: str = "official"
    weight: float = 2e-2
    start_percent: float = 0.0
    end_percent: float = 0.5
    recurrent_steps: int = 1
    terms: list[AnyTerm] = field(default_factory=list)
    gradient_checkpointing: bool = False
    reference_of: tuple[int | None, ...] | None = None
    guide_every: int = 1

    def __post_init__(self) -> None:
        if self.rule not in UPDATE_RULES:
            raise ReadoutError(f"Unknown update rule {self.rule!r}; choose one of {', '.join(UPDATE_RULES)}.")
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise ReadoutError(
                f"start_percent ({self.start_percent}) must be ≤ end_percent ({self.end_percent}), both in 0..1."
            )
        if self.recurrent_steps < 1:
            raise ReadoutError(f"recurrent_steps must be at least 1, got {self.recurrent_steps}.")
        if self.guide_every < 1:
            raise ReadoutError(f"guide_every must be at least 1 (every step), got {self.guide_every}.")
        if not self.terms:
            raise ReadoutError("Readout guidance needs at least one guidance term (a head with its target).")
        reference_of = self.reference_of
        check_pairing(self.terms, reference_of, len(reference_of) if reference_of is not None else 0)
        families = {term.head.info.family for term in self.terms}
        if len(families) > 1:
            raise ReadoutError(f"All heads must be for one base model; got heads for {sorted(families)}.")


def reference_layout(edits: int) -> tuple[int | None, ...]:
    """``reference_of`` for a batch ``[reference, edit 1, ..., edit n]``."""
    if edits < 1:
        raise ReadoutError(f"Ask for at least one edited sample, got {edits}.")
    return (None,) + (0,) * edits
