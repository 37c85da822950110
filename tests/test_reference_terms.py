"""Appearance and correspondence terms in `guidance_loss`: reference pairing, the released
losses per edit, gradients only into the edits, and the errors."""

from __future__ import annotations

import pytest
import torch

from readout_core import HeadInfo, ReadoutError, ReadoutHead
from readout_core.drag_points import parse_drag_points
from readout_core.guidance import (
    AppearanceTerm,
    CorrespondenceTerm,
    GuidanceSettings,
    GuidanceTerm,
    guidance_loss,
    latent_ranges,
    reference_layout,
)
from readout_core.losses import appearance_loss, correspondence_loss

DIMS = (16, 16, 8)


def relative_head(kind: str, seed: int) -> ReadoutHead:
    torch.manual_seed(seed)
    head = ReadoutHead(HeadInfo(kind=kind, family="sd15", dims=DIMS, projection_dim=16, emb_dim=8, num_groups=4))
    with torch.no_grad():
        head.mixing_weights.normal_()
    return head.eval().requires_grad_(False)


def spatial_head(seed: int) -> ReadoutHead:
    torch.manual_seed(seed)
    info = HeadInfo(kind="spatial", family="sd15", dims=DIMS, projection_dim=16, emb_dim=8, output_channels=3, num_groups=4,
                    control_type="depth", control_range=(-1.0, 1.0))
    return ReadoutHead(info).eval().requires_grad_(False)


def world(batch: int = 3):
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(batch, sum(DIMS), 8, 8, generator=gen, dtype=torch.float32, requires_grad=True)
    emb = torch.randn(batch, 8, generator=gen, dtype=torch.float32)
    latent = torch.randn(batch, 4, 8, 8, generator=gen, dtype=torch.float32)
    return features, emb, latent


POINTS = parse_drag_points("[[[8, 16], [40, 16]], [[24, 48], [24, 8]]]", (64, 64))


def test_each_edit_gets_the_released_losses_against_its_reference():
    features, emb, latent = world()
    appearance, correspondence = relative_head("appearance", 1), relative_head("correspondence", 2)
    terms = [AppearanceTerm(appearance, weight=0.7), CorrespondenceTerm(correspondence, POINTS, weight=1.3)]
    total, per_sample = guidance_loss(terms, [features], emb, latent, reference_layout(2))
    app = appearance(features, emb)
    corr = correspondence(features, None)  # correspondence heads run without the timestep embedding
    ranges = latent_ranges(latent)
    source, target = POINTS.latent_points((8, 8))
    expected = [0.0] + [
        0.7 * appearance_loss(app[i:i + 1], app[0:1], ranges[i]).item()
        + 1.3 * correspondence_loss(corr[i:i + 1], corr[0:1], source, target).item()
        for i in (1, 2)
    ]
    assert per_sample.tolist() == pytest.approx(expected, rel=1e-5)
    assert total.item() == pytest.approx(sum(expected), rel=1e-5)
    assert expected[1] != expected[2]


def test_gradients_reach_the_edits_only():
    features, emb, latent = world()
    terms = [AppearanceTerm(relative_head("appearance", 1)), CorrespondenceTerm(relative_head("correspondence", 2), POINTS)]
    total, _ = guidance_loss(terms, [features, features * 0.5], emb, latent, reference_layout(2))
    (grad,) = torch.autograd.grad(total, features)
    assert grad[0].abs().max().item() == 0.0
    assert grad[1].abs().max().item() > 0 and grad[2].abs().max().item() > 0


def test_the_heads_keep_activations_for_the_edits_only():
    features, emb, latent = world()
    heads = [relative_head("appearance", 1), relative_head("correspondence", 2)]
    calls = []
    for head in heads:
        head.register_forward_hook(lambda _m, inputs, _out: calls.append((inputs[0].shape[0], torch.is_grad_enabled())))
    terms = [AppearanceTerm(heads[0]), CorrespondenceTerm(heads[1], POINTS)]
    guidance_loss(terms, [features, features * 0.5], emb, latent, reference_layout(2))
    # per branch and term: the reference without autograd, then both edits with it
    assert calls == [(1, False), (2, True)] * 4


