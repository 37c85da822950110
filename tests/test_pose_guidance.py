"""Keypoint heads: target heatmaps as released, the masked loss, reading a pose back, and the
keypoint guidance term (alone, chained, on a tiny U-Net)."""

from __future__ import annotations

import math

import pytest
import torch

from readout_core import HeadInfo, ReadoutError, ReadoutHead
from readout_core.diffusers_adapter.feature_modules import diffusers_feature_modules, diffusers_head_embedding, diffusers_layout
from readout_core.features import DecoderFeatureCapture
from readout_core.guidance import GuidanceTerm, KeypointTerm, guidance_loss, latent_ranges
from readout_core.losses import keypoint_guidance_loss
from readout_core.pose.heatmaps import heatmap_sigma, pose_heatmaps, read_pose
from readout_core.pose.keypoints import JOINTS, PoseFrame

DIMS = (16, 16, 8)


def pose(joints: dict[int, tuple[float, float]], size=(512, 512), *more: dict[int, tuple[float, float]]) -> PoseFrame:
    """A frame from pixel joints, one dict per person."""
    people = torch.zeros(1 + len(more), JOINTS, 3)
    for index, person in enumerate((joints, *more)):
        for joint, (x, y) in person.items():
            people[index, joint] = torch.tensor([x / size[0], y / size[1], 1.0])
    return PoseFrame(width=size[0], height=size[1], people=people)


def keypoint_head(dims=DIMS, seed: int = 0, emb_dim: int = 8, projection_dim: int = 16, groups: int = 4) -> ReadoutHead:
    torch.manual_seed(seed)
    info = HeadInfo(kind="keypoint", family="sd15", dims=dims, projection_dim=projection_dim, emb_dim=emb_dim,
                    output_channels=JOINTS, output_activation=False, control_type="pose_keypoint",
                    control_range=(0.0, 1.0), num_groups=groups)
    head = ReadoutHead(info)
    with torch.no_grad():
        head.mixing_weights.normal_()
    return head.eval().requires_grad_(False)


def test_heatmaps_follow_the_released_recipe():
    assert heatmap_sigma((64, 64)) == 4 and heatmap_sigma((128, 128)) == 8 and heatmap_sigma((8, 8)) == 1
    # a joint at the centre of latent cell (10, 20) of a 512 px image: pixel (20·8 + 4, 10·8 + 4)
    heatmaps, mask = pose_heatmaps(pose({3: (164.0, 84.0)}), (64, 64))
    assert heatmaps.shape == (JOINTS, 64, 64) and mask.tolist() == [j == 3 for j in range(JOINTS)]
    peak = int(heatmaps[3].argmax())
    assert divmod(peak, 64) == (10, 20) and heatmaps[3, 10, 20] == pytest.approx(1.0)
    assert heatmaps[3, 10, 24] == pytest.approx(math.exp(-0.5), abs=1e-6)  # one σ = 4 cells away
    assert heatmaps[3, 14, 24] == pytest.approx(math.exp(-1.0), abs=1e-6)
    assert heatmaps[torch.arange(JOINTS) != 3].abs().max() == 0  # missing joints: all zero
    sdxl, _ = pose_heatmaps(pose({3: (164.0, 84.0)}, (1024, 1024)), (128, 128))
    assert sdxl[3, 10, 20] == pytest.approx(1.0) and sdxl[3, 10, 28] == pytest.approx(math.exp(-0.5), abs=1e-6)


def test_people_combine_by_maximum_and_any_person_makes_a_joint_present():
    one, two = {0: (100.0, 100.0)}, {0: (132.0, 100.0), 5: (300.0, 300.0)}
    together, mask = pose_heatmaps(pose(one, (512, 512), two), (64, 64))
    first, _ = pose_heatmaps(pose(one), (64, 64))
    second, _ = pose_heatmaps(pose(two), (64, 64))
    assert torch.equal(together, torch.maximum(first, second))
    assert mask.nonzero().flatten().tolist() == [0, 5]
    nobody, nobody_mask = pose_heatmaps(PoseFrame(width=64, height=64, people=torch.zeros(0, JOINTS, 3)), (8, 8))
    assert nobody.abs().max() == 0 and not nobody_mask.any() and nobody_mask.shape == (JOINTS,)


def test_missing_joints_add_no_loss_and_no_gradient():
    target, mask = pose_heatmaps(pose({0: (100.0, 100.0), 7: (400.0, 200.0)}), (16, 16))
    prediction = torch.rand(1, JOINTS, 16, 16, requires_grad=True)
    loss = keypoint_guidance_loss(prediction, target[None], mask[None], (-2.0, 1.0))
    expected = ((prediction[0, [0, 7]] - target[[0, 7]]) ** 2).mean() * 9.0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    (gradient,) = torch.autograd.grad(loss, prediction)
    assert gradient[0, ~mask].abs().max() == 0 and gradient[0, mask].abs().min() > 0
    changed = prediction.detach().clone()
    changed[0, 3] += 5.0  # a missing joint's readout may be anything
    assert keypoint_guidance_loss(changed, target[None], mask[None], (-2.0, 1.0)).item() == pytest.approx(loss.item())
    nothing = keypoint_guidance_loss(prediction, target[None], torch.zeros(1, JOINTS, dtype=torch.bool), (0.0, 1.0))
    assert nothing.item() == 0 and nothing.requires_grad


