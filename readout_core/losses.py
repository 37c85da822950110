"""Guidance and training losses, as pure functions on ``[N, C, H, W]`` tensors.

Guidance losses (what steers sampling) follow the released algorithm; training
losses follow the released training recipes. Points are ``(y, x)`` in the feature
map's own pixel coordinates.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import LossInputError
from .value_ranges import Range, renormalize

Box = Sequence[int]


def spatial_guidance_loss(
    prediction: torch.Tensor,
    control: torch.Tensor,
    control_range: Range,
    latent_range: Range,
) -> torch.Tensor:
    """Mean squared error between a spatial readout and its target, in latent units.

    ``prediction`` ``[N, C, h, w]`` and ``control`` ``[N or 1, C, H, W]`` are both in
    ``control_range``; both are mapped affinely to ``latent_range`` (the current
    latent's (min, max)), the control is resized to ``(h, w)`` with nearest
    sampling, and the mean of the squared difference is returned.
    """
    _require_4d(prediction=prediction, control=control)
    if control.shape[1] != prediction.shape[1]:
        raise LossInputError(
            f"The target has {control.shape[1]} channels but the head outputs {prediction.shape[1]}."
        )
    if control.shape[0] not in (1, prediction.shape[0]):
        raise LossInputError(
            f"The target batch ({control.shape[0]}) must be 1 or match the latent batch ({prediction.shape[0]})."
        )
    control = control.detach().to(prediction.dtype)
    if tuple(control.shape[-2:]) != tuple(prediction.shape[-2:]):
        control = F.interpolate(control, size=prediction.shape[-2:], mode="nearest")
    prediction = renormalize(prediction, control_range, latent_range)
    control = renormalize(control, control_range, latent_range)
    return F.mse_loss(prediction, control.expand_as(prediction))


def keypoint_guidance_loss(
    prediction: torch.Tensor,
    heatmaps: torch.Tensor,
    joint_mask: torch.Tensor,
    latent_range: Range,
) -> torch.Tensor:
    """Squared error between joint heatmaps and their targets, over the joints that are there.

    ``prediction`` ``[N, K, h, w]``; ``heatmaps`` ``[N or 1, K, h, w]`` (the target, 0..1);
    ``joint_mask`` ``[N or 1, K]`` bool: joints to compare. The mean squared error of each
    compared joint's heatmap is averaged over those joints, so a missing joint adds neither
    loss nor gradient (its readout is left free, not pulled to zero). As the spatial loss
    maps its control range onto the latent's range, the result is scaled by
    ``(high − low)²`` of ``latent_range``. With no joint to compare it is an exact zero that
    still back-propagates.
    """
    _require_4d(prediction=prediction, heatmaps=heatmaps)
    if heatmaps.shape[1:] != prediction.shape[1:] or heatmaps.shape[0] not in (1, prediction.shape[0]):
        raise LossInputError(
            f"Keypoint targets {tuple(heatmaps.shape)} do not fit the readout {tuple(prediction.shape)}."
        )
    if joint_mask.shape != heatmaps.shape[:2]:
        raise LossInputError(f"The joint mask {tuple(joint_mask.shape)} must be {tuple(heatmaps.shape[:2])}.")
    mask = joint_mask.to(device=prediction.device, dtype=torch.bool).expand(prediction.shape[:2])
    if not mask.any():
        return prediction.sum() * 0
    per_joint = ((prediction - heatmaps.detach().to(prediction.dtype)) ** 2).mean(dim=(-2, -1))
    low, high = latent_range
    return per_joint[mask].mean() * (high - low) ** 2


def appearance_loss(
    generated: torch.Tensor,
    reference: torch.Tensor,
    latent_range: Range | None = None,
    boxes: tuple[Box, Box] | None = None,
    pooled: bool = False,
) -> torch.Tensor:
    """Appearance distance: mean over pixels of ``1 − cos(generated_p, reference_p)``.

    The cosine is taken over channels at each pixel. ``boxes`` = (reference box,
    generated box), each ``(x0, y0, x1, y1)`` in feature pixels, crops both maps and
    resizes the crops back to the full size (bilinear) first, as used for identity
    guidance. ``pooled`` compares the spatial means instead of pixels. The result is
    multiplied by ``(high − low)²`` of ``latent_range`` when one is given, as released.
    """
    _require_4d(generated=generated, reference=reference)
    if generated.shape[1] != reference.shape[1]:
        raise LossInputError(
            f"Appearance maps differ in channels: generated {generated.shape[1]}, reference {reference.shape[1]}."
        )
    reference = reference.detach()
    if boxes is not None:
        reference_box, generated_box = boxes
        size = tuple(generated.shape[-2:])
        reference = _crop_resized(reference, reference_box, size)
        generated = _crop_resized(generated, generated_box, size)
    if pooled:
        generated = generated.mean(dim=(-2, -1), keepdim=True)
        reference = reference.mean(dim=(-2, -1), keepdim=True)
    if tuple(reference.shape[-2:]) != tuple(generated.shape[-2:]):
        raise LossInputError(
            f"Appearance maps differ in size: generated {tuple(generated.shape[-2:])}, "
            f"reference {tuple(reference.shape[-2:])}."
        )
    distance = (1 - F.cosine_similarity(generated, reference.expand_as(generated), dim=1)).mean()
    if latent_range is not None:
        low, high = latent_range
        distance = distance * (high - low) ** 2
    return distance


def correspondence_loss(
    generated: torch.Tensor,
    reference: torch.Tensor,
    source_points: torch.Tensor,
    target_points: torch.Tensor,
    ghost_weight: float = 0.5,
) -> torch.Tensor:
    """Drag loss: move the reference's content at the source points to the target points.

    With S(a, b) = (cos(a, b) + 1) / 2 between per-pixel feature vectors:
    ``L = −(1 − ghost_weight)·mean S(ref[src], gen[dst]) + ghost_weight·mean S(ref[src], gen[src])``.
    The second (anti-ghosting) term keeps a copy of the content from staying at its
    old place. Points are ``(y, x)`` floats in feature pixels, truncated to integers as
    released; pairs with either point outside the map are dropped. With no valid pair
    the loss is an exact zero that still back-propagates.
    """
    _require_4d(generated=generated, reference=reference)
    source, target = valid_point_pairs(source_points, target_points, tuple(generated.shape[-2:]))
    if source.shape[0] == 0:
        return generated.sum() * 0
    reference = F.normalize(reference.detach(), dim=1)
    generated = F.normalize(generated, dim=1)
    ref_at_source = _gather(reference, source)
    moved = ((ref_at_source * _gather(generated, target)).sum(dim=1) + 1) / 2
    ghost = ((ref_at_source * _gather(generated, source)).sum(dim=1) + 1) / 2
    return -(1 - ghost_weight) * moved.mean() + ghost_weight * ghost.mean()


def valid_point_pairs(
    source_points: torch.Tensor, target_points: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncate ``(y, x)`` points to integers and keep the pairs whose both ends lie in ``size``."""
    source = torch.as_tensor(source_points).reshape(-1, 2).long()
    target = torch.as_tensor(target_points).reshape(-1, 2).long()
    if source.shape != target.shape:
        raise LossInputError(f"Got {source.shape[0]} source points but {target.shape[0]} target points; pair them one to one.")
    height, width = size
    inside = (
        (source[:, 0] >= 0) & (source[:, 0] < height) & (source[:, 1] >= 0) & (source[:, 1] < width)
        & (target[:, 0] >= 0) & (target[:, 0] < height) & (target[:, 1] >= 0) & (target[:, 1] < width)
    )
    return source[inside], target[inside]


def sparse_mse_loss(prediction: torch.Tensor, target: torch.Tensor, background_value: float) -> torch.Tensor:
    """Training MSE that weighs background and foreground equally (sparse controls).

    Elements whose target equals ``background_value`` (the low end of the control
    range) form the background; the loss is the mean of the background mean and the
    foreground mean. If either set is empty it is the plain mean.
    """
    if prediction.shape != target.shape:
        raise LossInputError(f"Prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape.")
    squared = (prediction - target) ** 2
    background = target == background_value
    if background.all() or not background.any():
        return squared.mean()
    return (squared[background].mean() + squared[~background].mean()) / 2


def symmetric_correspondence_loss(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    points_a: torch.Tensor,
    points_b: torch.Tensor,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Correspondence training loss: symmetric cross-entropy over cosine similarities.

    For each matched pair, the logits of point i in image A against every pixel of B
    are ``cos / temperature``; the cross-entropy asks for the matched pixel, and the
    same is done from B to A; the two are averaged. ``features_*`` are ``[1, C, H, W]``
    (or ``[C, H, W]``), points ``(y, x)`` in feature pixels, clipped to the map and
    rounded as released.
    """
    features_a, features_b = _single(features_a), _single(features_b)
    if features_a.shape != features_b.shape:
        raise LossInputError(f"Feature maps differ: {tuple(features_a.shape)} vs {tuple(features_b.shape)}.")
    channels, height, width = features_a.shape
    flat_a = F.normalize(features_a.reshape(channels, -1), dim=0)
    flat_b = F.normalize(features_b.reshape(channels, -1), dim=0)
    index_a = _point_indices(points_a, height, width)
    index_b = _point_indices(points_b, height, width)
    if index_a.shape != index_b.shape:
        raise LossInputError(f"Got {index_a.numel()} points in A but {index_b.numel()} in B.")
    logits_ab = flat_a[:, index_a].T @ flat_b / temperature
    logits_ba = flat_b[:, index_b].T @ flat_a / temperature
    return (F.cross_entropy(logits_ab, index_b) + F.cross_entropy(logits_ba, index_a)) / 2


def appearance_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample appearance distance ``mean_p(1 − cos(a_p, b_p))``, shape ``[N]``."""
    _require_4d(a=a, b=b)
    return (1 - F.cosine_similarity(a, b, dim=1)).mean(dim=(-2, -1))


def triplet_hinge_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.5
) -> torch.Tensor:
    """Appearance training loss: ``mean(max(0, margin + d(anchor, pos) − d(anchor, neg)))``.

    The released trainer sums over its batch of one; the mean keeps the scale
    independent of the batch size.
    """
    d_positive = appearance_distance(anchor, positive)
    d_negative = appearance_distance(anchor, negative)
    return F.relu(margin + d_positive - d_negative).mean()


def _require_4d(**tensors: torch.Tensor) -> None:
    for name, tensor in tensors.items():
        if tensor.ndim != 4:
            raise LossInputError(f"{name} must be shaped [N, C, H, W], got {tuple(tensor.shape)}.")


def _single(features: torch.Tensor) -> torch.Tensor:
    if features.ndim == 4 and features.shape[0] == 1:
        return features[0]
    if features.ndim == 3:
        return features
    raise LossInputError(f"Expected one feature map [1, C, H, W], got {tuple(features.shape)}.")


def _point_indices(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    points = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2)
    y = points[:, 0].clamp(0, height - 1).round()
    x = points[:, 1].clamp(0, width - 1).round()
    return (y * width + x).long()


def _gather(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Feature vectors at integer (y, x) points: ``[N, C, H, W]`` → ``[N, C, K]``."""
    return features[:, :, points[:, 0], points[:, 1]]


def _crop_resized(features: torch.Tensor, box: Box, size: tuple[int, ...]) -> torch.Tensor:
    x0, y0, x1, y1 = (int(v) for v in box)
    height, width = features.shape[-2:]
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise LossInputError(
            f"Box {tuple(box)} (x0, y0, x1, y1) must lie inside the {width}×{height} feature map with x0 < x1, y0 < y1."
        )
    crop = features[:, :, y0:y1, x0:x1]
    return F.interpolate(crop, size=size, mode="bilinear", align_corners=False)
