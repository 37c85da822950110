"""Drag points: parsing the user's handle → target pairs and mapping them onto the latent.

Coordinates are image pixels ``(x, y)`` of the image being edited. Accepted text
(JSON) formats:

- the canvas format: ``{"width": W, "height": H, "pairs": [{"handle": [x, y], "target": [x, y]}, ...]}``
  (``width`` / ``height`` optional: the size the points were drawn on);
- a list of pairs: ``[[[hx, hy], [tx, ty]], ...]``;
- separate lists: ``{"handles": [[x, y], ...], "targets": [[x, y], ...]}``;
- the released track format ``[[[handles], ..., [targets]]]`` (1 × frames × points × 2;
  frame 0 holds the handles, the last frame the targets); without the leading 1 it is
  read as tracks only when it cannot be a list of pairs;
- KJNodes Points Editor output: ``[{"x": .., "y": ..}, ...]``, paired in order
  (handle, target, handle, target, ...).

The released code converts a pixel point to latent ``(y, x)`` by dividing by 8; here
the factor is the latent's own size over the image's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import ReadoutError
from .latent_scale import PIXELS_PER_LATENT
from .safe_json import read_json

"""Image pixels per latent pixel of the SD1.5 / SDXL VAE."""
MAX_POINTS_CHARS = 64 * 1024
"""Longest points text read (about 1,000 pairs in the canvas format; drag edits use a handful)."""
POINTS_HINT = 'Expected e.g. [[[100, 120], [160, 120]]] or {"pairs": [{"handle": [x, y], "target": [x, y]}]}.'


class PointsError(ReadoutError):
    """The drag points cannot be used; the message says what to change."""


@dataclass(frozen=True)
class DragPoints:
    """Handle → target pairs in image pixels of an image of ``image_size`` = (width, height).

    Attributes:
        handles, targets: ``[K, 2]`` float tensors of ``(x, y)`` pixels.
        image_size: (width, height) of the image the points belong to.
        dropped: human-readable notes on the pairs left out (outside the image).
        latent_factor: image pixels per latent pixel (8 for SD's VAE; 1 for the tiny world).
    """

    handles: torch.Tensor
    targets: torch.Tensor
    image_size: tuple[int, int]
    dropped: tuple[str, ...] = field(default=())
    latent_factor: int = PIXELS_PER_LATENT

    def __len__(self) -> int:
        return int(self.handles.shape[0])

    def latent_points(self, latent_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(source, target) ``[K, 2]`` points as latent ``(y, x)`` for a latent of ``(height, width)``.

        Raises `PointsError` if the image is not the one the latent was made from
        (its size over 8, rounded down as the VAE does, must equal the latent's).
        """
        check_image_fits_latent(self.image_size, latent_size, self.latent_factor)
        height, width = latent_size
        scale = torch.tensor([height / self.image_size[1], width / self.image_size[0]])
        return self.handles.flip(-1) * scale, self.targets.flip(-1) * scale


def check_image_fits_latent(image_size: tuple[int, int], latent_size: tuple[int, int],
                            factor: int = PIXELS_PER_LATENT) -> None:
    """Raise `PointsError` unless an image of ``image_size`` (w, h) encodes to a latent of ``latent_size`` (h, w)."""
    width, height = image_size
    expected = (height // factor, width // factor)
    if expected != tuple(latent_size):
        raise PointsError(
            f"The drag points were placed on a {width}×{height} image, but the latent is "
            f"{latent_size[1] * factor}×{latent_size[0] * factor} pixels "
            f"({latent_size[1]}×{latent_size[0]} latent). Draw the points on the image that was generated or "
            "VAE-encoded for this latent (same width and height)."
        )


def parse_drag_points(text: str, image_size: tuple[int, int]) -> DragPoints:
    """Parse ``text`` (any accepted format) into pairs on an image of ``image_size`` (width, height).

    Pairs with an end outside the image are dropped and listed in ``dropped``; if the
    text gives the size it was drawn on and that differs, points are rescaled.
    Raises `PointsError` for malformed text, no pairs, or unpaired points.
    """
    width, height = _checked_size(image_size)
    handles, targets, drawn_size = read_point_pairs(text)
    if drawn_size is not None and drawn_size != (width, height):
        handles = [(x * width / drawn_size[0], y * height / drawn_size[1]) for x, y in handles]
        targets = [(x * width / drawn_size[0], y * height / drawn_size[1]) for x, y in targets]
    kept_h, kept_t, dropped = [], [], []
    for number, (handle, target) in enumerate(zip(handles, targets), start=1):
        outside = [name for name, (x, y) in (("handle", handle), ("target", target))
                   if not (0 <= x < width and 0 <= y < height)]
        if outside:
            dropped.append(f"pair {number} ({' and '.join(outside)} outside the {width}×{height} image)")
            continue
        kept_h.append(handle)
        kept_t.append(target)
    as_tensor = lambda points: torch.tensor(points, dtype=torch.float32).reshape(-1, 2)  # noqa: E731
    return DragPoints(as_tensor(kept_h), as_tensor(kept_t), (width, height), tuple(dropped))


def read_point_pairs(text: str) -> tuple[list, list, tuple[int, int] | None]:
    """(handles, targets, size drawn on or None) from ``text``; raises `PointsError` if unusable.

    Needs no image, so node validation can check a points widget before sampling.
    """
    return _pairs_from(_load_json(text))


def _checked_size(image_size: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in image_size)
    if width < 1 or height < 1:
        raise PointsError(f"The image to drag on is {width}×{height}; connect a non-empty IMAGE.")
    return width, height


def _load_json(text: str) -> Any:
    if not isinstance(text, str) or not text.strip():
        raise PointsError(
            "No drag points: draw handle → target arrows on the canvas, or give JSON such as "
            '[[[100, 120], [160, 120]]] (one handle → target pair per entry, image pixels x, y).'
        )
    return read_json(text, "The drag points text", PointsError, MAX_POINTS_CHARS, POINTS_HINT)


def _pairs_from(data: Any) -> tuple[list, list, tuple[int, int] | None]:
    """(handles, targets, drawn size or None) from any accepted structure."""
    drawn_size = None
    if isinstance(data, dict):
        if "width" in data or "height" in data:
            drawn_size = (_number(data.get("width"), "width"), _number(data.get("height"), "height"))
            if drawn_size[0] <= 0 or drawn_size[1] <= 0:
                raise PointsError(f"The points' width and height must be positive, got {drawn_size}.")
        if "pairs" in data:
            pairs = _list(data["pairs"], "pairs")
            for pair in pairs:
                if not isinstance(pair, dict) or "handle" not in pair or "target" not in pair:
                    raise PointsError(f'Each entry of "pairs" needs a "handle" and a "target", got {_short(pair)}.')
            handles = [_point(p["handle"]) for p in pairs]
            targets = [_point(p["target"]) for p in pairs]
        elif "handles" in data or "targets" in data:
            handles = [_point(p) for p in _list(data.get("handles", []), "handles")]
            targets = [_point(p) for p in _list(data.get("targets", []), "targets")]
        else:
            raise PointsError('The points object needs "pairs" (or "handles" and "targets").')
    elif isinstance(data, list):
        handles, targets = _pairs_from_list(data)
    else:
        raise PointsError(f"The drag points must be a JSON list or object, got {_short(data)}.")
    if len(handles) != len(targets):
        more = "targets than handles" if len(targets) > len(handles) else "handles than targets"
        raise PointsError(
            f"Got {len(handles)} handles but {len(targets)} targets (more {more}); every handle needs exactly "
            "one target. Remove the unpaired point or add its partner."
        )
    if not handles:
        raise PointsError("No drag points: add at least one handle → target pair.")
    return handles, targets, drawn_size


def _pairs_from_list(data: list) -> tuple[list, list]:
    if not data:
        return [], []
    if all(isinstance(p, dict) for p in data):  # KJNodes Points Editor: handle, target, handle, target, ...
        points = [_point(p) for p in data]
        if len(points) % 2:
            raise PointsError(
                f"Got {len(points)} points; points are paired in order (handle, target, handle, target, ...), "
                "so the count must be even. Add the last handle's target or remove it."
            )
        return points[0::2], points[1::2]
    depth = _depth(data)
    if depth == 4 and len(data) == 1:  # released tracks (1, F, N, 2): frame 0 handles, last frame targets
        frames = data[0]
        if len(frames) < 2 or not all(isinstance(f, list) for f in frames):
            raise PointsError("Track points need at least two frames: the handles and the targets.")
        return [_point(p) for p in frames[0]], [_point(p) for p in frames[-1]]
    if depth == 3 and len(data) == 2 and all(isinstance(f, list) and len(f) != 2 for f in data):
        return [_point(p) for p in data[0]], [_point(p) for p in data[1]]  # tracks (F = 2, N ≠ 2, 2)
    if depth == 3:  # list of [handle, target]
        for pair in data:
            if not isinstance(pair, list) or len(pair) != 2:
                raise PointsError(f"Each pair must be [[handle x, y], [target x, y]], got {_short(pair)}.")
        return [_point(p[0]) for p in data], [_point(p[1]) for p in data]
    raise PointsError(
        f"Could not read drag points from {_short(data)}. Use [[[hx, hy], [tx, ty]], ...] in image pixels."
    )


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth


def _point(value: Any) -> tuple[float, float]:
    if isinstance(value, dict):
        if "x" not in value or "y" not in value:
            raise PointsError(f'A point object needs "x" and "y", got {_short(value)}.')
        return _number(value["x"], "x"), _number(value["y"], "y")
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return _number(value[0], "x"), _number(value[1], "y")
    raise PointsError(f"A point must be [x, y] or {{\"x\": .., \"y\": ..}}, got {_short(value)}.")


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PointsError(f"The point's {name} must be a finite number of pixels, got {_short(value)}.")
    return float(value)


def _list(value: Any, name: str) -> list:
    if not isinstance(value, list):
        raise PointsError(f'"{name}" must be a list, got {_short(value)}.')
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
