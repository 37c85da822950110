"""Reading and writing readout-head files.

Two formats:
- the authors' published ``.pt`` (a ``torch.save`` dict with ``config`` and
  ``aggregation_network``), opened with weights-only unpickling so that no code in
  the file can run (`pt_container`);
- the pack's ``.safetensors``: the same state dict plus the `HeadInfo` as JSON metadata
  (its header checked by `safetensors_header` before the library reads it).

Every config field is type- and range-checked (`HeadInfo`), and checked against the
weights' shapes (`weights`) before any module is allocated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic_files import atomic_file
from ..errors import HeadConfigError, HeadFileError
from .info import HeadInfo, info_from_published_config
from .weights import check_values, reconcile, shapes_of
from .network import ReadoutHead
from .pt_container import load_weights_only
from ..safe_json import check_plain_data
from .safetensors_header import read_header

FORMAT_VERSION = "1"
INFO_KEY = "readout_guidance.info"
VERSION_KEY = "readout_guidance.format_version"
SOURCE_CONFIG_KEY = "readout_guidance.source_config"
HEAD_EXTENSIONS = (".safetensors", ".pt", ".pth")
MAX_HEAD_BYTES = 1024**3
"""Largest head file read (published heads are tens of MB)."""
WEIGHTS_ONLY_FIELDS = ("emb_dim", "output_channels")
"""Sizes `build_head` takes from the weights rather than the info (published configs omit them)."""


def load_head(
    path: str | os.PathLike[str],
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> ReadoutHead:
    """Load a readout head from a published ``.pt`` or a pack ``.safetensors`` file.

    The weights must match the architecture exactly (strict loading). The returned
    module is in eval mode, has no trainable flag set, and carries ``.info``.
    ``dtype`` defaults to float32: heads are small and their losses run in fp32.
    """
    info, state_dict = read_head_file(path)
    return ready_for_guidance(build_head(info, state_dict, source=str(path)), device, dtype)


def ready_for_guidance(head: ReadoutHead, device: torch.device | str | None = None,
                       dtype: torch.dtype | None = None) -> ReadoutHead:
    """``head`` as `load_head` returns heads: on ``device`` in ``dtype`` (float32), eval mode, frozen."""
    head.to(device=device, dtype=dtype or torch.float32)
    head.eval().requires_grad_(False)
    return head


def read_head_file(path: str | os.PathLike[str], kind: str | None = None) -> tuple[HeadInfo, dict[str, torch.Tensor]]:
    """Return (info, state dict) of a head file without building the module."""
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path)
    if suffix in (".pt", ".pth"):
        info, state_dict, _ = _read_published_pt(path, kind)
        return info, state_dict
    raise HeadFileError(
        f"{path.name}: unsupported head file type {suffix!r}. Use a published .pt head or a .safetensors head "
        "written by this pack."
    )


def build_head(info: HeadInfo, state_dict: Mapping[str, torch.Tensor], source: str = "head") -> ReadoutHead:
    """Build a `ReadoutHead` for ``info`` and load ``state_dict`` strictly.

    Everything is checked before the module is allocated: a missing or unexpected key, a
    shape mismatch or a config field that disagrees with the weights raises `HeadFileError`
    naming them, and so do weights that are not finite floating-point tensors. Widths that
    only the weights know (timestep-embedding width, output channels) are taken from them.
    """
    info = reconcile(info, shapes_of(state_dict, source), source, from_weights=WEIGHTS_ONLY_FIELDS)
    check_values(state_dict, source)
    head = ReadoutHead(info)
    head.load_state_dict({key: value.to(torch.float32) for key, value in state_dict.items()}, strict=True)
    return head


def save_head(
    head: ReadoutHead,
    path: str | os.PathLike[str],
    source_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``head`` as a pack ``.safetensors`` file with its `HeadInfo` in the metadata.

    The file is complete or absent (`atomic_file`).
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise HeadFileError(f"Heads are saved as .safetensors; got {path.name}.")
    metadata = {VERSION_KEY: FORMAT_VERSION, INFO_KEY: head.info.to_json()}
    if source_config is not None:
        metadata[SOURCE_CONFIG_KEY] = json.dumps(source_config, sort_keys=True, default=str)
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in head.state_dict().items()}
    with atomic_file(path) as partial:
        save_file(tensors, str(partial), metadata=metadata)
    return path


def convert_published_head(src: str | os.PathLike[str], dst: str | os.PathLike[str], kind: str | None = None) -> ReadoutHead:
    """Convert a published ``.pt`` head to the pack's ``.safetensors`` format (weights bit-identical)."""
    src = _existing_file(src)
    if src.suffix.lower() not in (".pt", ".pth"):
        raise HeadFileError(f"convert reads a published .pt head; {src.name} is not one.")
    info, state_dict, config = _read_published_pt(src, kind)
    head = build_head(info, state_dict, source=str(src))
    save_head(head, dst, source_config=config)
    return head


