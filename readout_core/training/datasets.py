"""Reading training datasets from folders (documented in the README, "Training heads").

- spatial: ``DATASET/images/NAME.png`` with ``DATASET/controls/NAME.png`` (same stem; any
  control: pose, depth, edge, segmentation, normals…; white = the top of the control range);
- appearance / identity: ``DATASET/SUBJECT/*.png``, one folder per subject or person;
- correspondence: ``DATASET/pairs.json``: ``[{"a": "x.png", "b": "y.png", "points":
  [[xa, ya, xb, yb], ...]}, ...]``, pixel coordinates in each file's own pixels.

Every image is centre-cropped to a square and resized to the training resolution; point
coordinates follow the same crop and resize.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ReadoutError
from ..safe_json import read_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_PAIRS_JSON_BYTES = 8 * 1024 * 1024
"""Largest ``pairs.json`` read (about 200,000 point matches)."""
PAIRS_FORMAT = '[{"a": "x.png", "b": "y.png", "points": [[xa, ya, xb, yb], ...]}, ...]'


@dataclass(frozen=True)
class PointPair:
    """Two images and their matches ``[K, 4]`` as ``(x_a, y_a, x_b, y_b)`` in file pixels."""

    a: Path
    b: Path
    points: torch.Tensor


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def spatial_pairs(dataset: str | Path) -> list[tuple[Path, Path]]:
    """(image, control) files matched by name in ``images/`` and ``controls/``."""
    dataset = _folder(dataset)
    images_dir, controls_dir = dataset / "images", dataset / "controls"
    for folder in (images_dir, controls_dir):
        if not folder.is_dir():
            raise ReadoutError(f"A spatial dataset needs {folder} (images in 'images/', matching controls in "
                               "'controls/' with the same file names).")
    controls = {p.stem: p for p in image_files(controls_dir)}
    images = image_files(images_dir)
    unmatched = [p.name for p in images if p.stem not in controls]
    if unmatched:
        raise ReadoutError(f"{len(unmatched)} images have no control of the same name in {controls_dir}: "
                           f"{', '.join(unmatched[:5])}{' …' if len(unmatched) > 5 else ''}.")
    if len(images) < 2:
        raise ReadoutError(f"{images_dir} holds {len(images)} images; training needs at least 2 (about 100 is good).")
    return [(p, controls[p.stem]) for p in images]


def subject_groups(dataset: str | Path) -> list[list[Path]]:
    """Images grouped by subject: each sub-folder with at least two images."""
    dataset = _folder(dataset)
    groups = [image_files(d) for d in sorted(dataset.iterdir()) if d.is_dir()]
    groups = [g for g in groups if len(g) >= 2]
    if not groups:
        raise ReadoutError(f"{dataset} needs one sub-folder per subject (or person) with at least two images of it.")
    return groups


def point_pairs(dataset: str | Path) -> list[PointPair]:
    """The image pairs and point matches listed in ``pairs.json`` (at most `MAX_PAIRS_JSON_BYTES`)."""
    dataset = _folder(dataset)
    listing = dataset / "pairs.json"
    if not listing.is_file():
        raise ReadoutError(f"A correspondence dataset needs {listing}: {PAIRS_FORMAT}.")
    size = listing.stat().st_size
    if size > MAX_PAIRS_JSON_BYTES:
        raise ReadoutError(f"{listing} is {size:,} bytes; at most {MAX_PAIRS_JSON_BYTES:,} are read. Use fewer "
                           "pairs or points.")
    try:
        text = listing.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadoutError(f"{listing} is not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON.") from None
    entries = read_json(text, str(listing), ReadoutError, MAX_PAIRS_JSON_BYTES, f"It must be {PAIRS_FORMAT}.")
    if not isinstance(entries, list) or not entries:
        raise ReadoutError(f"{listing} must be a non-empty list of pairs: {PAIRS_FORMAT}.")
    return [_point_pair(entry, number, listing) for number, entry in enumerate(entries)]


def _point_pair(entry: object, number: int, listing: Path) -> PointPair:
    where = f"Pair {number} in {listing}"
    if not isinstance(entry, dict) or not {"a", "b", "points"} <= set(entry):
        raise ReadoutError(f"{where} must be an object {{\"a\": file, \"b\": file, \"points\": [[xa, ya, xb, yb], ...]}}.")
    a, b = (_dataset_file(entry[side], side, where, listing.parent) for side in ("a", "b"))
    points = entry["points"]
    if not isinstance(points, list):
        raise ReadoutError(f"{where}: \"points\" must be a list of [xa, ya, xb, yb] matches.")
    if not points:
        raise ReadoutError(f"{where} has no points; give at least one match.")
    for match in points:
        if (not isinstance(match, list) or len(match) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in match)):
            raise ReadoutError(f"{where}: each point match must be four numbers [xa, ya, xb, yb] (pixels), "
                               f"got {str(match)[:60]}.")
    return PointPair(a, b, torch.tensor(points, dtype=torch.float32))


def _dataset_file(name: object, side: str, where: str, dataset: Path) -> Path:
    if not isinstance(name, str) or not name or "\0" in name or len(name) > 1024:
        raise ReadoutError(f"{where}: \"{side}\" must be the file name of an image in {dataset}.")
    path = dataset / name
    if not path.resolve().is_relative_to(dataset.resolve()):
        raise ReadoutError(f"{where} names {name!r}, which is outside {dataset}; list files inside the dataset.")
    if not path.is_file():
        raise ReadoutError(f"{where} names {path.name}, which is not in {dataset}.")
    return path


def load_image(path: Path, resolution: int) -> torch.Tensor:
    """``[3, R, R]`` in 0..1: the centre square of the image, resized."""
    image = _open(path)
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    from PIL import Image

    image = image.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).clamp(0, 1)


def crop_points(points: torch.Tensor, size: tuple[int, int], resolution: int) -> torch.Tensor:
    """(x, y) pixel points of an image of ``size`` (width, height) after `load_image`'s crop and resize."""
    width, height = size
    side = min(width, height)
    offset = torch.tensor([(width - side) // 2, (height - side) // 2], dtype=torch.float32)
    return (points - offset) * (resolution / side)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file."""
    return _open(path).size


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ReadoutError(f"Cannot read the image {path}: {exc}. Remove it or replace it with a PNG / JPEG.") from None


def _folder(dataset: str | Path) -> Path:
    path = Path(dataset).expanduser()
    if not path.is_dir():
        raise ReadoutError(f"The dataset folder {path} does not exist.")
    return path
