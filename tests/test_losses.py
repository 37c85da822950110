"""Each loss against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from readout_core import LossInputError
from readout_core.losses import (
    appearance_distance,
    appearance_loss,
    correspondence_loss,
    sparse_mse_loss,
    spatial_guidance_loss,
    symmetric_correspondence_loss,
    triplet_hinge_loss,
)
from readout_core.value_ranges import renormalize


def pixels(*vectors, height=1) -> torch.Tensor:
    """Feature map [1, C, height, W] from per-pixel channel vectors in row-major order."""
    data = torch.tensor(vectors, dtype=torch.float64)  # [H*W, C]
    width = len(vectors) // height
    return data.T.reshape(1, -1, height, width)


def test_renormalize():
    assert renormalize(torch.tensor(0.0), (-1, 1), (0, 10)).item() == 5.0
    assert renormalize(torch.tensor(-0.5), (-0.5, 0.5), (-2, 2)).item() == -2.0


def test_spatial_loss_maps_ranges_then_mse():
    prediction = torch.tensor([[[[0.5, -0.5], [0.0, 0.0]]]], dtype=torch.float64)
    control = torch.full((1, 1, 1, 1), 0.5, dtype=torch.float64)
    # v -> 4v maps (-0.5, 0.5) to (-2, 2): prediction (2, -2, 0, 0), control 2 -> squares (0, 16, 4, 4)
    loss = spatial_guidance_loss(prediction, control, (-0.5, 0.5), (-2.0, 2.0))
    assert loss.item() == pytest.approx(6.0)
    # latent range given as tensors, as taken from x_t.min()/max()
    loss_t = spatial_guidance_loss(prediction, control, (-0.5, 0.5), (torch.tensor(-2.0), torch.tensor(2.0)))
    assert loss_t.item() == pytest.approx(6.0)


def test_spatial_loss_resizes_control_with_nearest_and_broadcasts_batch():
    control = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4) / 16  # nearest picks 0, 2, 8, 10
    prediction = torch.zeros(2, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    loss = spatial_guidance_loss(prediction, control, (0, 1), (0, 1))
    picked = torch.tensor([0, 2, 8, 10], dtype=torch.float64) / 16
    assert loss.item() == pytest.approx((picked ** 2).mean().item())
    loss.backward()
    assert prediction.grad.shape == (2, 1, 2, 2)


def test_spatial_loss_errors():
    with pytest.raises(LossInputError, match="target has 1 channels but the head outputs 3"):
        spatial_guidance_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2), (0, 1), (0, 1))
    with pytest.raises(LossInputError, match=r"target batch \(3\) must be 1 or match the latent batch \(2\)"):
        spatial_guidance_loss(torch.zeros(2, 3, 2, 2), torch.zeros(3, 3, 2, 2), (0, 1), (0, 1))


def test_appearance_loss_values():
    generated = pixels((1, 0), (0, 1))
    reference = pixels((1, 0), (1, 0))
    assert appearance_loss(generated, reference).item() == pytest.approx(0.5)  # (0 + 1) / 2
    assert appearance_loss(generated, reference, latent_range=(-1.0, 2.0)).item() == pytest.approx(4.5)
    # pooled: mean (0.5, 0.5) vs (1, 0) -> 1 - 1/sqrt(2)
    assert appearance_loss(generated, reference, pooled=True).item() == pytest.approx(1 - 1 / math.sqrt(2))


def test_appearance_loss_box_crops_both_maps():
    generated = pixels((1, 0), (0, 1))
    reference = pixels((1, 0), (0, 1))
    left, right, whole = (0, 0, 1, 1), (1, 0, 2, 1), (0, 0, 2, 1)
    assert appearance_loss(generated, reference).item() == pytest.approx(0.0)
    # reference crop = left pixel (1, 0) stretched; generated whole: pixels (1,0),(0,1) -> (0 + 1) / 2
    assert appearance_loss(generated, reference, boxes=(left, whole)).item() == pytest.approx(0.5)
    # reference left (1, 0) vs generated right (0, 1): orthogonal everywhere
    assert appearance_loss(generated, reference, boxes=(left, right)).item() == pytest.approx(1.0)
    with pytest.raises(LossInputError, match=r"Box \(0, 0, 3, 1\)"):
        appearance_loss(generated, reference, boxes=((0, 0, 3, 1), whole))


def test_correspondence_loss_value_drops_outside_pairs_and_truncates():
    # 2x2 maps, C = 2. Reference at source (0, 0) = (1, 0).
    reference = pixels((1, 0), (0, 1), (0, 1), (0, 1), height=2)
    generated = pixels((0, 1), (0, 1), (0, 1), (1, 0), height=2)  # content moved to (1, 1)
    source = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, -3.0]])
    target = torch.tensor([[1.7, 1.2], [0.0, 0.0], [1.0, 1.0]])
    # only pair 0 is inside: S(ref src, gen dst) = 1, S(ref src, gen src) = (0 + 1) / 2
    loss = correspondence_loss(generated, reference, source, target)
    assert loss.item() == pytest.approx(-0.5 * 1 + 0.5 * 0.5)
    # a ghost left at the old place raises the loss
    ghosted = pixels((1, 0), (0, 1), (0, 1), (1, 0), height=2)
    assert correspondence_loss(ghosted, reference, source, target).item() == pytest.approx(-0.5 + 0.5)


def test_correspondence_loss_gradient_and_degenerate_inputs():
    reference = torch.randn(1, 8, 4, 4, dtype=torch.float64)
    generated = torch.randn(1, 8, 4, 4, dtype=torch.float64, requires_grad=True)
    loss = correspondence_loss(generated, reference, torch.tensor([[9.0, 9.0]]), torch.tensor([[0.0, 0.0]]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(generated.grad, torch.zeros_like(generated))
    with pytest.raises(LossInputError, match="2 source points but 1 target points"):
        correspondence_loss(generated, reference, torch.zeros(2, 2), torch.zeros(1, 2))


def test_sparse_mse_weighs_background_and_foreground_equally():
    target = torch.tensor([-0.5, -0.5, -0.5, 0.5])
    prediction = torch.tensor([-0.5, -0.5, 0.5, 0.5])
    # background squares (0, 0, 1) -> 1/3; foreground (0) -> 0; mean of the two = 1/6
    assert sparse_mse_loss(prediction, target, -0.5).item() == pytest.approx(1 / 6)
    # all background: plain mean of squares (0, 0, 1, 1)
    assert sparse_mse_loss(prediction, torch.full((4,), -0.5), -0.5).item() == pytest.approx(0.5)
    with pytest.raises(LossInputError, match="differ in shape"):
        sparse_mse_loss(prediction, target[:2], -0.5)


def test_symmetric_cross_entropy_with_temperature():
    a = pixels((1, 0), (0, 1))
    b = pixels((0, 1), (1, 0))
    matched = symmetric_correspondence_loss(a, b, torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    wrong = symmetric_correspondence_loss(a, b, torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 0.0]]))
    scale = 1 / 0.07
    assert matched.item() == pytest.approx(math.log1p(math.exp(-scale)), rel=1e-6)
    assert wrong.item() == pytest.approx(scale + math.log1p(math.exp(-scale)), rel=1e-9)
    # points are clipped to the map and rounded: (0.4, 7.0) -> (0, 1)
    clipped = symmetric_correspondence_loss(a, b, torch.tensor([[0.0, 0.0]]), torch.tensor([[0.4, 7.0]]))
    assert clipped.item() == pytest.approx(matched.item())


def test_triplet_hinge_and_distance():
    anchor = pixels((1, 0))
    near, far = pixels((1, 0)), pixels((0, 1))
    assert appearance_distance(anchor, pixels((1, 1))).item() == pytest.approx(1 - 1 / math.sqrt(2))
    assert triplet_hinge_loss(anchor, near, far).item() == 0.0  # 0.5 + 0 - 1 < 0
    assert triplet_hinge_loss(anchor, far, near).item() == pytest.approx(1.5)  # 0.5 + 1 - 0
    batch = triplet_hinge_loss(torch.cat([anchor, anchor]), torch.cat([near, far]), torch.cat([far, near]))
    assert batch.item() == pytest.approx(0.75)
