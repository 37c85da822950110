"""Pose keypoints in the host: Pose Keypoints and Readout Pose nodes, keypoint guidance in Apply
Readout Guidance, the Guided KSampler and the Reference Sampler, and its efficacy.

The tiny U-Net is made a usable denoiser (`make_gaussian_denoiser`). Most tests use a random
keypoint head, whose target pose is the one Readout Pose reads from another seed's sample. A
random head cannot draw the target's Gaussians, so guidance lowers its loss by only about 8 %;
the efficacy test therefore trains a tiny keypoint head first (about 40 s): four joints are
marked in the latents as Gaussian blobs, one latent channel each, and the head learns their
heatmaps from the U-Net's decoder features, as the released heads learnt joints from images.
Guided to a new pose, generations must at least halve that head's keypoint loss and put the
joints Readout Pose reads within a latent cell of the target.
"""

from __future__ import annotations

import json

import pytest
import torch

from host_support import require_host

HOST = require_host()

import comfy.sample  # noqa: E402
from tiny_host import conds, make_gaussian_denoiser, random_head, run_node, tiny_host_model  # noqa: E402

from readout_core import HeadInfo, ReadoutError, ReadoutHead  # noqa: E402
from readout_core.guidance import GuidanceSettings  # noqa: E402
from readout_core.host_adapter import HostGuidance, host_decoder_layout, latent_features, readout_of_latent  # noqa: E402
from readout_core.losses import keypoint_guidance_loss  # noqa: E402
from readout_core.pose.heatmaps import pose_heatmaps, read_pose  # noqa: E402
from readout_core.pose.keypoints import JOINTS, PoseFrame, parse_pose_keypoint, pose_keypoint_text  # noqa: E402

STEPS = 12
READ_PERCENT = 0.95


def keypoint_head(patcher, seed: int) -> ReadoutHead:
    return random_head(host_decoder_layout(patcher.model.diffusion_model), "keypoint", seed, output_channels=JOINTS,
                       output_activation=False, control_type="pose_keypoint", control_range=(0.0, 1.0))


@pytest.fixture(scope="module")
def world(pack):
    model = tiny_host_model("sd15", seed=0)
    make_gaussian_denoiser(model, unet_share=0.1)
    positive, negative = conds("sd15")
    world = {"pack": pack, "model": model, "head": keypoint_head(model, seed=4), "positive": positive,
             "negative": negative}
    with torch.inference_mode():
        other = sample(world, model, seed=99)
        world["pose"], _ = run_node(pack["ReadoutGuidance_ReadoutPose"], model=model, head=world["head"],
                                    latent={"samples": other}, conditioning=positive, threshold=0.0,
                                    percent=READ_PERCENT)
    return world


def sample(world, model, seed: int, sampler: str = "euler") -> torch.Tensor:
    latent = torch.zeros(1, 4, 16, 16)
    with torch.inference_mode():
        return comfy.sample.sample(model, comfy.sample.prepare_noise(latent, seed), STEPS, 3.0, sampler, "normal",
                                   world["positive"], world["negative"], latent, seed=seed, disable_pbar=True)


def keypoint_loss(world, samples: torch.Tensor, term) -> float:
    """The term's masked heatmap loss (unscaled) of the head's readout of finished latents."""
    with torch.inference_mode():
        readout = readout_of_latent(world["model"], world["head"], {"samples": samples}, world["positive"],
                                    READ_PERCENT)
    heatmaps, masks = term.targets(tuple(readout.shape[-2:]))
    return keypoint_guidance_loss(readout, heatmaps, masks, (0.0, 1.0)).item()


def pose_terms(world, **inputs):
    with torch.inference_mode():
        (terms,) = run_node(world["pack"]["ReadoutGuidance_PoseKeypoints"], head=world["head"], weight=1.0, **inputs)
    return terms


def test_readout_pose_reads_the_heads_peaks_and_draws_the_skeleton(world):
    latent = {"samples": torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))}
    with torch.inference_mode():
        pose, skeleton = run_node(world["pack"]["ReadoutGuidance_ReadoutPose"], model=world["model"],
                                  head=world["head"], latent=latent, conditioning=world["positive"], threshold=0.0,
                                  percent=READ_PERCENT)
    assert skeleton.shape == (2, 128, 128, 3) and skeleton.max() > 0
    frames = parse_pose_keypoint(pose)
    assert [(f.width, f.height) for f in frames] == [(128, 128)] * 2
    with torch.inference_mode():
        readout = readout_of_latent(world["model"], world["head"], latent, world["positive"], READ_PERCENT)
    expected = read_pose(readout, (128, 128), threshold=0.0)
    for index, (frame, wanted) in enumerate(zip(frames, expected)):
        assert torch.allclose(frame.people, wanted.people, atol=1e-5)
        present = frame.present()[0]
        assert present.tolist() == (readout[index].amax(dim=(-2, -1)) > 0).tolist() and present.any()
        # each read joint sits on its heatmap's maximum (within half a latent cell = 4 px)
        for joint in present.nonzero().flatten().tolist():
            y, x = divmod(int(readout[index, joint].argmax()), 16)
            assert abs(frame.people[0, joint, 0].item() * 128 - (x + 0.5) * 8) <= 4.0
            assert abs(frame.people[0, joint, 1].item() * 128 - (y + 0.5) * 8) <= 4.0


