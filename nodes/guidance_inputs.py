"""The guidance settings shared by Apply Readout Guidance, the Readout Guided KSampler and the
Readout Reference Sampler: their inputs, and the `GuidanceSettings` built from them."""

from __future__ import annotations

from comfy_api.latest import io

from readout_core.guidance import UPDATE_RULES, GuidanceSettings


def guidance_setting_inputs(weight_name: str) -> list:
    """The update rule, weight and guidance window inputs (``weight_name``: the weight's input id)."""
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


def recurrent_steps_input(optional: bool) -> io.Int.Input:
    """The optimiser steps per sampling step (its place in each node's widget order is fixed by saved workflows)."""
    return io.Int.Input("recurrent_steps", default=1, min=1, max=10, optional=optional,
                        tooltip="Optimiser steps per sampling step (official rule).")


def guidance_settings(terms: list, update_rule: str, weight: float, start_percent: float, end_percent: float,
                      recurrent_steps: int = 1, gradient_checkpointing: bool = False, guide_every: int = 1,
                      reference_of: tuple[int | None, ...] | None = None) -> GuidanceSettings:
    """`GuidanceSettings` from the shared inputs; ``reference_of``: the reference sampler's batch layout."""
    return GuidanceSettings(rule=update_rule, weight=weight, start_percent=start_percent, end_percent=end_percent,
                            recurrent_steps=recurrent_steps, terms=list(terms),
                            gradient_checkpointing=gradient_checkpointing, guide_every=guide_every,
                            reference_of=reference_of)
