"""Crop boxes for identity guidance: from text or from a mask, in image pixels."""

from __future__ import annotations

import math
import re

import torch

from .errors import ReadoutError

PixelBox = tuple[float, float, float, float]
"""(x0, y0, x1, y1) in image pixels, x0 < x1 and y0 < y1."""
MAX_BOX_CHARS = 200
"""Longest face-box text read."""


def parse_box(text: str | None) -> PixelBox | None:
    """``"x0, y0, x1, y1"`` (pixels; commas or spaces) → a box; empty text → None.

    Text longer than `MAX_BOX_CHARS` or not a string is refused with `ReadoutError`.
    """
    if text is not None and not isinstance(text, str):
        raise ReadoutError(f"The box must be text (x0, y0, x1, y1 in image pixels), got {type(text).__name__}.")
    if not text or not text.strip():
        return None
    if len(text) > MAX_BOX_CHARS:
        raise ReadoutError(f"The box text is {len(text):,} characters long; at most {MAX_BOX_CHARS} are read. "
                           "Give four numbers: x0, y0, x1, y1 in image pixels (e.g. 180, 60, 330, 250).")
    parts = [p for p in re.split(r"[,\s]+", text.strip().strip("[]()")) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ReadoutError(f"The box {text!r} must be four numbers: x0, y0, x1, y1 in image pixels (e.g. 180, 60, 330, 250).")
    x0, y0, x1, y1 = values
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise ReadoutError(f"The box {text!r} needs 0 ≤ x0 < x1 and 0 ≤ y0 < y1 (image pixels).")
    return values


def box_from_mask(mask: torch.Tensor) -> PixelBox:
    """The bounding box of a MASK's (``[B, H, W]`` or ``[H, W]``, first image) pixels above 0.5."""
    if mask.ndim == 3 and mask.shape[0] > 0:
        mask = mask[0]
    if mask.ndim != 2 or mask.numel() == 0:
        raise ReadoutError(f"The face mask must be a MASK [H, W] or [B, H, W], got shape {tuple(mask.shape)}.")
    rows = torch.nonzero((mask > 0.5).any(dim=1)).flatten()
    cols = torch.nonzero((mask > 0.5).any(dim=0)).flatten()
    if rows.numel() == 0:
        raise ReadoutError("The face mask is empty (no pixel above 0.5); paint the face in the mask editor.")
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)
