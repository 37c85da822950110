"""The one-command demo: ``python -m readout_core demo`` writes an image grid
(rows: spatial control, drag, appearance; columns: unguided | target | guided | readout)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .experiments import Outcome, TinyWorld

SCALE = 4
COLUMNS = ("unguided", "target", "guided", "readout")
ROWS = (("spatial control (depth)", "spatial", "IoU"), ("drag", "drag", "distance to target px"),
        ("appearance", "appearance", "colour distance"))
LABEL_HEIGHT = 16


def run_demo(out: str | Path, seed: int = 0) -> str:
    """Run the three experiments on one seed, write the grid to ``out``; returns a summary."""
    started = time.time()
    world = TinyWorld()
    outcomes = {key: getattr(world, key)(seed) for _, key, _ in ROWS}
    grid = grid_image(outcomes)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    lines = [f"wrote {out} ({grid.width}×{grid.height}) in {time.time() - started:.0f} s; seed {seed}"]
    for title, key, measure in ROWS:
        o = outcomes[key]
        lines.append(f"  {title:<24} {measure}: unguided {o.measure_unguided:.2f} → guided {o.measure_guided:.2f}")
    return "\n".join(lines)


def grid_image(outcomes: dict[str, Outcome]) -> Image.Image:
    """The labelled grid of every outcome's four pictures."""
    cell = 32 * SCALE
    width, height = cell * len(COLUMNS), (cell + LABEL_HEIGHT) * len(ROWS) + LABEL_HEIGHT
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for column, name in enumerate(COLUMNS):
        draw.text((column * cell + 4, 2), name, fill=(0, 0, 0))
    for row, (title, key, measure) in enumerate(ROWS):
        outcome = outcomes[key]
        top = LABEL_HEIGHT + row * (cell + LABEL_HEIGHT)
        draw.text((4, top + 2), f"{title}  ({measure} {outcome.measure_unguided:.2f} -> {outcome.measure_guided:.2f})",
                  fill=(0, 0, 0))
        pictures = (outcome.unguided, outcome.target, outcome.guided, outcome.readout)
        for column, picture in enumerate(pictures):
            tile = _tile(picture, cell)
            if outcome.arrow is not None and column in (1, 2):
                _arrow(ImageDraw.Draw(tile), outcome.arrow)
            grid.paste(tile, (column * cell, top + LABEL_HEIGHT))
    return grid


def _tile(picture: torch.Tensor, cell: int) -> Image.Image:
    array = (picture.clamp(0, 1).movedim(0, -1).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array).resize((cell, cell), Image.NEAREST)


def _arrow(draw: ImageDraw.ImageDraw, arrow) -> None:
    (x0, y0), (x1, y1) = ((SCALE * (x + 0.5), SCALE * (y + 0.5)) for x, y in arrow)
    draw.line((x0, y0, x1, y1), fill=(255, 255, 255), width=2)
    draw.ellipse((x0 - 4, y0 - 4, x0 + 4, y0 + 4), outline=(255, 255, 255), width=2)
    draw.ellipse((x1 - 4, y1 - 4, x1 + 4, y1 + 4), fill=(255, 255, 255))
