"""Reading and writing readout-head files.

Two formats:
- the authors' published ``.pt`` (a ``torch.save`` dict with ``config`` and
  ``aggregation_network``), opened with weights-only unpickling so that no code in
  the file can run;
- the pack's ``.safetensors``: the same state dict plus the `HeadInfo` as JSON metadata.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import HeadConfigError, HeadFileError
from .head_info import HeadInfo, info_from_published_config
from .heads import ReadoutHead

FORMAT_VERSION = "1"
INFO_KEY = "readout_guidance.info"
VERSION_KEY = "readout_guidance.format_version"
SOURCE_CONFIG_KEY = "readout_guidance.source_config"
HEAD_EXTENSIONS = (".safetensors", ".pt", ".pth")
_MAX_LISTED = 6


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
    head = build_head(info, state_dict, source=str(path))
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

    Any missing or unexpected key, or a shape mismatch, raises `HeadFileError` naming
    the keys. Widths that only the weights know (timestep-embedding width, output
    channels) are taken from the weights.
    """
    info = info.with_weights_shapes(_emb_dim_from_weights(state_dict), _output_channels_from_weights(state_dict, info))
    head = ReadoutHead(info)
    expected = head.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{key}: file {tuple(state_dict[key].shape)} vs head {tuple(expected[key].shape)}"
        for key in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched)}")
    if problems:
        raise HeadFileError(
            f"{source}: weights do not match a {info.describe()} (dims={list(info.dims)}, "
            f"projection_dim={info.projection_dim}) — " + "; ".join(problems) + ". The file is damaged or "
            "was written for a different head layout."
        )
    head.load_state_dict({key: value.to(torch.float32) for key, value in state_dict.items()}, strict=True)
    return head


def save_head(
    head: ReadoutHead,
    path: str | os.PathLike[str],
    source_config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``head`` as a pack ``.safetensors`` file with its `HeadInfo` in the metadata.

    The file is written to a temporary name and renamed when complete.
    """
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise HeadFileError(f"Heads are saved as .safetensors; got {path.name}.")
    metadata = {VERSION_KEY: FORMAT_VERSION, INFO_KEY: head.info.to_json()}
    if source_config is not None:
        metadata[SOURCE_CONFIG_KEY] = json.dumps(source_config, sort_keys=True, default=str)
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in head.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        save_file(tensors, str(partial), metadata=metadata)
        os.chmod(partial, 0o644)  # safetensors writes 0600; the ComfyUI user must read it
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
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
    if not path.is_file():
        raise HeadFileError(f"Readout head file not found: {path}. Check the name and the models/readout_heads folder.")
    if path.stat().st_size == 0:
        raise HeadFileError(f"Readout head file {path} is empty (0 bytes): the download or copy did not finish. Fetch it again.")
    return path


def _read_safetensors(path: Path) -> tuple[HeadInfo, dict[str, torch.Tensor]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise HeadFileError(
            f"{path.name} is not a readable .safetensors file ({exc}). It may be truncated or corrupted: "
            "download or convert it again."
        ) from exc
    if INFO_KEY not in metadata:
        raise HeadFileError(
            f"{path.name} is a .safetensors file without readout-head metadata, so it is not a readout head "
            "written by this pack (is it a ControlNet or LoRA?). Convert published heads with "
            "`python -m readout_core convert IN.pt OUT.safetensors`."
        )
    version = metadata.get(VERSION_KEY, "")
    if version != FORMAT_VERSION:
        raise HeadFileError(f"{path.name} uses head format version {version!r}; this pack reads version {FORMAT_VERSION}. Update the pack.")
    try:
        info = HeadInfo.from_json(metadata[INFO_KEY])
    except HeadConfigError as exc:
        raise HeadFileError(f"{path.name}: {exc}") from exc
    return info, tensors


def _torch_load_weights_only(path: Path) -> Any:
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        imported = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if imported:
            raise HeadFileError(
                f"Refused to open {path.name}: it asks to import {imported.group(1)} when unpickled, so loading "
                "it could run code from the file. Readout heads hold only tensors and a plain config; use the "
                "official file or a .safetensors head."
            ) from exc
        raise HeadFileError(
            f"{path.name} could not be read as a PyTorch checkpoint (not a weights-only pickle). It is "
            "probably truncated, corrupted or not a readout head: download it again."
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError) as exc:
        raise HeadFileError(
            f"{path.name} could not be read as a PyTorch checkpoint ({type(exc).__name__}: {exc}). It is "
            "probably truncated or corrupted: download it again."
        ) from exc


def _read_published_pt(
    path: Path, kind: str | None = None
) -> tuple[HeadInfo, dict[str, torch.Tensor], Mapping[str, Any]]:
    checkpoint = _torch_load_weights_only(path)
    state_dict, config = _published_parts(checkpoint, path)
    config = dict(config)
    if "dims" not in config:
        raise HeadFileError(f"{path.name}: the checkpoint config has no 'dims' (decoder layer channels); it is not a readout head.")
    agg = dict(config.get("aggregation_kwargs") or {})
    # The layout is a fact of the weights; the config's flag (default True in the released
    # class) may be absent from older checkpoints.
    agg["bottleneck_sequential"] = any(key.startswith("bottleneck_layers.0.0.") for key in state_dict)
    config["aggregation_kwargs"] = agg
    if "step" in checkpoint:
        config["step"] = checkpoint["step"]
    try:
        info = info_from_published_config(config, file_stem=path.stem, kind=kind)
    except HeadConfigError as exc:
        raise HeadFileError(f"{path.name}: {exc}") from exc
    return info, state_dict, checkpoint["config"]


def _published_parts(checkpoint: Any, path: Path) -> tuple[dict[str, torch.Tensor], Mapping[str, Any]]:
    if not isinstance(checkpoint, dict) or "aggregation_network" not in checkpoint or "config" not in checkpoint:
        found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise HeadFileError(
            f"{path.name} is not a readout head checkpoint: expected a dict with 'config' and "
            f"'aggregation_network', found {found}."
        )
    state_dict = checkpoint["aggregation_network"]
    config = checkpoint["config"]
    if not isinstance(config, dict):
        raise HeadFileError(f"{path.name}: 'config' must be a dict, found {type(config).__name__}.")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise HeadFileError(f"{path.name}: 'aggregation_network' must map parameter names to tensors.")
    return dict(state_dict), config


def _emb_dim_from_weights(state_dict: Mapping[str, torch.Tensor]) -> int:
    for key, value in state_dict.items():
        if key.endswith("emb_layers.weight") and value.ndim == 2:
            return int(value.shape[1])
    return 0


def _output_channels_from_weights(state_dict: Mapping[str, torch.Tensor], info: HeadInfo) -> int | None:
    weight = state_dict.get("output_head.4.weight")
    if weight is None or info.is_relative:
        return info.output_channels
    return int(weight.shape[0])


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")
