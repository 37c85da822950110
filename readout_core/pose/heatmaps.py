"""Pose ↔ joint heatmaps: the keypoint heads' targets, and reading a pose back from a readout.

The published keypoint heads were trained (HRNet style) to output one heatmap per joint at the
latent resolution: a 2-D Gaussian of peak 1 and standard deviation ``size // 16`` cells (4 on a
64×64 SD1.5 latent, 8 on SDXL's 128×128) at the joint, zero everywhere for a joint that is not
annotated; MSE, no final activation. Training placed each joint on the cell ``int(x / 8)``; here
the Gaussian is centred at the continuous position ``x / 8 − ½`` (cell centres), which matches that
cell on average and keeps subpixel precision. Reading takes each heatmap's maximum, as released
(a joint counts when it reaches the threshold, released 0.1), refined to subpixel precision by
fitting a Gaussian through the maximum and its neighbours.
"""

from __future__ import annotations

import torch

from ..errors import ReadoutError
from .keypoints import JOINTS, PoseFrame

RELEASED_THRESHOLD = 0.1


def heatmap_sigma(size: tuple[int, int]) -> int:
    """The released Gaussian width in cells for a heatmap of ``size`` (h, w): the shorter side // 16, at least 1."""
    return max(1, min(size) // 16)


def pose_heatmaps(frame: PoseFrame, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame's target heatmaps ``[18, h, w]`` and joint mask ``[18]`` (bool) at ``size`` (h, w).

    Several people are combined by their maximum; a joint missing in every person has an
    all-zero heatmap and a False mask entry (guidance leaves it out of the loss).
    """
    height, width = size
    sigma = heatmap_sigma(size)
    ys = torch.arange(height, dtype=torch.float32)[:, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :]
    heatmaps = torch.zeros(JOINTS, height, width)
    present = frame.present()
    for person, person_present in zip(frame.people, present):
        for joint in torch.nonzero(person_present).flatten().tolist():
            cx = float(person[joint, 0]) * width - 0.5
            cy = float(person[joint, 1]) * height - 0.5
            gaussian = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
            heatmaps[joint] = torch.maximum(heatmaps[joint], gaussian)
    return heatmaps, present.any(dim=0)


def read_pose(heatmaps: torch.Tensor, image_size: tuple[int, int], threshold: float = RELEASED_THRESHOLD) -> list[PoseFrame]:
    """Readouts ``[B, 18, h, w]`` → one `PoseFrame` per image, on a canvas of ``image_size`` (w, h).

    One person per image (a heatmap has one maximum per joint); a joint whose maximum is
    below ``threshold`` is missing; its confidence is otherwise the maximum (at most 1).
    An image with no joint at all has no people.
    """
    if heatmaps.ndim != 4 or heatmaps.shape[1] != JOINTS:
        raise ReadoutError(f"Reading a pose needs 18 joint heatmaps [B, 18, h, w], got {tuple(heatmaps.shape)}.")
    heatmaps = heatmaps.detach().float().cpu()
    batch, _, height, width = heatmaps.shape
    flat_index = heatmaps.flatten(2).argmax(dim=-1)  # [B, 18]
    peak_y, peak_x = flat_index // width, flat_index % width
    peak = heatmaps.flatten(2).gather(-1, flat_index[..., None])[..., 0]
    offset_x = _subpixel_offset(heatmaps, peak_y, peak_x, axis=-1)
    offset_y = _subpixel_offset(heatmaps, peak_y, peak_x, axis=-2)
    x = (peak_x + offset_x + 0.5) / width
    y = (peak_y + offset_y + 0.5) / height
    found = peak >= threshold
    confidence = torch.where(found, peak.clamp(max=1.0), torch.zeros_like(peak))
    people = torch.stack([x * found, y * found, confidence], dim=-1)  # [B, 18, 3]
    frames = []
    for index in range(batch):
        person = people[index][None] if found[index].any() else torch.zeros(0, JOINTS, 3)
        frames.append(PoseFrame(width=image_size[0], height=image_size[1], people=person))
    return frames


def _subpixel_offset(heatmaps: torch.Tensor, peak_y: torch.Tensor, peak_x: torch.Tensor, axis: int) -> torch.Tensor:
    """Offset (−½..½ cells) of the true maximum from the peak cell along ``axis``: the vertex of a
    parabola through the logarithms of the peak and its two neighbours (exact for a Gaussian)."""
    length = heatmaps.shape[axis]
    centre = peak_x if axis == -1 else peak_y
    before, after = (centre - 1).clamp(min=0), (centre + 1).clamp(max=length - 1)

    def value_at(position: torch.Tensor) -> torch.Tensor:
        y, x = (peak_y, position) if axis == -1 else (position, peak_x)
        return heatmaps.flatten(2).gather(-1, (y * heatmaps.shape[-1] + x)[..., None])[..., 0]

    low, mid, high = value_at(before), value_at(centre), value_at(after)
    inside = (centre > 0) & (centre < length - 1) & (low > 0) & (mid > 0) & (high > 0)
    tiny = torch.finfo(torch.float32).tiny
    log_low, log_mid, log_high = (v.clamp(min=tiny).log() for v in (low, mid, high))
    curvature = log_low - 2 * log_mid + log_high
    offset = torch.where(curvature < 0, 0.5 * (log_low - log_high) / curvature.clamp(max=-1e-12), torch.zeros_like(mid))
    return torch.where(inside, offset.clamp(-0.5, 0.5), torch.zeros_like(offset))
