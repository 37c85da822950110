"""Load Readout Head: a head file from ``models/readout_heads`` → READOUT_HEAD."""

from __future__ import annotations

import folder_paths
from comfy_api.latest import io

from readout_core import load_head

from .io_types import ReadoutHeadType
from .model_folders import HEADS_FOLDER


class LoadReadoutHead(io.ComfyNode):
    """Loads a published ``.pt`` or a pack ``.safetensors`` readout head."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_LoadHead",
            display_name="Load Readout Head",
            category="Readout Guidance",
            description="Loads a readout head (pose / depth / edge / appearance / correspondence / identity) "
            "from models/readout_heads.",
            inputs=[
                io.Combo.Input(
                    "head_name",
                    options=folder_paths.get_filename_list(HEADS_FOLDER),
                    tooltip="A head file in models/readout_heads (.safetensors, or a published .pt).",
                ),
            ],
            outputs=[ReadoutHeadType.Output(display_name="head", tooltip="The loaded readout head.")],
        )

    @classmethod
    def execute(cls, head_name: str) -> io.NodeOutput:
        path = folder_paths.get_full_path_or_raise(HEADS_FOLDER, head_name)
        return io.NodeOutput(load_head(path))
