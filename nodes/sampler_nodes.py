"""Readout Guided KSampler and Readout Preview."""

from __future__ import annotations

import comfy.samplers
import torch.nn.functional as F
from comfy_api.latest import io, ui

from readout_core.host_adapter import guided_clone, readout_of_latent
from readout_core.latent_scale import PIXELS_PER_LATENT
from readout_core.heads.preview import render_readout

from .guidance_inputs import guidance_setting_inputs, guidance_settings, recurrent_steps_input
from .input_checks import window_problem
from .io_types import GuidanceTermsType
from .shared_inputs import readout_pass_inputs


class ReadoutGuidedKSampler(io.ComfyNode):
    """KSampler with readout guidance, in one node (the host's own KSampler path)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_KSampler",
            display_name="Readout Guided KSampler",
            category="Readout Guidance",
            description="KSampler plus readout guidance: the generation follows the guidance terms' targets.",
            inputs=[
                io.Model.Input("model", tooltip="An SD1.5 or SDXL model matching the heads."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="The random seed of the noise."),
                io.Int.Input("steps", default=30, min=1, max=10000, tooltip="Sampling steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, tooltip="The sampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, tooltip="The schedule."),
                io.Conditioning.Input("positive", tooltip="What to generate."),
                io.Conditioning.Input("negative", tooltip="What to avoid."),
                io.Latent.Input("latent_image", tooltip="The latent to denoise (Empty Latent Image for text-to-image)."),
                GuidanceTermsType.Input("terms", tooltip="Heads with their targets (Spatial Target)."),
                *guidance_setting_inputs("guidance_weight"),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="How much of the latent to replace (1.0 for text-to-image)."),
                recurrent_steps_input(optional=True),
            ],
            outputs=[io.Latent.Output(display_name="LATENT", tooltip="The guided latent.")],
        )

    @classmethod
    def validate_inputs(cls, start_percent: float | None = None, end_percent: float | None = None) -> bool | str:
        return window_problem(start_percent, end_percent)

    @classmethod
    def execute(cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, terms,
                update_rule, guidance_weight, start_percent, end_percent, denoise=1.0,
                gradient_checkpointing=False, guide_every=1, recurrent_steps=1) -> io.NodeOutput:
        import nodes as host_nodes  # the host's nodes.py: its common_ksampler is KSampler's own path

        settings = guidance_settings(terms, update_rule, guidance_weight, start_percent, end_percent, recurrent_steps,
                                     gradient_checkpointing, guide_every)
        guided = guided_clone(model, settings)
        return io.NodeOutput(*host_nodes.common_ksampler(guided, seed, steps, cfg, sampler_name, scheduler,
                                                         positive, negative, latent_image, denoise=denoise))


class ReadoutPreview(io.ComfyNode):
    """What a head reads from a latent, as an image."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_Preview",
            display_name="Readout Preview",
            category="Readout Guidance",
            description="Shows what a readout head sees in a latent: the pose / depth / edge map, keypoints, or "
            "a 3-colour PCA of appearance / correspondence features.",
            inputs=[
                *readout_pass_inputs("Any readout head."),
                io.Float.Input("percent", default=0.95, min=0.0, max=1.0, step=0.01,
                               tooltip="Noise level to read at, as a percent of the schedule (1.0 = clean)."),
            ],
            outputs=[io.Image.Output(display_name="IMAGE", tooltip="The readout, at the image's size.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, head, latent, conditioning, percent) -> io.NodeOutput:
        readout = readout_of_latent(model, head, latent, conditioning, percent)
        image = render_readout(readout, head.info)
        size = (image.shape[1] * PIXELS_PER_LATENT, image.shape[2] * PIXELS_PER_LATENT)
        image = F.interpolate(image.movedim(-1, 1), size=size, mode="nearest").movedim(1, -1)
        return io.NodeOutput(image, ui=ui.PreviewImage(image, cls=cls))
