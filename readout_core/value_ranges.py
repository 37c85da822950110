"""Value ranges: a head's control range, and the affine map between two ranges."""

from __future__ import annotations

import torch

Range = tuple[float | torch.Tensor, float | torch.Tensor]
"""(low, high) of a value range, e.g. a head's control range or an image's 0..1."""


def renormalize(x: torch.Tensor, source: Range, target: Range) -> torch.Tensor:
    """Map values affinely from the ``source`` (low, high) range to the ``target`` range."""
    (src_low, src_high), (dst_low, dst_high) = source, target
    return (x - src_low) / (src_high - src_low) * (dst_high - dst_low) + dst_low