def test_the_reader_recovers_known_joints_within_a_pixel():
    generator = torch.Generator().manual_seed(0)
    joints = {j: tuple((torch.rand(2, generator=generator) * 440 + 36).tolist()) for j in range(JOINTS) if j != 9}
    heatmaps, _ = pose_heatmaps(pose(joints), (64, 64))
    heatmaps[9] = 0.05  # below the released threshold 0.1: missing
    (frame,) = read_pose(heatmaps[None], (512, 512))
    assert (frame.width, frame.height) == (512, 512) and frame.people.shape == (1, JOINTS, 3)
    read = frame.people[0]
    for joint, (x, y) in joints.items():
        assert abs(read[joint, 0].item() * 512 - x) < 1.0 and abs(read[joint, 1].item() * 512 - y) < 1.0
        assert read[joint, 2].item() > 0.9
    assert read[9].tolist() == [0.0, 0.0, 0.0]
    (empty,) = read_pose(torch.zeros(1, JOINTS, 8, 8), (64, 64))
    assert empty.people.shape == (0, JOINTS, 3)
    with pytest.raises(ReadoutError, match="18 joint heatmaps"):
        read_pose(torch.zeros(1, 3, 8, 8), (64, 64))


def test_keypoint_term_chains_with_spatial_terms_and_picks_each_latents_pose():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(2, sum(DIMS), 8, 8, generator=generator)
    emb = torch.randn(2, 8, generator=generator)
    latent = torch.randn(2, 4, 8, 8, generator=generator)
    head = keypoint_head()
    poses = (pose({0: (10.0, 20.0)}, (64, 64)), pose({4: (50.0, 40.0), 6: (5.0, 5.0)}, (64, 64)))
    term = KeypointTerm(head, poses, weight=0.7)
    spatial_info = HeadInfo(kind="spatial", family="sd15", dims=DIMS, projection_dim=16, emb_dim=8, output_channels=3,
                            num_groups=4, control_type="depth", control_range=(-1.0, 1.0))
    torch.manual_seed(2)
    spatial = GuidanceTerm(ReadoutHead(spatial_info).eval(), target=torch.zeros(1, 3, 8, 8), weight=0.5)
    total, per_sample = guidance_loss([term, spatial], [features], emb, latent)
    readout = head(features, emb)
    ranges = latent_ranges(latent)
    expected = []
    for index in range(2):
        heatmaps, mask = pose_heatmaps(poses[index], (8, 8))
        keypoint = keypoint_guidance_loss(readout[index][None], heatmaps[None], mask[None], ranges[index])
        expected.append(0.7 * keypoint + 0.5 * spatial.sample_loss(spatial.head(features, emb), index, None, ranges[index]))
    assert per_sample.tolist() == pytest.approx([e.item() for e in expected], rel=1e-5)
    assert total.item() == pytest.approx(sum(expected).item(), rel=1e-5)
    with pytest.raises(ReadoutError, match="2 poses but the latent batch has 3"):
        guidance_loss([term], [torch.cat([features, features[:1]])], torch.cat([emb, emb[:1]]),
                      torch.cat([latent, latent[:1]]))


def test_keypoint_term_checks_its_head_and_pose():
    spatial_info = HeadInfo(kind="spatial", family="sd15", dims=DIMS, projection_dim=16, emb_dim=8, output_channels=3,
                            num_groups=4, control_type="pose", control_range=(-0.5, 0.5))
    with pytest.raises(ReadoutError, match="needs a keypoint head.*Spatial Target"):
        KeypointTerm(ReadoutHead(spatial_info), (pose({0: (1.0, 1.0)}),))
    with pytest.raises(ReadoutError, match="no joints"):
        KeypointTerm(keypoint_head(), (pose({}),))
    with pytest.raises(ReadoutError, match="at least one pose"):
        KeypointTerm(keypoint_head(), ())


def test_keypoint_guidance_moves_a_tiny_unets_readout_toward_the_pose():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=8, norm_num_groups=8,
        block_out_channels=(16, 16, 32, 32), down_block_types=("DownBlock2D",) * 4, up_block_types=("UpBlock2D",) * 4,
    ).eval().requires_grad_(False)
    head = keypoint_head(diffusers_layout(unet, "sd15").dims, emb_dim=64, projection_dim=32, groups=8)
    term = KeypointTerm(head, (pose({0: (32.0, 32.0), 1: (64.0, 48.0), 4: (96.0, 96.0)}, (128, 128)),))
    heatmaps, mask = term.targets((16, 16))
    t = torch.tensor([20])

    def readout_and_loss(latent):
        with DecoderFeatureCapture(diffusers_feature_modules(unet)) as capture:
            unet(latent, t, encoder_hidden_states=torch.zeros(1, 1, 8))
        features, emb = capture.collected((16, 16)), diffusers_head_embedding(unet, t, 1)
        readout_loss = keypoint_guidance_loss(head(features, emb), heatmaps, mask, (0.0, 1.0))
        return readout_loss.item(), guidance_loss([term], [features], emb, latent)[0]

    def guided(direction: float, steps: int = 8, step_size: float = 0.1) -> float:
        x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
        for _ in range(steps):  # the official rule: a fresh Adam step, i.e. a sign step, per guided step
            latent = x.requires_grad_(True)
            (gradient,) = torch.autograd.grad(readout_and_loss(latent)[1], latent)
            x = (latent - direction * step_size * gradient.sign()).detach()
        return readout_and_loss(x)[0]

    start = readout_and_loss(torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)))[0]
    toward, away = guided(+1.0), guided(-1.0)
    print(f"readout loss: start {start:.5f}, guided {toward:.5f}, guided the other way {away:.5f}")
    assert toward < 0.97 * start < away
