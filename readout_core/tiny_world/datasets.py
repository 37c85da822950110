"""Tiny-world training datasets written as ordinary folders, in the formats users give
the trainer (see `readout_core.training.datasets`): the heads are trained the way a user's
would be."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .scenes import PALETTE, KINDS, Scene, random_scene, random_shape, render


def write_spatial_dataset(folder: str | Path, count: int, seed: int) -> Path:
    """``images/`` and ``controls/`` (depth order: background black, nearer shapes brighter)."""
    folder = Path(folder)
    generator = torch.Generator().manual_seed(seed)
    for index in range(count):
        rendering = render(random_scene(generator))
        _save(rendering.image, folder / "images" / f"{index:04d}.png")
        _save(((rendering.depth + 1) / 2).expand(3, -1, -1), folder / "controls" / f"{index:04d}.png")
    return folder


def write_subject_dataset(folder: str | Path, subjects: int, per_subject: int, seed: int) -> Path:
    """One sub-folder per subject: the same shapes (kind, colour, size) placed anew in each image."""
    folder = Path(folder)
    generator = torch.Generator().manual_seed(seed)
    for subject in range(subjects):
        count = 1 + int(torch.randint(2, (1,), generator=generator))
        looks = [(int(torch.randint(len(KINDS), (1,), generator=generator)),
                  int(torch.randint(len(PALETTE), (1,), generator=generator))) for _ in range(count)]
        for index in range(per_subject):
            shapes = tuple(random_shape(generator, colour=colour, kind=KINDS[kind]) for kind, colour in looks)
            _save(render(Scene(shapes)).image, folder / f"subject_{subject:03d}" / f"{index:02d}.png")
    return folder


def write_pair_dataset(folder: str | Path, count: int, seed: int, points_per_shape: int = 12,
                       max_shift: float = 8.0) -> Path:
    """Scenes and the same scenes with every shape moved, with ``pairs.json`` listing
    matches: points of each shape's visible part and where they land."""
    folder = Path(folder)
    generator = torch.Generator().manual_seed(seed)
    entries = []
    for index in range(count):
        scene = random_scene(generator)
        offsets = [_offset_inside(shape, scene.size, max_shift, generator) for shape in scene.shapes]
        moved = scene.moved(offsets)
        before, after = render(scene), render(moved)
        points = []
        for shape_index, (dy, dx) in enumerate(offsets):
            ys, xs = torch.nonzero(before.masks[shape_index] > 0.99, as_tuple=True)
            keep = [i for i in torch.randperm(len(ys), generator=generator).tolist()
                    if _visible(after.masks[shape_index], ys[i] + dy, xs[i] + dx)][:points_per_shape]
            points += [[float(xs[i]), float(ys[i]), float(xs[i] + dx), float(ys[i] + dy)] for i in keep]
        if not points:
            continue
        _save(before.image, folder / f"{index:04d}_a.png")
        _save(after.image, folder / f"{index:04d}_b.png")
        entries.append({"a": f"{index:04d}_a.png", "b": f"{index:04d}_b.png", "points": points})
    (folder / "pairs.json").write_text(json.dumps(entries))
    return folder


def _offset_inside(shape, size: int, max_shift: float, generator: torch.Generator) -> tuple[float, float]:
    """A whole-pixel shift that keeps the shape inside the image."""
    low = shape.radius + 1
    high = size - shape.radius - 1
    shifted = []
    for centre in shape.center:
        lo, hi = max(-max_shift, low - centre), min(max_shift, high - centre)
        shifted.append(float(round(lo + (hi - lo) * float(torch.rand((), generator=generator)))))
        shifted[-1] = min(max(shifted[-1], np.ceil(lo)), np.floor(hi))
    return shifted[0], shifted[1]


def _visible(mask: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> bool:
    y, x = int(round(float(y))), int(round(float(x)))
    return 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1] and float(mask[y, x]) > 0.99


def _save(image: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array).save(path)
