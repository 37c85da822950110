"""Spatial Target and Apply Readout Guidance."""

from __future__ import annotations

from comfy_api.latest import io

from readout_core.guidance import GuidanceTerm
from readout_core.host_adapter import guided_clone
from readout_core.targets import spatial_target_from_image

from .guidance_inputs import guidance_setting_inputs, guidance_settings, recurrent_steps_input
from .input_checks import window_problem
from .io_types import GuidanceTermsType, ReadoutHeadType
from .shared_inputs import earlier_terms_input


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
                earlier_terms_input(),
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
                recurrent_steps_input(optional=False),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="The model with readout guidance.")],
        )

    @classmethod
    def validate_inputs(cls, start_percent: float | None = None, end_percent: float | None = None) -> bool | str:
        return window_problem(start_percent, end_percent)

    @classmethod
    def execute(cls, model, terms, update_rule: str, weight: float, start_percent: float, end_percent: float,
                recurrent_steps: int, gradient_checkpointing: bool = False, guide_every: int = 1) -> io.NodeOutput:
        settings = guidance_settings(terms, update_rule, weight, start_percent, end_percent, recurrent_steps,
                                     gradient_checkpointing, guide_every)
        return io.NodeOutput(guided_clone(model, settings))
