"""Rendering readouts as images."""

from __future__ import annotations

import torch

from readout_core import HeadInfo
from readout_core.heads.preview import render_readout

DIMS = (64, 32)


def test_spatial_readout_maps_the_control_range_to_0_1():
    info = HeadInfo(kind="spatial", family="sd15", dims=DIMS, projection_dim=128, output_channels=3,
                    control_type="pose", control_range=(-0.5, 0.5))
    readout = torch.tensor([-0.5, 0.0, 0.5]).reshape(1, 3, 1, 1).expand(2, 3, 4, 5)
    image = render_readout(readout, info)
    assert image.shape == (2, 4, 5, 3)
    assert torch.allclose(image[0, 0, 0], torch.tensor([0.0, 0.5, 1.0]))


def test_relative_readout_is_a_three_component_pca_in_0_1():
    info = HeadInfo(kind="appearance", family="sd15", dims=DIMS, projection_dim=128)
    features = torch.zeros(1, 128, 4, 4)
    features[:, :, :, :2] = 1.0  # two regions with different features
    image = render_readout(features + 0.01 * torch.randn_like(features), info)
    assert image.shape == (1, 4, 4, 3)
    assert image.min() >= 0 and image.max() <= 1
    first = image[0, :, :, 0]
    # the first component separates the two regions
    assert (first[:, :2].mean() - first[:, 2:].mean()).abs() > 0.8


def test_keypoint_readout_colours_the_strongest_joint():
    info = HeadInfo(kind="keypoint", family="sd15", dims=DIMS, projection_dim=128, output_channels=18,
                    output_activation=False, control_type="pose_keypoint", control_range=(0.0, 1.0))
    heatmaps = torch.zeros(1, 18, 3, 3)
    heatmaps[0, 0, 1, 1] = 1.0  # joint 0 (red) in the centre
    heatmaps[0, 6, 0, 0] = 0.5  # joint 6 (green-ish) at half strength
    image = render_readout(heatmaps, info)
    assert torch.allclose(image[0, 1, 1], torch.tensor([1.0, 0.0, 0.0]))
    assert image[0, 0, 0].max() == 0.5 and image[0, 2, 2].max() == 0
