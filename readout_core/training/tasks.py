"""What a head learns from: each task turns a batch of example ids into a loss.

`SpatialTask` (MSE, or the sparse re-weighting against controls), `AppearanceTask`
(triplet hinge with hard negatives; identity heads use it on faces) and
`CorrespondenceTask` (symmetric cross-entropy over matched points), as released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from ..errors import ReadoutError
from ..heads.network import ReadoutHead
from ..losses import sparse_mse_loss, symmetric_correspondence_loss, triplet_hinge_loss
from .feature_sets import FeatureSet


class Task(Protocol):
    """What `train_head` trains on."""

    kind: str

    def __len__(self) -> int: ...

    def check(self, head: ReadoutHead) -> None: ...

    def loss(self, head: ReadoutHead, ids: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class SpatialTask:
    """Examples ``i`` with features ``data[i]`` and controls ``targets[i]`` (``[N, K, H, W]``
    in the head's control range); ``sparse`` re-weights background vs foreground."""

    data: FeatureSet
    targets: torch.Tensor
    sparse: bool = False
    kind = "spatial"

    def __len__(self) -> int:
        return len(self.data)

    def check(self, head: ReadoutHead) -> None:
        info = head.info
        if info.kind not in ("spatial", "keypoint") or info.control_range is None:
            raise ReadoutError(f"A spatial task trains spatial heads; this is a {info.kind} head.")
        if self.targets.shape[0] != len(self.data):
            raise ReadoutError(f"{self.targets.shape[0]} controls for {len(self.data)} images; give one control "
                               "per image.")
        if self.targets.shape[1] != info.output_channels:
            raise ReadoutError(f"Targets have {self.targets.shape[1]} channels, the head outputs "
                               f"{info.output_channels}.")

    def loss(self, head: ReadoutHead, ids: torch.Tensor) -> torch.Tensor:
        prediction = head(self.data.features(ids), self.data.emb[ids].float())
        target = self.targets[ids].float()
        if tuple(target.shape[-2:]) != tuple(prediction.shape[-2:]):
            target = F.interpolate(target, size=prediction.shape[-2:], mode="nearest")
        if self.sparse:
            return sparse_mse_loss(prediction, target, float(head.info.control_range[0]))
        return F.mse_loss(prediction, target)


@dataclass(frozen=True)
class AppearanceTask:
    """Triplets: entries ``3i, 3i+1, 3i+2`` of ``data`` are anchor, positive (same subject)
    and hard negative (an SDEdit of the anchor), all at one noise level."""

    data: FeatureSet
    margin: float = 0.5
    kind = "appearance"

    def __len__(self) -> int:
        return len(self.data) // 3

    def check(self, head: ReadoutHead) -> None:
        if head.info.kind not in ("appearance", "identity"):
            raise ReadoutError(f"Appearance training trains appearance or identity heads; this is a {head.info.kind} "
                               "head.")
        if len(self.data) % 3 or not len(self):
            raise ReadoutError(f"Appearance training needs whole triplets; got {len(self.data)} feature entries.")

    def loss(self, head: ReadoutHead, ids: torch.Tensor) -> torch.Tensor:
        entries = (3 * ids[:, None] + torch.arange(3)).reshape(-1)
        readout = head(self.data.features(entries), self.data.emb[entries].float())
        anchor, positive, negative = readout.reshape(len(ids), 3, *readout.shape[1:]).unbind(1)
        return triplet_hinge_loss(anchor, positive, negative, self.margin)


@dataclass(frozen=True)
class CorrespondenceTask:
    """Pairs: entries ``2i, 2i+1`` of ``data`` are two views; ``points[i]`` is ``[K, 4]``
    matches ``(y_a, x_a, y_b, x_b)`` in latent pixels. Trained without the timestep
    embedding, as the head is used in drag guidance."""

    data: FeatureSet
    points: tuple[torch.Tensor, ...]
    temperature: float = 0.07
    kind = "correspondence"

    def __len__(self) -> int:
        return len(self.data) // 2

    def check(self, head: ReadoutHead) -> None:
        if head.info.kind != "correspondence":
            raise ReadoutError(f"Correspondence training trains correspondence heads; this is a {head.info.kind} head.")
        if len(self.data) != 2 * len(self.points) or not self.points:
            raise ReadoutError(f"{len(self.points)} point lists for {len(self.data)} feature entries; give one list "
                               "per image pair.")
        empty = [i for i, p in enumerate(self.points) if p.numel() == 0]
        if empty:
            raise ReadoutError(f"Image pairs {empty[:5]} have no point matches; every pair needs at least one.")

    def loss(self, head: ReadoutHead, ids: torch.Tensor) -> torch.Tensor:
        entries = (2 * ids[:, None] + torch.arange(2)).reshape(-1)
        readout = head(self.data.features(entries), None)
        losses = [symmetric_correspondence_loss(readout[2 * j], readout[2 * j + 1], self.points[int(i)][:, :2],
                                                self.points[int(i)][:, 2:], self.temperature)
                  for j, i in enumerate(ids)]
        return torch.stack(losses).mean()
