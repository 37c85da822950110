"""Invert Image and Readout Reference Sampler: real-image inversion and sampling a
reference with its guided edits side by side."""

from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from readout_core.guidance import reference_layout
from readout_core.host_adapter.inversion import invert_latent
from readout_core.host_adapter.reference_sampling import ReferenceRun, sample_with_reference

from .guidance_inputs import guidance_setting_inputs, guidance_settings, recurrent_steps_input
from .input_checks import first_problem, parse_problem, window_problem
from .io_types import GuidanceTermsType
from .presets import EDIT_STARTS, PRESET_NAMES, check_preset_name


class InvertImage(io.ComfyNode):
    """DDIM inversion: the noise that sampling turns back into this image."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_InvertImage",
            display_name="Invert Image (DDIM)",
            category="Readout Guidance",
            description="Finds the noise from which the model regenerates this image (DDIM inversion), to edit a "
            "real image: connect the result to Readout Reference Sampler with the same steps and scheduler.",
            inputs=[
                io.Model.Input("model", tooltip="The SD1.5 / SDXL model you will edit with."),
                io.Conditioning.Input("positive", tooltip="A prompt describing the image (released: the image's caption)."),
                io.Latent.Input("latent", tooltip="The image to edit, VAE-encoded."),
                io.Int.Input("steps", default=50, min=1, max=1000,
                             tooltip="Inversion steps; use the same in the sampler (released: 100)."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="CFG of the inversion (released: 1.0; higher reconstructs worse)."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="ddim_uniform",
                               tooltip="Use the same scheduler in the sampler (released: ddim_uniform)."),
                io.Int.Input("refine", default=2, min=0, max=10,
                             tooltip="Fixed-point iterations per step that make the inversion exact (0 = the released "
                             "DDIM inversion; each adds one model pass per step). 2 gets most of the gain."),
                io.Conditioning.Input("negative", optional=True, tooltip="Needed only for CFG other than 1.0."),
            ],
            outputs=[io.Latent.Output(display_name="inverted", tooltip="The inverted noise latent.")],
        )

    @classmethod
    def execute(cls, model, positive, latent, steps: int, cfg: float, scheduler: str, refine: int = 2,
                negative=None) -> io.NodeOutput:
        return io.NodeOutput(invert_latent(model, latent, positive, negative, steps, cfg, scheduler, refine))


class ReadoutReferenceSampler(io.ComfyNode):
    """Samples a reference and guided edits of it (drag, appearance, identity) in one batch."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_ReferenceSampler",
            display_name="Readout Reference Sampler",
            category="Readout Guidance",
            description="Regenerates the reference (from the seed, or from Invert Image's latent) and, side by side, "
            "samples edits guided towards it: drag, appearance variations, identity. Choosing a preset fills the "
            "numbers; each stays editable.",
            inputs=[
                io.Model.Input("model", tooltip="An SD1.5 or SDXL model matching the heads."),
                io.Combo.Input("preset", options=list(PRESET_NAMES), default=PRESET_NAMES[0],
                               tooltip="Fill the settings with a released preset; 'custom' leaves them as they are."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="The reference's noise seed (the seed of the image you generated)."),
                io.Int.Input("steps", default=50, min=1, max=10000, tooltip="Sampling steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="CFG of the edited samples (released real-image drag: 3.5)."),
                io.Float.Input("reference_cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="CFG of the reference (generated image: as generated; real image: 1.0)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="ddim",
                               tooltip="Deterministic samplers (ddim, euler, dpmpp_2m) keep the reference equal to "
                               "the original; ancestral / SDE samplers give it its own noise."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="ddim_uniform",
                               tooltip="The schedule (the same as Invert Image's for a real image)."),
                io.Conditioning.Input("positive", tooltip="The prompt of the reference and the edits."),
                io.Conditioning.Input("negative", tooltip="What to avoid."),
                io.Latent.Input("latent_image", tooltip="Empty Latent Image of the generation's size, or Invert "
                                "Image's latent for a real image."),
                GuidanceTermsType.Input("terms", tooltip="Drag Guidance / Appearance Reference / Identity Reference "
                                        "(spatial targets may be added too)."),
                io.Combo.Input("edit_start", options=list(EDIT_STARTS), default=EDIT_STARTS[0],
                               tooltip="Drag: edits start from the reference's noise. Variations: from new noise."),
                io.Int.Input("variations", default=1, min=1, max=16, tooltip="How many edited samples."),
                io.Int.Input("variation_seed", default=1, min=0, max=0xFFFFFFFFFFFFFFFF,
                             tooltip="Noise seed of the edits when they start from new noise."),
                *guidance_setting_inputs("guidance_weight"),
                recurrent_steps_input(optional=True),
            ],
            outputs=[
                io.Latent.Output(display_name="edited", tooltip="The guided samples."),
                io.Latent.Output(display_name="reference", tooltip="The reference, regenerated or reconstructed."),
            ],
        )

    @classmethod
    def validate_inputs(cls, start_percent: float | None = None, end_percent: float | None = None,
                        preset: str | None = None) -> bool | str:
        return first_problem(parse_problem(check_preset_name, preset), window_problem(start_percent, end_percent))

    @classmethod
    def execute(cls, model, preset, seed, steps, cfg, reference_cfg, sampler_name, scheduler, positive, negative,
                latent_image, terms, edit_start, variations, variation_seed, update_rule, guidance_weight,
                start_percent, end_percent, gradient_checkpointing=False, guide_every=1, recurrent_steps=1) -> io.NodeOutput:
        settings = guidance_settings(terms, update_rule, guidance_weight, start_percent, end_percent, recurrent_steps,
                                     gradient_checkpointing, guide_every, reference_of=reference_layout(variations))
        run = ReferenceRun(seed=seed, steps=steps, cfg=cfg, reference_cfg=reference_cfg, sampler_name=sampler_name,
                           scheduler=scheduler, edits_from_reference=edit_start == EDIT_STARTS[0],
                           variation_seed=variation_seed, edits=variations)
        edited, reference = sample_with_reference(model, settings, run, positive, negative, latent_image)
        return io.NodeOutput(edited, reference)
