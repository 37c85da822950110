"""Inputs several nodes share: the earlier guidance terms a term node adds to, and the model,
head, latent and conditioning of a readout pass (Readout Preview, Readout Pose)."""

from __future__ import annotations

from comfy_api.latest import io

from .io_types import GuidanceTermsType, ReadoutHeadType


def earlier_terms_input() -> io.Input:
    """The optional chain input of every guidance-term node."""
    return GuidanceTermsType.Input("terms", optional=True, tooltip="Earlier guidance terms to add to.")


def readout_pass_inputs(head_tooltip: str) -> list:
    """Model, head, latent and conditioning: what one U-Net pass needs for a head to read a latent."""
    return [
        io.Model.Input("model", tooltip="The model the head reads (SD1.5 or SDXL)."),
        ReadoutHeadType.Input("head", tooltip=head_tooltip),
        io.Latent.Input("latent", tooltip="A latent (a sampler's output, or VAE Encode of an image)."),
        io.Conditioning.Input("conditioning", tooltip="Conditioning for the U-Net pass (the heads were "
                              "trained with an empty prompt: use CLIP Text Encode with no text)."),
    ]
