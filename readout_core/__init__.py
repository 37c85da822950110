"""Readout Guidance core: heads, decoder features, losses. Independent of ComfyUI.

Importing this package needs torch, numpy and safetensors only. The one module that
talks to the ComfyUI host, `readout_core.host_adapter`, is imported by the node
wrappers, never from here.
"""

from .errors import FeatureError, HeadConfigError, HeadFileError, LossInputError, ReadoutError
from .features import (
    LAYOUTS,
    SD15_LAYOUT,
    SDXL_LAYOUT,
    DecoderFeatureCapture,
    DecoderLayout,
    decoder_layout,
    resize_and_concat,
    sinusoidal_timestep_embedding,
)
from .head_files import HEAD_EXTENSIONS, build_head, convert_published_head, load_head, read_head_file, save_head
from .head_info import KINDS, HeadInfo
from .heads import ReadoutHead, count_parameters

__version__ = "0.1.0"

__all__ = [
    "HEAD_EXTENSIONS",
    "KINDS",
    "LAYOUTS",
    "SD15_LAYOUT",
    "SDXL_LAYOUT",
    "DecoderFeatureCapture",
    "DecoderLayout",
    "FeatureError",
    "HeadConfigError",
    "HeadFileError",
    "HeadInfo",
    "LossInputError",
    "ReadoutError",
    "ReadoutHead",
    "build_head",
    "convert_published_head",
    "count_parameters",
    "decoder_layout",
    "load_head",
    "read_head_file",
    "resize_and_concat",
    "save_head",
    "sinusoidal_timestep_embedding",
]
