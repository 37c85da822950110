"""The one-command demo: ``python -m readout_core demo`` writes an image grid
(rows: spatial control, drag, appearance; columns: unguided | target | guided | readout)
with a caption under every picture and a legend, and prints each row's measure."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from .experiments import MEASURES, Outcome, TinyWorld, improved

SCALE = 4
CELL = 32 * SCALE
COLUMNS = ("unguided", "target / reference", "guided", "readout of guided")
LINE = 13
"""Height of one line of text in the grid (pixels)."""
HEADER_HEIGHT = 16


@dataclass(frozen=True)
class Row:
    """One row of the grid: its experiment, title and a caption for each of the four pictures."""

    key: str
    title: str
    captions: tuple[str, str, str, str]


ROWS = (
    Row("spatial", "spatial control (depth)",
        ("same noise, no guidance", "the depth map to follow", "same noise, guided", "depth the head reads")),
    Row("drag", "drag",
        ("the image to edit", "the drag on it", "after the drag", "correspondence features")),
    Row("appearance", "appearance",
        ("new noise, no guidance", "the reference's look", "new noise, guided", "appearance features")),
)
LEGEND = (
    "Arrow (drag): open circle = handle, the content grabbed; filled dot = target, where it should go.",
    "Readout: the depth row shows the depth map the head reads (white = near, black = far); the drag and",
    "appearance rows show the head's features as 3 colours (their principal components): same colour, same feature.",
    "Some seeds do worse than others: the README's 16-seed table says how often; try --seed N.",
)
ROW_HEIGHT = LINE + CELL + LINE + 6
"""Title line, pictures, caption line, a gap."""
MEASURE_OF = {key: (measure, better) for key, measure, better in MEASURES}


def run_demo(out: str | Path, seed: int = 0) -> str:
    """Run the three experiments on one seed, write the grid to ``out``; returns a summary."""
    started = time.time()
    world = TinyWorld()
    outcomes = {row.key: getattr(world, row.key)(seed) for row in ROWS}
    grid = grid_image(outcomes)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    threads = torch.get_num_threads()
    lines = [f"wrote {out} ({grid.width}×{grid.height}) in {time.time() - started:.0f} s on {threads} CPU "
             f"thread{'s' * (threads != 1)}; seed {seed}"]
    for row in ROWS:
        o, (measure, better) = outcomes[row.key], MEASURE_OF[row.key]
        verdict = "better" if improved(o.measure_unguided, o.measure_guided, better) else "not better on this seed"
        lines.append(f"  {row.title:<24} {measure} ({better} is better): unguided {o.measure_unguided:.2f} → "
                     f"guided {o.measure_guided:.2f}  ({verdict})")
    return "\n".join(lines)


def grid_image(outcomes: dict[str, Outcome]) -> Image.Image:
    """The labelled grid of every outcome's four pictures, with captions and the legend."""
    width = CELL * len(COLUMNS)
    legend_top = HEADER_HEIGHT + ROW_HEIGHT * len(ROWS)
    grid = Image.new("RGB", (width, legend_top + LINE * len(LEGEND) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for column, name in enumerate(COLUMNS):
        draw.text((column * CELL + 4, 2), name, fill=(0, 0, 0))
    for index, row in enumerate(ROWS):
        outcome, (measure, better) = outcomes[row.key], MEASURE_OF[row.key]
        top = HEADER_HEIGHT + index * ROW_HEIGHT
        draw.text((4, top), f"{row.title} - {measure} ({better} is better): unguided "
                  f"{outcome.measure_unguided:.2f} -> guided {outcome.measure_guided:.2f}", fill=(0, 0, 0))
        pictures = (outcome.unguided, outcome.target, outcome.guided, outcome.readout)
        for column, (picture, caption) in enumerate(zip(pictures, row.captions)):
            tile = _tile(picture)
            if outcome.arrow is not None and column in (1, 2):
                _arrow(ImageDraw.Draw(tile), outcome.arrow)
            grid.paste(tile, (column * CELL, top + LINE))
            draw.text((column * CELL + 4, top + LINE + CELL), caption, fill=(90, 90, 90))
    for line, text in enumerate(LEGEND):
        draw.text((4, legend_top + line * LINE), text, fill=(0, 0, 0))
    return grid


def _tile(picture: torch.Tensor) -> Image.Image:
    array = (picture.clamp(0, 1).movedim(0, -1).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array).resize((CELL, CELL), Image.NEAREST)


def _arrow(draw: ImageDraw.ImageDraw, arrow) -> None:
    (x0, y0), (x1, y1) = ((SCALE * (x + 0.5), SCALE * (y + 0.5)) for x, y in arrow)
    draw.line((x0, y0, x1, y1), fill=(255, 255, 255), width=2)
    draw.ellipse((x0 - 4, y0 - 4, x0 + 4, y0 + 4), outline=(255, 255, 255), width=2)
    draw.ellipse((x1 - 4, y1 - 4, x1 + 4, y1 + 4), fill=(255, 255, 255))
