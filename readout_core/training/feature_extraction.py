"""Turning training images into `FeatureSet`s with any base model (a `FeatureSource`).

As released: each image is encoded, noised with the forward process at a timestep
drawn from U{1..999} (one per example; the members of a triplet or pair share it) and
run through the U-Net with the empty prompt, conditional branch only; the decoder
features and the timestep embedding are kept in fp32 on the CPU. Everything is
seeded, so the same settings give the same set, which can be cached to disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch
import torch.nn.functional as F

from ..errors import ReadoutError
from ..value_ranges import renormalize
from .datasets import PointPair, crop_points, image_size, load_image
from .feature_sets import FeatureSet, load_cached

Progress = Callable[[int, int], None]


class FeatureSource(Protocol):
    """A base model seen by the trainer: ComfyUI's (host adapter) or diffusers' (CLI)."""

    family: str
    dims: tuple[int, ...]
    emb_dim: int
    latent_factor: int

    def describe(self) -> dict:
        """What identifies the model (for the feature cache)."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[N, 3, R, R]`` in 0..1 → latents."""

    def features(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
                 ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Noise ``latents`` to ``timesteps`` (ints 0..999) with ``noise``; the decoder features
        (one map per layer) and the head's timestep embedding, both fp32 on the CPU."""

    def sdedit(self, latents: torch.Tensor, strength: float, seed: int) -> torch.Tensor:
        """Re-noise to ``strength`` of the schedule and denoise with the empty prompt."""


@dataclass(frozen=True)
class SpatialData:
    """Features of the images and their controls at latent size, in the control range."""

    features: FeatureSet
    targets: torch.Tensor


@dataclass(frozen=True)
class PairData:
    """Features of image pairs (entries 2i, 2i+1) and matches ``(y_a, x_a, y_b, x_b)`` in latent pixels."""

    features: FeatureSet
    points: tuple[torch.Tensor, ...]


def noise_levels(count: int, seed: int) -> torch.Tensor:
    """``count`` timesteps from U{1..999}, seeded."""
    return torch.randint(1, 1000, (count,), generator=torch.Generator().manual_seed(seed))


def extract(source: FeatureSource, latents: torch.Tensor, timesteps: torch.Tensor, seed: int, batch_size: int = 4,
            progress: Progress | None = None) -> FeatureSet:
    """Features of ``latents`` noised to ``timesteps``; noise seeded per example."""
    generator = torch.Generator().manual_seed(seed + 1)
    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32)
    layers: list[list[torch.Tensor]] = []
    embs = []
    for start in range(0, len(latents), batch_size):
        stop = min(start + batch_size, len(latents))
        maps, emb = source.features(latents[start:stop], noise[start:stop], timesteps[start:stop])
        layers.append([m.float().cpu() for m in maps])
        embs.append(emb.float().cpu())
        if progress is not None:
            progress(stop, len(latents))
    stacked = tuple(torch.cat([chunk[i] for chunk in layers]) for i in range(len(layers[0])))
    return FeatureSet(stacked, torch.cat(embs), tuple(latents.shape[-2:]))


def spatial_data(source: FeatureSource, pairs: Sequence[tuple[Path, Path]], control_range: tuple[float, float],
                 resolution: int, seed: int, cache: str | Path | None = None,
                 progress: Progress | None = None) -> SpatialData:
    """Features of each image and its control, mapped to the control range and
    nearest-resized to the latent size (as released)."""
    latent_hw = (resolution // source.latent_factor,) * 2
    targets = torch.stack([renormalize(load_image(c, resolution), (0.0, 1.0), control_range) for _, c in pairs])
    targets = F.interpolate(targets, size=latent_hw, mode="nearest")
    key = {"task": "spatial", "model": source.describe(), "resolution": resolution, "seed": seed,
           "files": [_file_key(p) for p, _ in pairs]}
    features = _cached(cache, key) or _store(cache, key, extract(
        source, _encode_all(source, [p for p, _ in pairs], resolution), noise_levels(len(pairs), seed), seed,
        progress=progress))
    return SpatialData(features, targets)


def triplet_data(source: FeatureSource, groups: Sequence[Sequence[Path]], count: int, resolution: int, seed: int,
                 sdedit_strength: float = 0.5, cache: str | Path | None = None,
                 progress: Progress | None = None) -> FeatureSet:
    """``count`` triplets (anchor, another image of its subject, an SDEdit of the anchor made
    by the base model at ``sdedit_strength``), each at one noise level."""
    pick = torch.Generator().manual_seed(seed)
    chosen = []
    for _ in range(count):
        group = groups[int(torch.randint(len(groups), (1,), generator=pick))]
        a, b = torch.randperm(len(group), generator=pick)[:2].tolist()
        chosen.append((group[a], group[b]))
    key = {"task": "triplets", "model": source.describe(), "resolution": resolution, "seed": seed,
           "sdedit": sdedit_strength, "files": [[_file_key(a), _file_key(b)] for a, b in chosen]}
    cached = _cached(cache, key)
    if cached is not None:
        return cached
    anchors = _encode_all(source, [a for a, _ in chosen], resolution)
    positives = _encode_all(source, [b for _, b in chosen], resolution)
    negatives = torch.cat([source.sdedit(anchors[i:i + 4], sdedit_strength, seed + i) for i in range(0, count, 4)])
    latents = torch.stack([anchors, positives, negatives], dim=1).flatten(0, 1)
    timesteps = noise_levels(count, seed).repeat_interleave(3)
    return _store(cache, key, extract(source, latents, timesteps, seed, batch_size=3, progress=progress))


def pair_data(source: FeatureSource, pairs: Sequence[PointPair], resolution: int, seed: int,
              cache: str | Path | None = None, progress: Progress | None = None) -> PairData:
    """Features of both images of each pair at one noise level, and the matches in latent pixels."""
    latent_points = []
    for pair in pairs:
        a = crop_points(pair.points[:, :2], image_size(pair.a), resolution) / source.latent_factor
        b = crop_points(pair.points[:, 2:], image_size(pair.b), resolution) / source.latent_factor
        side = resolution // source.latent_factor
        inside = ((a >= 0) & (a <= side - 1)).all(1) & ((b >= 0) & (b <= side - 1)).all(1)
        if not inside.any():
            raise ReadoutError(f"No match of the pair {pair.a.name} / {pair.b.name} lies inside the centre square "
                               "both images are cropped to; move the points or crop the images yourself.")
        latent_points.append(torch.cat([a[inside].flip(1), b[inside].flip(1)], dim=1))
    key = {"task": "pairs", "model": source.describe(), "resolution": resolution, "seed": seed,
           "files": [[_file_key(p.a), _file_key(p.b)] for p in pairs]}
    features = _cached(cache, key)
    if features is None:
        files = [path for pair in pairs for path in (pair.a, pair.b)]
        timesteps = noise_levels(len(pairs), seed).repeat_interleave(2)
        features = _store(cache, key, extract(source, _encode_all(source, files, resolution), timesteps, seed,
                                               batch_size=2, progress=progress))
    return PairData(features, tuple(latent_points))


def _encode_all(source: FeatureSource, paths: Sequence[Path], resolution: int) -> torch.Tensor:
    latents = [source.encode(load_image(p, resolution)[None]) for p in paths]
    return torch.cat(latents).float().cpu()


def _file_key(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _cached(cache: str | Path | None, key: dict) -> FeatureSet | None:
    return load_cached(cache, key) if cache is not None else None


def _store(cache: str | Path | None, key: dict, features: FeatureSet) -> FeatureSet:
    if cache is not None:
        features.save(cache, key)
    return features