def test_readout_pose_reads_clean_latents_by_default(world):
    latent = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))}
    with torch.inference_mode():
        pose, skeleton = run_node(world["pack"]["ReadoutGuidance_ReadoutPose"], model=world["model"],
                                  head=world["head"], latent=latent, conditioning=world["positive"], threshold=0.0,
                                  percent=1.0)
        clean = readout_of_latent(world["model"], world["head"], latent, world["positive"], 1.0)
    (frame,) = parse_pose_keypoint(pose)
    assert torch.isfinite(clean).all() and skeleton.shape == (1, 128, 128, 3)
    assert torch.allclose(frame.people, read_pose(clean, (128, 128), threshold=0.0)[0].people, atol=1e-5)


JOINT_CHANNELS = {0: 0, 1: 1, 2: 2, 5: 3}
"""The trained head's joints (nose, neck, right and left shoulder) and the latent channel marking each."""


def four_joint_frame(points: dict[int, tuple[float, float]]) -> PoseFrame:
    """One person with the given joints (fractions of a 128 px image); the others missing."""
    people = torch.zeros(1, JOINTS, 3)
    for joint, (x, y) in points.items():
        people[0, joint] = torch.tensor([x, y, 1.0])
    return PoseFrame(width=128, height=128, people=people)


def marked_latents(count: int, generator: torch.Generator) -> tuple[torch.Tensor, list[PoseFrame]]:
    """Noise latents with each joint marked by a blob (peak 3, σ 1 cell) in its channel, and their poses."""
    latents = torch.randn(count, 4, 16, 16, generator=generator)
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    frames = []
    for latent in latents:
        points = {}
        for joint, channel in JOINT_CHANNELS.items():
            cx, cy = (torch.rand(2, generator=generator) * 10 + 3).tolist()
            latent[channel] += 3.0 * torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / 2)
            points[joint] = ((cx + 0.5) / 16, (cy + 0.5) / 16)
        frames.append(four_joint_frame(points))
    return latents, frames


@pytest.fixture(scope="module")
def trained_head(world) -> ReadoutHead:
    """A tiny keypoint head trained on marked latents, at three noise levels (the heatmaps' loss)."""
    generator = torch.Generator().manual_seed(0)
    latents, frames = marked_latents(32, generator)
    features, embeddings = [], []
    for percent in (0.5, 0.8, READ_PERCENT):
        with torch.inference_mode():
            feature, embedding = latent_features(world["model"], {"samples": latents}, world["positive"], percent)
        features.append(feature.clone())
        embeddings.append(embedding.clone())
    features, embeddings = torch.cat(features), torch.cat(embeddings)
    rendered = [pose_heatmaps(frame, (16, 16)) for frame in frames]
    heatmaps = torch.stack([r[0] for r in rendered]).repeat(3, 1, 1, 1)
    masks = torch.stack([r[1] for r in rendered]).repeat(3, 1)
    head = keypoint_head(world["model"], seed=4).train().requires_grad_(True)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(120):
        batch = torch.randint(0, features.shape[0], (16,), generator=generator)
        loss = keypoint_guidance_loss(head(features[batch], embeddings[batch]), heatmaps[batch], masks[batch],
                                      (0.0, 1.0))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    print(f"trained keypoint head: loss {loss.item():.2e}")
    return head.eval().requires_grad_(False)


def test_keypoint_guidance_halves_the_keypoint_loss(world, trained_head):
    world = dict(world, head=trained_head)
    wanted = {0: (0.3, 0.3), 1: (0.7, 0.3), 2: (0.3, 0.7), 5: (0.7, 0.7)}
    pose = four_joint_frame(wanted).as_openpose()
    (term,) = pose_terms(world, pose_text=json.dumps(pose))
    guided = world["model"].clone()
    HostGuidance(GuidanceSettings(rule="official", weight=0.05, recurrent_steps=2, start_percent=0.0,
                                  end_percent=1.0, terms=[term])).install(guided)
    plain, steered = sample(world, world["model"], seed=0), sample(world, guided, seed=0)
    before, after = keypoint_loss(world, plain, term), keypoint_loss(world, steered, term)
    print(f"keypoint loss: unguided {before:.4e}, guided {after:.4e}, ratio {after / before:.2f}")
    assert after <= 0.5 * before
    with torch.inference_mode():
        (read,), _ = run_node(world["pack"]["ReadoutGuidance_ReadoutPose"], model=world["model"], head=trained_head,
                              latent={"samples": steered}, conditioning=world["positive"], threshold=0.1,
                              percent=READ_PERCENT)
    joints = parse_pose_keypoint([read])[0].people[0]
    for joint, (x, y) in wanted.items():  # each joint within a latent cell (8 px of 128) of the target
        assert abs(joints[joint, 0].item() - x) * 128 <= 8 and abs(joints[joint, 1].item() - y) * 128 <= 8, joint


