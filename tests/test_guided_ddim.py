"""The core DDIM loop on a ``[reference, edits...]`` batch: only the edits carry a graph.

The whole-batch loop (every row through one graph, as the authors' code runs it) is the
same loop with the reference pass switched off; both must give the same latents.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from readout_core.diffusers_adapter import guided_ddim
from readout_core.drag_points import DragPoints
from readout_core.guidance import AppearanceTerm, CorrespondenceTerm, GuidanceSettings, reference_layout
from readout_core.tiny_world.experiments import DRAG, TinyWorld

STEPS = 8


@pytest.fixture(scope="module")
def world() -> TinyWorld:
    """The tiny world with a float64 U-Net: the official rule's first AdamW step is a sign step,
    so in float32 the rounding of a differently split batch flips the sign of near-zero
    gradient entries; in float64 the two paths agree to rounding."""
    world = TinyWorld()
    world.source = replace(world.source, unet=copy.deepcopy(world.source.unet).double())
    return world


def drag_settings(world: TinyWorld) -> GuidanceSettings:
    handles = torch.tensor([[10.0, 12.0], [14.0, 16.0]])
    points = DragPoints(handles, handles + torch.tensor([6.0, 0.0]), (32, 32), latent_factor=1)
    terms = [CorrespondenceTerm(world.heads["correspondence"], points),
             AppearanceTerm(world.heads["appearance"], weight=0.05)]
    return GuidanceSettings(terms=terms, reference_of=reference_layout(1), **DRAG)


def variation_settings(world: TinyWorld) -> GuidanceSettings:
    return GuidanceSettings(terms=[AppearanceTerm(world.heads["appearance"])], reference_of=reference_layout(2),
                            weight=0.04, end_percent=0.5, recurrent_steps=2)


def sample_counting_graph_rows(world, noise, settings, monkeypatch, whole_batch: bool):
    """(latents, rows run with autograd) of one guided sample."""
    source = world.source
    counted = [0]
    predict = type(source).predict

    def counting_predict(self, latents, timesteps):
        if torch.is_grad_enabled():
            counted[0] += latents.shape[0]
        return predict(self, latents, timesteps)

    with monkeypatch.context() as patch:
        patch.setattr(type(source), "predict", counting_predict)
        if whole_batch:
            patch.setattr(guided_ddim, "_reference_pass", lambda *_args: None)
        latents = guided_ddim.sample(source, noise, settings, steps=STEPS)
    return latents, counted[0]


@pytest.mark.parametrize("process", ["drag", "variations"])
def test_edit_only_graph_gives_the_whole_batch_result(world, process, monkeypatch):
    settings = drag_settings(world) if process == "drag" else variation_settings(world)
    edits = len(settings.reference_of) - 1
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(1 + edits, 3, 32, 32, generator=generator)
    if process == "drag":
        noise = noise[:1].expand(2, -1, -1, -1)
    whole, whole_rows = sample_counting_graph_rows(world, noise, settings, monkeypatch, whole_batch=True)
    edit_only, edit_rows = sample_counting_graph_rows(world, noise, settings, monkeypatch, whole_batch=False)

    guided_steps = len([i for i in guided_ddim.guided_window(settings, STEPS) if i % settings.guide_every == 0])
    assert whole_rows == guided_steps * settings.recurrent_steps * (1 + edits)
    assert edit_rows == guided_steps * settings.recurrent_steps * edits
    unguided = guided_ddim.sample(world.source, noise, None, steps=STEPS)
    moved = (whole[1:] - unguided[1:]).norm()
    assert moved > 0.05 * unguided[1:].norm()  # the guidance did move the edits
    assert (edit_only - whole).norm() <= 1e-5 * whole.norm()
    assert torch.allclose(edit_only[0], unguided[0], rtol=0, atol=1e-5)  # the reference: sampled as unguided
