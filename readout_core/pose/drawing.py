"""Drawing body poses as OpenPose skeleton images (coloured limbs and joints on black)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from .keypoints import COLOURS, LIMBS, PoseFrame

LIMB_SHADE = 0.6
"""OpenPose draws limbs at 60 % of their colour, joints at full colour."""


def draw_poses(frames: list[PoseFrame], size: tuple[int, int] | None = None) -> torch.Tensor:
    """Frames → an IMAGE ``[B, H, W, 3]`` in 0..1: each frame's people as an OpenPose skeleton.

    ``size`` (w, h) draws every frame at that size (default: the first frame's canvas), so
    the frames stack into one batch. Line widths scale with the image (4 px at 512).
    """
    width, height = size or (frames[0].width, frames[0].height)
    return torch.stack([_draw(frame, width, height) for frame in frames])


def _draw(frame: PoseFrame, width: int, height: int) -> torch.Tensor:
    canvas = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(canvas)
    stick = max(1, round(4 * max(width, height) / 512))
    scale = torch.tensor([width, height], dtype=torch.float32)
    for person, present in zip(frame.people, frame.present()):
        points = (person[:, :2] * scale).tolist()
        for limb, (a, b) in enumerate(LIMBS):
            if present[a] and present[b]:
                colour = tuple(int(c * LIMB_SHADE) for c in COLOURS[limb])
                draw.line([tuple(points[a]), tuple(points[b])], fill=colour, width=2 * stick)
        for joint, (x, y) in enumerate(points):
            if present[joint]:
                draw.ellipse([x - stick, y - stick, x + stick, y + stick], fill=COLOURS[joint])
    return torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)
