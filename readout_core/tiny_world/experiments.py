"""Spatial control, drag and appearance guidance on the tiny world, with their measures.

Each experiment samples without and with guidance from the same noise and measures
what the guidance is for:

- spatial: IoU of the generated objects' mask with the target depth map's shapes;
- drag: distance from the dragged shape's centre to the target point (the reference's
  distance is the drag length);
- appearance: colour distance to the reference: half the L1 distance between the
  palette-colour histograms of the objects (0 = the same colours in the same amounts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import torch

from ..drag_points import DragPoints
from ..guidance import AppearanceTerm, CorrespondenceTerm, GuidanceSettings, GuidanceTerm, reference_layout
from ..diffusers_adapter.guided_ddim import readout, sample
from ..heads.preview import render_readout
from . import model, tiny_head, tiny_source
from .scenes import PALETTE, IMAGE_SIZE, object_mask, random_shape, render, Scene

STEPS = 25
"""DDIM steps (the released loop; 25 keep the demo under a minute on a 2-core CPU)."""
DRAG_LENGTH = 8.0
"""How far (pixels, a quarter of the image) the drag experiment moves the main shape."""
DRAG_APPEARANCE_WEIGHT = 0.05
"""The appearance term's weight in drag. The released 1.0 holds the tiny world's shapes in place
(its appearance loss is scaled by the latent range squared and outweighs the correspondence
term), so here it only keeps the colours from drifting."""
MEASURES = (("spatial", "IoU with the target", "higher"), ("drag", "distance to target (px)", "lower"),
            ("appearance", "colour distance to the reference", "lower"))
"""Each experiment's measure and which way it is better: (experiment, measure, "higher" / "lower")."""
SPATIAL = dict(weight=0.04, end_percent=0.5, recurrent_steps=3)
DRAG = dict(weight=0.04, end_percent=0.6, recurrent_steps=3)
APPEARANCE = dict(weight=0.04, end_percent=0.5, recurrent_steps=3)


@dataclass(frozen=True)
class Outcome:
    """One experiment: images ``[3, H, W]`` in 0..1 and the measure without / with guidance."""

    unguided: torch.Tensor
    target: torch.Tensor
    guided: torch.Tensor
    readout: torch.Tensor
    measure_unguided: float
    measure_guided: float
    arrow: tuple[tuple[float, float], tuple[float, float]] | None = None
    guided_seconds: float = 0.0


class TinyWorld:
    """The shipped model and heads, loaded once."""

    @cached_property
    def source(self):
        return tiny_source()

    @cached_property
    def heads(self) -> dict:
        return {name: tiny_head(name) for name in ("depth", "appearance", "correspondence")}

    def noise(self, seed: int) -> torch.Tensor:
        return torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))

    def images(self, latents: torch.Tensor) -> torch.Tensor:
        return model.latent_to_image(latents)

    def spatial(self, seed: int) -> Outcome:
        """Generate onto a random one-shape depth map."""
        target = render(Scene((random_shape(torch.Generator().manual_seed(10_000 + seed)),)))
        depth = target.depth.expand(3, -1, -1)[None]
        noise = self.noise(seed)
        head = self.heads["depth"]
        unguided = self.images(sample(self.source, noise, steps=STEPS))[0]
        settings = GuidanceSettings(terms=[GuidanceTerm(head, depth, weight=0.5)], **SPATIAL)
        latent = sample(self.source, noise, settings, steps=STEPS)
        guided = self.images(latent)[0]
        wanted = target.masks.sum(0) > 0.5
        shown = render_readout(readout(self.source, head, latent), head.info)[0].movedim(-1, 0)
        return Outcome(unguided, (depth[0] + 1) / 2, guided, shown,
                       iou(object_mask(unguided), wanted), iou(object_mask(guided), wanted))

    def drag(self, seed: int, guide_every: int = 1) -> Outcome:
        """Drag the main shape of a generated image sideways by `DRAG_LENGTH` pixels (guiding
        every ``guide_every``-th step of the window)."""
        noise = self.noise(seed)
        reference = self.images(sample(self.source, noise, steps=STEPS))[0]
        colour, handle = main_shape(reference)
        step = DRAG_LENGTH if handle[0] < IMAGE_SIZE / 2 else -DRAG_LENGTH
        target = (handle[0] + step, handle[1])
        handles = grip_points(reference, colour, handle)
        points = DragPoints(handles, handles + torch.tensor([step, 0.0]), (IMAGE_SIZE, IMAGE_SIZE), latent_factor=1)
        terms = [CorrespondenceTerm(self.heads["correspondence"], points),
                 AppearanceTerm(self.heads["appearance"], weight=DRAG_APPEARANCE_WEIGHT)]
        settings = GuidanceSettings(terms=terms, reference_of=reference_layout(1), guide_every=guide_every, **DRAG)
        started = time.perf_counter()
        latents = sample(self.source, noise.expand(2, -1, -1, -1), settings, steps=STEPS)
        seconds = time.perf_counter() - started
        edited = self.images(latents)[1]
        shown = render_readout(readout(self.source, self.heads["correspondence"], latents, use_emb=False),
                               self.heads["correspondence"].info)[1].movedim(-1, 0)
        return Outcome(reference, reference, edited, shown, distance(colour_centre(reference, colour), target),
                       distance(colour_centre(edited, colour), target), arrow=(handle, target), guided_seconds=seconds)

    def appearance(self, seed: int, guide_every: int = 1) -> Outcome:
        """A variation (new noise) that keeps the reference's look (guiding every
        ``guide_every``-th step of the window)."""
        noise = torch.cat([self.noise(seed), self.noise(20_000 + seed)])
        plain = self.images(sample(self.source, noise, steps=STEPS))
        reference, unguided = plain[0], plain[1]
        head = self.heads["appearance"]
        settings = GuidanceSettings(terms=[AppearanceTerm(head)], reference_of=reference_layout(1),
                                    guide_every=guide_every, **APPEARANCE)
        started = time.perf_counter()
        latents = sample(self.source, noise, settings, steps=STEPS)
        seconds = time.perf_counter() - started
        guided = self.images(latents)[1]
        shown = render_readout(readout(self.source, head, latents), head.info)[1].movedim(-1, 0)
        return Outcome(unguided, reference, guided, shown, colour_distance(unguided, reference),
                       colour_distance(guided, reference), guided_seconds=seconds)