def test_identical_edit_and_reference_are_at_the_appearance_optimum():
    features, emb, latent = world(2)
    same = features.detach()[:1].repeat(2, 1, 1, 1)
    same_emb = emb[:1].repeat(2, 1)  # one timestep for the whole batch, as in sampling
    _, per_sample = guidance_loss([AppearanceTerm(relative_head("appearance", 1))], [same], same_emb, latent,
                                  reference_layout(1))
    assert per_sample[1].item() == pytest.approx(0.0, abs=1e-6)


def test_spatial_terms_leave_the_reference_unguided():
    features, emb, latent = world()
    term = GuidanceTerm(spatial_head(3), target=torch.zeros(1, 3, 8, 8, dtype=torch.float32), weight=0.5)
    _, alone = guidance_loss([term], [features], emb, latent)
    _, paired = guidance_loss([term], [features], emb, latent, reference_layout(2))
    assert paired[0].item() == 0.0 and alone[0].item() > 0
    assert paired[1:].tolist() == pytest.approx(alone[1:].tolist(), rel=1e-5)


def test_identity_crop_boxes_compare_the_face_regions():
    features, emb, latent = world(2)
    head = relative_head("identity", 4)
    box = (16.0, 8.0, 40.0, 48.0)  # pixels -> feature cells x 2..5, y 1..6
    _, per_sample = guidance_loss([AppearanceTerm(head, reference_box=box, generated_box=box)], [features], emb,
                                  latent, reference_layout(1))
    readout = head(features, emb)
    expected = appearance_loss(readout[1:], readout[:1], latent_ranges(latent)[1], boxes=((2, 1, 5, 6), (2, 1, 5, 6)))
    assert per_sample[1].item() == pytest.approx(expected.item(), rel=1e-5)


def test_reference_terms_need_a_reference_layout():
    head = relative_head("appearance", 1)
    with pytest.raises(ReadoutError, match="Readout Reference Sampler"):
        GuidanceSettings(terms=[AppearanceTerm(head)])
    features, emb, latent = world()
    with pytest.raises(ReadoutError, match="Readout Reference Sampler"):
        guidance_loss([AppearanceTerm(head)], [features], emb, latent)
    with pytest.raises(ReadoutError, match="covers 2 samples but the latent batch is 3"):
        guidance_loss([AppearanceTerm(head)], [features], emb, latent, reference_layout(1))
    with pytest.raises(ReadoutError, match="not a reference sample"):
        guidance_loss([AppearanceTerm(head)], [features], emb, latent, (None, 2, 0))
    GuidanceSettings(terms=[AppearanceTerm(head)], reference_of=reference_layout(3))
    with pytest.raises(ReadoutError, match="guide_every must be at least 1"):
        GuidanceSettings(terms=[AppearanceTerm(head)], reference_of=reference_layout(1), guide_every=0)


def test_terms_check_their_heads():
    appearance, correspondence = relative_head("appearance", 1), relative_head("correspondence", 2)
    with pytest.raises(ReadoutError, match="needs a correspondence head"):
        CorrespondenceTerm(appearance, POINTS)
    with pytest.raises(ReadoutError, match="appearance or identity head"):
        AppearanceTerm(correspondence)
    with pytest.raises(ReadoutError, match="both crop boxes"):
        AppearanceTerm(appearance, reference_box=(0, 0, 8, 8))
    with pytest.raises(ReadoutError, match="at least one edited sample"):
        reference_layout(0)
    empty = parse_drag_points("[[[1, 1], [900, 1]]]", (64, 64))
    with pytest.raises(ReadoutError, match="at least one handle"):
        CorrespondenceTerm(correspondence, empty)
