"""Thin ComfyUI node wrappers around `readout_core` (ComfyUI's V3 node schema)."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .guidance_nodes import ApplyReadoutGuidance, SpatialTarget
from .head_loader import LoadReadoutHead
from .sampler_nodes import ReadoutGuidedKSampler, ReadoutPreview
from .model_folders import register_model_folders
from .pose_nodes import PoseKeypointsTarget, ReadoutPose
from .reference_nodes import AppearanceReference, DragGuidance, DragPoints, IdentityReference
from .reference_sampler_nodes import InvertImage, ReadoutReferenceSampler
from .routes import register_routes
from .training_nodes import TrainReadoutHead

NODES: list[type[io.ComfyNode]] = [
    LoadReadoutHead,
    SpatialTarget,
    ApplyReadoutGuidance,
    ReadoutGuidedKSampler,
    ReadoutPreview,
    PoseKeypointsTarget,
    ReadoutPose,
    DragPoints,
    DragGuidance,
    AppearanceReference,
    IdentityReference,
    InvertImage,
    ReadoutReferenceSampler,
    TrainReadoutHead,
]


class ReadoutGuidanceExtension(ComfyExtension):
    """The pack's node list, as the host asks for it."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


def readout_guidance_extension() -> ReadoutGuidanceExtension:
    """Register the pack's model folders and web routes; return its extension (for ``comfy_entrypoint``)."""
    register_model_folders()
    register_routes()
    return ReadoutGuidanceExtension()
