"""Procedural scenes of the tiny world: a few flat shapes on a plain background.

Each scene knows its shapes (kind, centre, size, colour, depth), so every label the
heads learn from is exact: the depth map (near = bright, background = -1), each
shape's visible mask, and where every pixel of a shape goes when the shape moves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

IMAGE_SIZE = 32
BACKGROUND = (0.13, 0.13, 0.16)
PALETTE = (
    (0.90, 0.20, 0.20),  # red
    (0.20, 0.75, 0.25),  # green
    (0.25, 0.40, 0.95),  # blue
    (0.95, 0.85, 0.20),  # yellow
    (0.85, 0.30, 0.85),  # magenta
    (0.20, 0.85, 0.85),  # cyan
)
KINDS = ("circle", "square", "diamond")
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Shape:
    """One shape: ``kind``, centre ``(y, x)`` and half-size ``radius`` in pixels, RGB ``colour``
    in 0..1, ``depth`` in (0, 1] (1 = nearest; nearer shapes are drawn on top)."""

    kind: str
    center: tuple[float, float]
    radius: float
    colour: tuple[float, float, float]
    depth: float


@dataclass(frozen=True)
class Scene:
    """Shapes on the background of a square ``size``-pixel image."""

    shapes: tuple[Shape, ...]
    size: int = IMAGE_SIZE

    def moved(self, offsets: list[tuple[float, float]]) -> "Scene":
        """The same shapes, each shifted by its ``(dy, dx)``."""
        shapes = tuple(replace(s, center=(s.center[0] + dy, s.center[1] + dx)) for s, (dy, dx) in zip(self.shapes, offsets))
        return replace(self, shapes=shapes)


def random_shape(generator: torch.Generator, size: int = IMAGE_SIZE, colour: int | None = None,
                 kind: str | None = None) -> Shape:
    """A shape of random kind, colour, size, position (kept inside the image) and depth."""
    pick = lambda n: int(torch.randint(n, (1,), generator=generator))  # noqa: E731
    uniform = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=generator))  # noqa: E731
    radius = uniform(0.14, 0.24) * size
    margin = radius + 1
    return Shape(
        kind=kind if kind is not None else KINDS[pick(len(KINDS))],
        center=(uniform(margin, size - margin), uniform(margin, size - margin)),
        radius=radius,
        colour=PALETTE[colour if colour is not None else pick(len(PALETTE))],
        depth=uniform(0.2, 1.0),
    )


def random_scene(generator: torch.Generator, size: int = IMAGE_SIZE, max_shapes: int = 2) -> Scene:
    """One to ``max_shapes`` random shapes."""
    count = 1 + int(torch.randint(max_shapes, (1,), generator=generator))
    return Scene(tuple(random_shape(generator, size) for _ in range(count)), size)


def shape_coverage(shape: Shape, size: int) -> torch.Tensor:
    """Antialiased coverage ``[size, size]`` in 0..1 of one shape (supersampled)."""
    fine = size * SUPERSAMPLE
    coords = (torch.arange(fine, dtype=torch.float32) + 0.5) / SUPERSAMPLE
    y, x = coords[:, None], coords[None, :]
    dy, dx = (y - shape.center[0]).abs(), (x - shape.center[1]).abs()
    if shape.kind == "circle":
        inside = dy**2 + dx**2 <= shape.radius**2
    elif shape.kind == "square":
        half = shape.radius * math.sqrt(math.pi) / 2  # same area as the circle
        inside = (dy <= half) & (dx <= half)
    elif shape.kind == "diamond":
        inside = dy + dx <= shape.radius * math.sqrt(math.pi / 2)
    else:
        raise ValueError(f"unknown shape kind {shape.kind!r}")
    return inside.float().reshape(size, SUPERSAMPLE, size, SUPERSAMPLE).mean(dim=(1, 3))


@dataclass(frozen=True)
class Rendering:
    """A rendered scene: ``image [3, H, W]`` in 0..1, ``depth [1, H, W]`` in -1..1
    (background -1), ``masks [S, H, W]`` visible coverage of each shape."""

    image: torch.Tensor
    depth: torch.Tensor
    masks: torch.Tensor


def render(scene: Scene) -> Rendering:
    """Draw the shapes far to near over the background."""
    size = scene.size
    image = torch.tensor(BACKGROUND).reshape(3, 1, 1).expand(3, size, size).clone()
    depth = torch.full((1, size, size), -1.0)
    order = sorted(range(len(scene.shapes)), key=lambda i: scene.shapes[i].depth)
    coverage = [shape_coverage(shape, size) for shape in scene.shapes]
    visible = [c.clone() for c in coverage]
    for rank, index in enumerate(order):
        shape, alpha = scene.shapes[index], coverage[index]
        image = image * (1 - alpha) + torch.tensor(shape.colour).reshape(3, 1, 1) * alpha
        depth = depth * (1 - alpha) + (2 * shape.depth - 1) * alpha
        for nearer in order[rank + 1:]:
            visible[index] = visible[index] * (1 - coverage[nearer])
    masks = torch.stack(visible) if visible else torch.zeros(0, size, size)
    return Rendering(image, depth, masks)


def object_mask(image: torch.Tensor, threshold: float = 0.25) -> torch.Tensor:
    """Pixels of ``image [3, H, W]`` (0..1) that are not background: colour distance > threshold."""
    background = torch.tensor(BACKGROUND, dtype=image.dtype).reshape(3, 1, 1)
    return (image - background).norm(dim=0) > threshold