def test_pose_terms_chain_into_the_guided_ksampler_and_the_reference_sampler(world):
    pack, head = world["pack"], world["head"]
    layout = host_decoder_layout(world["model"].model.diffusion_model)
    torch.manual_seed(5)
    appearance = ReadoutHead(HeadInfo(kind="appearance", family=layout.family, dims=layout.dims, projection_dim=128,
                                      emb_dim=128)).eval().requires_grad_(False)
    edited_pose = pose_keypoint_text(parse_pose_keypoint(world["pose"]))
    with torch.inference_mode():
        (terms,) = run_node(pack["ReadoutGuidance_AppearanceReference"], head=appearance, weight=0.5)
        (terms,) = run_node(pack["ReadoutGuidance_PoseKeypoints"], head=head, weight=1.0, pose_text=edited_pose,
                            terms=terms)
        assert [type(t).__name__ for t in terms] == ["AppearanceTerm", "KeypointTerm"]
        common = dict(model=world["model"], seed=0, steps=4, cfg=3.0, sampler_name="euler", scheduler="normal",
                      positive=world["positive"], negative=world["negative"],
                      latent_image={"samples": torch.zeros(1, 4, 16, 16)}, update_rule="official",
                      guidance_weight=0.05, start_percent=0.0, end_percent=1.0)
        edited, reference = run_node(pack["ReadoutGuidance_ReferenceSampler"], preset="custom", reference_cfg=3.0,
                                     terms=terms, edit_start="new noise (variations)", variations=1,
                                     variation_seed=1, **common)
        (keypoint_only,) = run_node(pack["ReadoutGuidance_KSampler"], terms=terms[1:], denoise=1.0, **common)
        plain = sample(world, world["model"], seed=0)
    assert edited["samples"].shape == reference["samples"].shape == (1, 4, 16, 16)
    assert not torch.equal(edited["samples"], reference["samples"])
    assert torch.isfinite(keypoint_only["samples"]).all()
    assert not torch.allclose(keypoint_only["samples"], plain, atol=1e-4)


def test_pose_nodes_say_what_to_change(world):
    pack = world["pack"]
    assert pack["ReadoutGuidance_PoseKeypoints"].validate_inputs(pose_text="{oops") is not True
    assert pack["ReadoutGuidance_PoseKeypoints"].validate_inputs(pose_text="") is True
    with pytest.raises(ReadoutError, match="connect a POSE_KEYPOINT"):
        pose_terms(world)
    with pytest.raises(ReadoutError, match="no joints"):
        pose_terms(world, pose_text='{"people": [], "canvas_width": 64, "canvas_height": 64}')
    spatial = ReadoutHead(HeadInfo(kind="spatial", family="sd15", dims=world["head"].info.dims, projection_dim=128,
                                   emb_dim=128, output_channels=3, control_type="pose", control_range=(-0.5, 0.5)))
    with pytest.raises(ReadoutError, match="needs a keypoint head"):
        run_node(pack["ReadoutGuidance_PoseKeypoints"], head=spatial, weight=1.0, pose_keypoint=world["pose"])
    with pytest.raises(ReadoutError, match="needs a pose keypoint head"):
        run_node(pack["ReadoutGuidance_ReadoutPose"], model=world["model"], head=spatial,
                 latent={"samples": torch.zeros(1, 4, 16, 16)}, conditioning=world["positive"], threshold=0.1,
                 percent=1.0)


def test_pose_nodes_send_the_pose_canvas_its_pose_and_image(world):
    pack = world["pack"]
    image = torch.rand(2, 96, 128, 3, generator=torch.Generator().manual_seed(3))
    edited = json.dumps([{"people": [{"pose_keypoints_2d": [40.0, 30.0, 1.0] + [7.0, 8.0, 0.0] + [0.0] * 48}],
                          "canvas_width": 128, "canvas_height": 96}])
    with torch.inference_mode():
        shown = pack["ReadoutGuidance_PoseKeypoints"].execute(head=world["head"], weight=1.0, pose_text=edited,
                                                              image=image).ui
        plain = pack["ReadoutGuidance_PoseKeypoints"].execute(head=world["head"], weight=1.0,
                                                              pose_keypoint=world["pose"]).ui
        read = pack["ReadoutGuidance_ReadoutPose"].execute(model=world["model"], head=world["head"],
                                                           latent={"samples": torch.zeros(1, 4, 16, 16)},
                                                           conditioning=world["positive"], threshold=0.0,
                                                           percent=1.0).ui
    (used,) = json.loads(shown["openpose_json"][0])
    # the hidden joint's kept place (7, 8, confidence 0) is read as missing: 0, 0, 0
    assert used["people"][0]["pose_keypoints_2d"][:6] == [40.0, 30.0, 1.0, 0.0, 0.0, 0.0]
    assert [entry["type"] for entry in shown["pose_image"]] == ["temp"]  # the first image only
    assert set(plain) == {"openpose_json"}  # no image input: the pose alone
    assert parse_pose_keypoint(plain["openpose_json"][0])[0].people.shape == (1, JOINTS, 3)
    assert parse_pose_keypoint(read["openpose_json"][0])[0].width == 128 and len(read["images"]) == 1
