"""Checking a head's weights against its `HeadInfo` before anything is allocated.

`expected_shapes` computes, from the info alone and without building a module, every
parameter name and shape a `ReadoutHead` has. `reconcile` takes the sizes a format does
not record from the weights' shapes, and refuses a config that disagrees with its weights,
naming the field and the keys at fault. `check_values` refuses weights that are not finite
floating-point tensors, or that claim more elements than their storage holds. Only after
all three does `files.build_head` allocate the module (the size of the file's weights).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Iterable, Mapping

import torch

from ..errors import HeadConfigError, HeadFileError
from .info import HeadInfo

Shape = tuple[int, ...]
MAX_KEYS = 4096
"""Most weights a head file may hold (a published SD1.5 head has 175)."""
MAX_KEY_CHARS = 200
"""Longest weight name accepted."""
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
OUTPUT_HEAD_WIDTHS = (128, 32)
"""Widths of the output head's two inner convolutions (released architecture)."""
_MAX_LISTED = 6
_LAYER_KEY = re.compile(r"bottleneck_layers\.(\d{1,4})\.")


def expected_shapes(info: HeadInfo) -> dict[str, Shape]:
    """Parameter and buffer shapes of a `ReadoutHead` for ``info``, named as in its state dict."""
    projection, width = info.projection_dim, info.bottleneck_dim
    shapes: dict[str, Shape] = {"mixing_weights": (len(info.dims),)}
    for layer, channels in enumerate(info.dims):
        prefix = f"bottleneck_layers.{layer}." + ("0." if info.sequential else "")
        convs = {"conv1": (width, channels, 1), "conv2": (width, width, 3), "conv3": (projection, width, 1)}
        if channels != projection:
            convs["shortcut"] = (projection, channels, 1)
        for name, (out_channels, in_channels, kernel) in convs.items():
            shapes[f"{prefix}{name}.weight"] = (out_channels, in_channels, kernel, kernel)
            shapes[f"{prefix}{name}.norm.weight"] = (out_channels,)
            shapes[f"{prefix}{name}.norm.bias"] = (out_channels,)
        if info.emb_dim > 0:
            shapes[f"{prefix}emb_layers.weight"] = (width, info.emb_dim)
            shapes[f"{prefix}emb_layers.bias"] = (width,)
    if info.output_channels:
        widths = (projection, *OUTPUT_HEAD_WIDTHS, info.output_channels)
        for index, (in_channels, out_channels) in enumerate(zip(widths, widths[1:])):
            kernel = 1 if index == 2 else 3
            shapes[f"output_head.{2 * index}.weight"] = (out_channels, in_channels, kernel, kernel)
            shapes[f"output_head.{2 * index}.bias"] = (out_channels,)
    return shapes


def shapes_of(state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, Shape]:
    """Name → shape of every weight, after checking the names and the count are sane."""
    if len(state_dict) > MAX_KEYS:
        raise HeadFileError(f"{source} holds {len(state_dict):,} weights; a readout head has at most {MAX_KEYS:,}. "
                            "It is not a readout head.")
    bad = [key for key in state_dict if not isinstance(key, str) or len(key) > MAX_KEY_CHARS]
    if bad:
        raise HeadFileError(f"{source}: weight names must be strings of at most {MAX_KEY_CHARS} characters; "
                            f"{len(bad)} are not. It is not a readout head.")
    return {key: tuple(value.shape) for key, value in state_dict.items()}


def reconcile(info: HeadInfo, shapes: Mapping[str, Shape], source: str, from_weights: Iterable[str] = ()) -> HeadInfo:
    """``info`` with the fields in ``from_weights`` taken from ``shapes``, checked to describe exactly those weights.

    Raises `HeadFileError` naming each config field that disagrees with the weights and the
    keys at fault (missing, unexpected, other shape). Allocates nothing.
    """
    found = _sizes_from_shapes(shapes, info)
    taken = {name: found[name] for name in from_weights if name in found}
    try:
        info = replace(info, **taken) if taken else info
    except HeadConfigError as exc:
        raise HeadFileError(f"{source}: the weights' shapes do not describe a readout head: {exc}") from exc
    expected = expected_shapes(info)
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    mismatched = [f"{key}: file {shapes[key]} vs head {expected[key]}"
                  for key in sorted(set(expected) & set(shapes)) if tuple(shapes[key]) != expected[key]]
    if not (missing or unexpected or mismatched):
        return info
    fields = [f"{name}={getattr(info, name)!r} but the weights say {value!r}" for name, value in found.items()
              if name not in taken and getattr(info, name) != value]
    problems = [f"config fields that disagree with the weights: {_listing(fields)}"] if fields else []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if keys:
            problems.append(f"{label}: {_listing(keys)}")
    raise HeadFileError(
        f"{source}: weights do not match a {info.describe()} (dims={list(info.dims)}, "
        f"projection_dim={info.projection_dim}) — " + "; ".join(problems) + ". The file is damaged or "
        "was written for a different head layout."
    )


def check_values(state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights that are not floating point, are views larger than their storage, or hold NaN / inf."""
    for key, value in state_dict.items():
        if value.dtype not in FLOAT_DTYPES:
            raise HeadFileError(f"{source}: weight {key} is {value.dtype}; readout heads hold floating-point "
                                "weights only. The file is damaged or not a readout head.")
        if value.untyped_storage().nbytes() < value.numel() * value.element_size():
            raise HeadFileError(f"{source}: weight {key} claims {value.numel():,} values but its data holds fewer. "
                                "The file is damaged or not a readout head.")
    for key, value in state_dict.items():
        if not bool(torch.isfinite(value).all()):
            raise HeadFileError(f"{source}: weight {key} contains NaN or infinite values; the file is damaged "
                                "(or the head was trained into divergence). Download or train it again.")


def _sizes_from_shapes(shapes: Mapping[str, Shape], info: HeadInfo) -> dict[str, object]:
    """The sizes the weights themselves state (each only if the keys that tell it are there)."""
    prefix = "bottleneck_layers.{}." + ("0." if info.sequential else "")
    sizes: dict[str, object] = {}
    layers = sorted({int(match.group(1)) for key in shapes if (match := _LAYER_KEY.match(key))})
    conv1 = [shapes.get(prefix.format(layer) + "conv1.weight") for layer in range(len(layers))]
    if layers and layers == list(range(len(layers))) and all(s is not None and len(s) == 4 for s in conv1):
        sizes["dims"] = tuple(s[1] for s in conv1)  # type: ignore[index]
    conv3 = shapes.get(prefix.format(0) + "conv3.weight")
    if conv3 is not None and len(conv3) == 4:
        sizes["projection_dim"] = conv3[0]
    emb = [s for key, s in shapes.items() if key.endswith("emb_layers.weight") and len(s) == 2]
    sizes["emb_dim"] = emb[0][1] if emb else 0
    output = shapes.get("output_head.4.weight")
    if output is not None and len(output) == 4 and not info.is_relative:
        sizes["output_channels"] = output[0]
    return sizes


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")
