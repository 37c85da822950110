"""Spatial Target and Apply Readout Guidance."""

from __future__ import annotations

from comfy_api.latest import io

from readout_core.guidance import UPDATE_RULES, GuidanceSettings, GuidanceTerm
from readout_core.host_adapter import HostGuidance
from readout_core.targets import spatial_target_from_image

from .io_types import GuidanceTermsType, ReadoutHeadType


def guidance_setting_inputs(weight_name: str) -> list:
    """The update rule, weight and guidance window inputs shared by the guidance nodes."""
    return [
        io.Combo.Input("update_rule", options=list(UPDATE_RULES), default="official",
                       tooltip="official: the released sign step on the latent, both CFG branches. "
                       "gradient: the paper's ε + w·∇ through the unconditional branch (faster)."),
        io.Float.Input(weight_name, default=0.02, min=0.0, max=100000.0, step=0.001,
                       tooltip="official: step size on the latent per guided step (released 0.02). "
                       "gradient: w in ε + w·∇."),
        io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Where guidance starts, as a fraction of the denoising (0 = first step)."),
        io.Float.Input("end_percent", default=0.5, min=0.0, max=1.0, step=0.01,
                       tooltip="Where guidance ends (released: 0.5, the first half)."),
        io.Boolean.Input("gradient_checkpointing", default=False, optional=True,
                         tooltip="Recompute the U-Net's activations in the backward pass instead of keeping "
                         "them: much less memory (SDXL at 1024 px), somewhat slower."),
        io.Int.Input("guide_every", default=1, min=1, max=50, optional=True,
                     tooltip="Guide only every k-th step inside the window: 2 halves the extra cost, guidance "
                     "gets weaker (raise the weight a little)."),
    ]


def window_problem(start_percent: float | None, end_percent: float | None) -> bool | str:
    """The guidance nodes' ``validate_inputs``: True, or why the window cannot work (checked before sampling)."""
    if start_percent is None or end_percent is None:  # linked from another node: checked when it runs
        return True
    if start_percent > end_percent:
        return (f"start_percent ({start_percent}) is after end_percent ({end_percent}); guidance would never act. "
                "Use e.g. 0.0 → 0.5 (the released window).")
    return True


class SpatialTarget(io.ComfyNode):
    """A pose / depth / edge image as a guidance term for a spatial head."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_SpatialTarget",
            display_name="Spatial Target",
            category="Readout Guidance",
            description="Makes a pose / depth / edge image (as ControlNet preprocessors output) the target of a "
            "spatial readout head. Chain several to guide with several heads.",
            inputs=[
                ReadoutHeadType.Input("head", tooltip="A spatial head (pose, depth or edge) from Load Readout Head."),
                io.Image.Input("image", tooltip="The control image: any size; one image, or one per latent."),
                io.Float.Input("weight", default=0.5, min=0.0, max=100.0, step=0.01,
                               tooltip="This head's share of the guidance loss (released: 0.5)."),
                GuidanceTermsType.Input("terms", optional=True,
                                        tooltip="Earlier guidance terms to add this one to."),
            ],
            outputs=[GuidanceTermsType.Output(display_name="terms", tooltip="Guidance terms for Apply Readout Guidance.")],
        )

    @classmethod
    def execute(cls, head, image, weight: float, terms=None) -> io.NodeOutput:
        target = spatial_target_from_image(image, head.info)
        return io.NodeOutput(list(terms or []) + [GuidanceTerm(head=head, target=target, weight=weight)])


class ApplyReadoutGuidance(io.ComfyNode):
    """MODEL → MODEL with readout guidance inside every sampler."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_Apply",
            display_name="Apply Readout Guidance",
            category="Readout Guidance",
            description="Steers sampling so the heads' readouts match their targets. Works with KSampler, "
            "KSamplerAdvanced, SamplerCustom and SamplerCustomAdvanced.",
            inputs=[
                io.Model.Input("model", tooltip="An SD1.5 or SDXL model matching the heads."),
                GuidanceTermsType.Input("terms", tooltip="Heads with their targets (Spatial Target)."),
                *guidance_setting_inputs("weight"),
                io.Int.Input("recurrent_steps", default=1, min=1, max=10,
                             tooltip="Optimiser steps per sampling step (official rule)."),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="The model with readout guidance.")],
        )

    @classmethod
    def validate_inputs(cls, start_percent: float | None = None, end_percent: float | None = None) -> bool | str:
        return window_problem(start_percent, end_percent)

    @classmethod
    def execute(cls, model, terms, update_rule: str, weight: float, start_percent: float, end_percent: float,
                recurrent_steps: int, gradient_checkpointing: bool = False, guide_every: int = 1) -> io.NodeOutput:
        settings = GuidanceSettings(rule=update_rule, weight=weight, start_percent=start_percent,
                                    end_percent=end_percent, recurrent_steps=recurrent_steps, terms=list(terms),
                                    gradient_checkpointing=gradient_checkpointing, guide_every=guide_every)
        patched = model.clone()
        HostGuidance(settings).install(patched)
        return io.NodeOutput(patched)