def improved(unguided: float, guided: float, better: str) -> bool:
    """Whether guidance moved a measure the good way (``better``: "higher" or "lower")."""
    return guided > unguided if better == "higher" else guided < unguided


def iou(mask: torch.Tensor, wanted: torch.Tensor) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = (mask | wanted).sum()
    return float((mask & wanted).sum() / union) if union else 1.0


def palette_index(image: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` nearest palette colour of each object pixel, -1 for background."""
    palette = torch.tensor(PALETTE, dtype=image.dtype)
    nearest = (image.movedim(0, -1)[:, :, None, :] - palette).norm(dim=-1).argmin(dim=-1)
    return torch.where(object_mask(image), nearest, torch.full_like(nearest, -1))


def colour_histogram(image: torch.Tensor) -> torch.Tensor:
    """Share of the object pixels in each palette colour (zeros for an empty image)."""
    index = palette_index(image)
    counts = torch.bincount(index[index >= 0], minlength=len(PALETTE)).float()
    return counts / counts.sum().clamp(min=1)


def colour_distance(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Half the L1 distance between the colour histograms (0 same colours .. 1 disjoint)."""
    return float((colour_histogram(image) - colour_histogram(reference)).abs().sum() / 2)


def main_shape(image: torch.Tensor) -> tuple[int, tuple[float, float]]:
    """The most common object colour and the (x, y) centre of its pixels."""
    index = palette_index(image)
    colours = index[index >= 0]
    if colours.numel() == 0:
        return 0, (IMAGE_SIZE / 2, IMAGE_SIZE / 2)
    colour = int(torch.bincount(colours).argmax())
    return colour, colour_centre(image, colour)


def grip_points(image: torch.Tensor, colour: int, centre: tuple[float, float], spread: float = 3.0) -> torch.Tensor:
    """The centre and up to four points ``spread`` pixels around it that lie on the shape: where a
    user grabs a shape to drag it. ``[K, 2]`` (x, y)."""
    index = palette_index(image)
    points = [centre]
    for dx, dy in ((spread, 0), (-spread, 0), (0, spread), (0, -spread)):
        x, y = centre[0] + dx, centre[1] + dy
        if 0 <= round(y) < IMAGE_SIZE and 0 <= round(x) < IMAGE_SIZE and int(index[round(y), round(x)]) == colour:
            points.append((x, y))
    return torch.tensor(points)


def colour_centre(image: torch.Tensor, colour: int) -> tuple[float, float]:
    """(x, y) centre of the pixels of one palette colour (the image centre if none)."""
    ys, xs = torch.nonzero(palette_index(image) == colour, as_tuple=True)
    if ys.numel() == 0:
        return IMAGE_SIZE / 2, IMAGE_SIZE / 2
    return float(xs.float().mean()), float(ys.float().mean())


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Euclidean distance between two (x, y) points."""
    return float(torch.tensor([a[0] - b[0], a[1] - b[1]]).norm())