def _existing_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.is_dir():
        raise HeadFileError(f"{path} is a folder, not a head file: give the path of a .safetensors or .pt head.")
    if not path.is_file():
        raise HeadFileError(f"Readout head file not found: {path}. Check the name and the path.")
    size = path.stat().st_size
    if size == 0:
        raise HeadFileError(f"Readout head file {path} is empty (0 bytes): the download or copy did not finish. Fetch it again.")
    if size > MAX_HEAD_BYTES:
        raise HeadFileError(f"{path.name} is {size:,} bytes; readout heads are far smaller (at most {MAX_HEAD_BYTES:,} "
                            "are read). Is it a base model checkpoint?")
    return path


def _read_safetensors(path: Path) -> tuple[HeadInfo, dict[str, torch.Tensor]]:
    metadata, entries = read_header(path)
    if INFO_KEY not in metadata:
        raise HeadFileError(
            f"{path.name} is a .safetensors file without readout-head metadata, so it is not a readout head "
            "written by this pack (is it a ControlNet or LoRA?). Convert published heads with "
            "`python -m readout_core convert IN.pt OUT.safetensors`."
        )
    version = metadata.get(VERSION_KEY, "")
    if version != FORMAT_VERSION:
        raise HeadFileError(f"{path.name} uses head format version {version[:20]!r}; this pack reads version "
                            f"{FORMAT_VERSION}. Update the pack.")
    try:
        info = HeadInfo.from_json(metadata[INFO_KEY])
    except HeadConfigError as exc:
        raise HeadFileError(f"{path.name}: {exc}") from exc
    info = reconcile(info, {name: entry.shape for name, entry in entries.items()}, path.name)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise HeadFileError(
            f"{path.name} is not a readable .safetensors file ({exc}). It may be truncated or corrupted: "
            "download or convert it again."
        ) from exc
    return info, tensors


def _read_published_pt(
    path: Path, kind: str | None = None
) -> tuple[HeadInfo, dict[str, torch.Tensor], Mapping[str, Any]]:
    checkpoint = load_weights_only(path)
    state_dict, config = _published_parts(checkpoint, path)
    if "dims" not in config:
        raise HeadFileError(f"{path.name}: the checkpoint config has no 'dims' (decoder layer channels); it is not a readout head.")
    shapes = shapes_of(state_dict, path.name)
    agg = config.get("aggregation_kwargs") or {}
    if not isinstance(agg, dict):
        raise HeadFileError(f"{path.name}: the config's aggregation_kwargs must be a dict.")
    # The layout is a fact of the weights; the config's flag (default True in the released
    # class) may be absent from older checkpoints.
    sequential = any(key.startswith("bottleneck_layers.0.0.") for key in shapes)
    described = dict(config, aggregation_kwargs={**agg, "bottleneck_sequential": sequential})
    if isinstance(checkpoint.get("step"), int):
        described["step"] = checkpoint["step"]
    try:
        info = info_from_published_config(described, file_stem=path.stem, kind=kind)
    except HeadConfigError as exc:
        raise HeadFileError(f"{path.name}: {exc}") from exc
    unstated = [field for field, key in (("projection_dim", "projection_dim" in config),
                                         ("output_channels", "output_head_channels" in agg)) if not key]
    info = reconcile(info, shapes, path.name, from_weights=("emb_dim", *unstated))
    return info, state_dict, config


def _published_parts(checkpoint: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not isinstance(checkpoint, dict) or "aggregation_network" not in checkpoint or "config" not in checkpoint:
        found = sorted(str(key)[:40] for key in list(checkpoint)[:8]) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise HeadFileError(
            f"{path.name} is not a readout head checkpoint: expected a dict with 'config' and "
            f"'aggregation_network', found {str(found)[:200]}."
        )
    state_dict = checkpoint["aggregation_network"]
    config = checkpoint["config"]
    if not isinstance(config, dict):
        raise HeadFileError(f"{path.name}: 'config' must be a dict, found {type(config).__name__}.")
    check_plain_data(config, f"{path.name}: the checkpoint's config", HeadFileError)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise HeadFileError(f"{path.name}: 'aggregation_network' must map parameter names to tensors.")
    return dict(state_dict), config
