"""Sampling a reference and its guided edits side by side, in one host batch.

The batch is ``[reference, edit 1, ..., edit n]``. The reference is an ordinary
unguided sample: regenerated from the seed (generated images) or reconstructed from an
inverted latent (real images). Every edit is guided towards the reference's features
at the same step — appearance, identity, drag — and may start from the reference's own
noise (drag) or from new noise (variations). Reference and edits can use different CFG
scales (released real-image drag: 1.0 and 3.5) through a per-sample CFG function.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from ..drag_points import check_image_fits_latent
from ..errors import ReadoutError
from ..latent_scale import PIXELS_PER_LATENT
from ..guidance import GuidanceSettings, reference_layout
from .guided_sampling import guided_clone
from .inversion import inversion_record

LOG = logging.getLogger("readout_guidance")


@dataclass(frozen=True)
class ReferenceRun:
    """How the reference and its edits are sampled.

    Attributes:
        seed: noise seed of a generated reference (unused for an inverted latent).
        steps, cfg, sampler_name, scheduler, denoise: as KSampler's; ``cfg`` is the edits'.
        reference_cfg: CFG of the reference (released: 1.0 reconstructing a real image).
        edits_from_reference: start the edits from the reference's noise (drag) instead of new noise.
        variation_seed: noise seed of the edits when they start from new noise.
        edits: how many edited samples follow the reference in the batch.
    """

    seed: int
    steps: int
    cfg: float
    reference_cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    edits_from_reference: bool = True
    variation_seed: int = 1
    edits: int = 1


def sample_with_reference(patcher: Any, settings: GuidanceSettings, run: ReferenceRun, positive: list,
                          negative: list, latent: dict) -> tuple[dict, dict]:
    """Sample ``[reference, edits]`` with guidance on the edits; return (edits LATENT, reference LATENT).

    ``run.edits`` says how many edits; the guidance gets the matching batch layout
    (`reference_layout`) whatever ``settings.reference_of`` held.
    """
    import comfy.sample
    import comfy.samplers
    import comfy.utils

    samples = comfy.sample.fix_empty_latent_channels(patcher, latent["samples"])
    if samples.shape[0] != 1:
        raise ReadoutError(f"The reference latent must be one image (batch 1), got a batch of {samples.shape[0]}. "
                           "Use Latent From Batch to pick one.")
    edits = run.edits
    settings = replace(settings, reference_of=reference_layout(edits))
    check_terms_fit_latent(settings, tuple(samples.shape[-2:]))
    record = inversion_record(latent)
    if record is not None:
        _check_schedule(patcher, run, record)
        reference_noise = torch.zeros_like(samples)
    else:
        reference_noise = comfy.sample.prepare_noise(samples, run.seed)
    if run.edits_from_reference:
        edit_latent = samples.repeat(edits, 1, 1, 1)
        edit_noise = reference_noise.repeat(edits, 1, 1, 1)
    else:
        base = torch.zeros_like(samples) if record is not None else samples
        edit_latent = base.repeat(edits, 1, 1, 1)
        edit_noise = comfy.sample.prepare_noise(edit_latent, run.variation_seed)
    batch_latent = torch.cat([samples, edit_latent])
    noise = torch.cat([reference_noise, edit_noise])

    guided = guided_clone(patcher, settings)
    if run.reference_cfg != run.cfg:
        scales = [run.reference_cfg] + [run.cfg] * edits
        previous = guided.model_options.get("sampler_cfg_function")
        guided.set_model_sampler_cfg_function(per_sample_cfg(scales, previous), disable_cfg1_optimization=True)
    callback = _preview_callback(guided, run.steps)
    out = comfy.sample.sample(guided, noise, run.steps, run.cfg, run.sampler_name, run.scheduler, positive, negative,
                              batch_latent, denoise=run.denoise, callback=callback,
                              disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=run.seed)
    base = {key: value for key, value in latent.items() if key not in ("samples", "readout_inversion", "batch_index")}
    return dict(base, samples=out[1:]), dict(base, samples=out[:1])


def per_sample_cfg(scales: list[float], previous: Callable | None = None) -> Callable:
    """A host ``sampler_cfg_function`` applying ``scales[i]`` to batch element i.

    ``previous`` (a CFG function already on the model, e.g. Rescale CFG) is applied
    once per distinct scale and its rows picked, so it keeps working.
    """

    def cfg_function(args: dict) -> torch.Tensor:
        cond, uncond = args["cond"], args["uncond"]
        if len(scales) != cond.shape[0]:
            raise ReadoutError(f"Per-sample CFG for {len(scales)} samples met a batch of {cond.shape[0]}.")
        # Built per call (never an inference tensor captured from the node), so autograd can use it.
        rows = torch.tensor(scales, device=cond.device, dtype=cond.dtype).reshape(-1, *[1] * (cond.ndim - 1))
        if previous is None:
            return uncond + (cond - uncond) * rows
        outputs = {value: previous(dict(args, cond_scale=value)) for value in sorted(set(scales))}
        return torch.stack([outputs[value][index] for index, value in enumerate(scales)])

    return cfg_function


def check_terms_fit_latent(settings: GuidanceSettings, latent_size: tuple[int, int]) -> None:
    """Raise before sampling if drag points or crop boxes do not belong to a latent of ``latent_size`` (h, w)."""
    height, width = latent_size[0] * PIXELS_PER_LATENT, latent_size[1] * PIXELS_PER_LATENT
    for term in settings.terms:
        points = getattr(term, "points", None)
        if points is not None:
            check_image_fits_latent(points.image_size, latent_size)
        for name in ("reference_box", "generated_box"):
            box = getattr(term, name, None)
            if box is not None and not (0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height):
                raise ReadoutError(
                    f"The {name.replace('_', ' ')} {tuple(box)} (x0, y0, x1, y1) is not inside the {width}×{height} "
                    "image; give a box inside the image with x0 < x1 and y0 < y1."
                )


def _check_schedule(patcher: Any, run: ReferenceRun, record: dict) -> None:
    import comfy.samplers

    if run.denoise != 1.0:
        raise ReadoutError("An inverted latent is pure noise: sample it with denoise 1.0.")
    sigmas = comfy.samplers.calculate_sigmas(patcher.get_model_object("model_sampling"), run.scheduler, run.steps)
    expected = record["sigmas"]
    if sigmas.shape != expected.shape or not torch.allclose(sigmas.float().cpu(), expected, rtol=1e-4):
        LOG.warning(
            "Readout Guidance: the image was inverted with %s steps of %s but is sampled with %s steps of %s; "
            "the reference reconstructs less exactly. Use the same steps and scheduler in both nodes.",
            record["steps"], record["scheduler"], run.steps, run.scheduler,
        )


def _preview_callback(patcher: Any, steps: int) -> Callable | None:
    """The host's latent-preview callback (as KSampler shows), if the host has one."""
    try:
        import latent_preview
    except ImportError:
        return None
    return latent_preview.prepare_callback(patcher, steps)
