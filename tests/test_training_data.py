"""Dataset folders → features → a trained head file, with a small diffusers U-Net."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from readout_core import ReadoutError, load_head
from readout_core.diffusers_adapter.feature_source import DiffusersSource
from readout_core.training.feature_extraction import extract, noise_levels, pair_data, spatial_data
from readout_core.diffusers_adapter.feature_modules import diffusers_feature_modules, diffusers_head_embedding
from readout_core.features import DecoderFeatureCapture
from readout_core.training.from_folder import TrainRequest, train_from_folder
from readout_core.tiny_world import model as tiny
from readout_core.tiny_world.datasets import write_pair_dataset, write_spatial_dataset, write_subject_dataset
from readout_core.training.loop import TrainingConfig
from readout_core.training.datasets import crop_points, load_image, point_pairs, spatial_pairs, subject_groups


def random_source(dtype=torch.float32) -> DiffusersSource:
    """The tiny world's U-Net architecture with random weights (no shipped files needed)."""
    torch.manual_seed(0)
    unet = tiny.build_unet().to(dtype).eval().requires_grad_(False)
    return DiffusersSource(unet=unet, family="sd15", scheduler=tiny.scheduler(), context=tiny.context(1),
                           encode_images=tiny.image_to_latent, latent_factor=1, name="random", sdedit_steps=4)


def test_spatial_folder_pairs_by_name_and_says_what_is_missing(tmp_path):
    write_spatial_dataset(tmp_path, 3, seed=0)
    pairs = spatial_pairs(tmp_path)
    assert [(a.name, b.name) for a, b in pairs] == [("0000.png", "0000.png"), ("0001.png", "0001.png"),
                                                   ("0002.png", "0002.png")]
    (tmp_path / "controls" / "0001.png").unlink()
    with pytest.raises(ReadoutError, match="1 images have no control of the same name.*0001.png"):
        spatial_pairs(tmp_path)
    with pytest.raises(ReadoutError, match="needs .*controls"):
        spatial_pairs(tmp_path / "images")
    with pytest.raises(ReadoutError, match="does not exist"):
        spatial_pairs(tmp_path / "nowhere")


def test_subject_and_pair_folders(tmp_path):
    write_subject_dataset(tmp_path / "subjects", subjects=3, per_subject=2, seed=0)
    assert [len(g) for g in subject_groups(tmp_path / "subjects")] == [2, 2, 2]
    with pytest.raises(ReadoutError, match="one sub-folder per subject"):
        subject_groups(tmp_path)
    write_pair_dataset(tmp_path / "pairs", 3, seed=0)
    pairs = point_pairs(tmp_path / "pairs")
    assert len(pairs) == 3 and all(p.points.shape[1] == 4 and len(p.points) >= 1 for p in pairs)
    listing = tmp_path / "pairs" / "pairs.json"
    for text, message in [("{", "not valid JSON"), ("[]", "non-empty list"), ('[{"a": "0000_a.png"}]', "must be"),
                          ('[{"a": "x.png", "b": "0000_b.png", "points": [[1, 2, 3, 4]]}]', "names x.png"),
                          ('[{"a": "0000_a.png", "b": "0000_b.png", "points": []}]', "no points")]:
        listing.write_text(text)
        with pytest.raises(ReadoutError, match=message):
            point_pairs(tmp_path / "pairs")


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ReadoutError, match="Cannot read the image .*bad.png"):
        load_image(tmp_path / "bad.png", 16)


def test_points_follow_the_centre_crop_and_resize(tmp_path):
    array = np.zeros((30, 40, 3), dtype=np.uint8)
    array[10, 25] = 255
    Image.fromarray(array).save(tmp_path / "dot.png")
    image = load_image(tmp_path / "dot.png", 60)
    moved = crop_points(torch.tensor([[25.0, 10.0]]), (40, 30), 60)
    assert moved.tolist() == [[40.0, 20.0]]  # (25 - 5) * 2, 10 * 2
    y, x = np.unravel_index(int(image.sum(0).argmax()), (60, 60))
    assert abs(x - 40.5) <= 1 and abs(y - 20.5) <= 1


def test_extraction_is_the_unets_own_features_at_the_noise_level():
    source = random_source()
    latents = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    timesteps = noise_levels(3, seed=7)
    assert ((timesteps >= 1) & (timesteps <= 999)).all()
    data = extract(source, latents, timesteps, seed=7, batch_size=2)
    assert data.dims == source.dims and len(data) == 3 and all(layer.dtype == torch.float32 for layer in data.layers)
    again = extract(source, latents, timesteps, seed=7, batch_size=3)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(data.layers, again.layers))
    # the same thing by hand for example 1
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(8))[1:2]
    noisy = source.scheduler.add_noise(latents[1:2], noise, timesteps[1:2])
    with torch.no_grad(), DecoderFeatureCapture(diffusers_feature_modules(source.unet)) as capture:
        source.unet(noisy, timesteps[1:2], encoder_hidden_states=tiny.context(1))
    assert torch.allclose(data.features(torch.tensor([1])), capture.collected((32, 32)), atol=1e-5)
    emb = diffusers_head_embedding(source.unet, timesteps[1:2], 1)
    assert torch.allclose(data.emb[1:2], emb, atol=1e-6)


def test_half_precision_base_gives_fp32_features():
    source = random_source(torch.bfloat16)
    data = extract(source, torch.randn(2, 3, 32, 32), noise_levels(2, 0), seed=0)
    assert all(layer.dtype == torch.float32 for layer in data.layers) and data.emb.dtype == torch.float32
    full = extract(random_source(), torch.randn(2, 3, 32, 32), noise_levels(2, 0), seed=0)
    assert data.dims == full.dims


def test_feature_cache_is_reused_until_the_data_changes(tmp_path, monkeypatch):
    write_spatial_dataset(tmp_path / "data", 4, seed=0)
    source = random_source()
    pairs = spatial_pairs(tmp_path / "data")
    cache = tmp_path / "features.safetensors"
    first = spatial_data(source, pairs, (-1.0, 1.0), 32, seed=0, cache=cache)
    assert first.targets.shape == (4, 3, 32, 32) and first.targets.min() == -1.0
    calls = []
    monkeypatch.setattr(source, "features", lambda *a: calls.append(a) or (_ for _ in ()).throw(AssertionError))
    cached = spatial_data(source, pairs, (-1.0, 1.0), 32, seed=0, cache=cache)
    assert not calls and all(torch.equal(a, b) for a, b in zip(first.features.layers, cached.features.layers))
    Image.new("RGB", (32, 32), (9, 9, 9)).save(pairs[0][0])  # an image changed: extract again
    with pytest.raises(AssertionError):
        spatial_data(source, pairs, (-1.0, 1.0), 32, seed=0, cache=cache)


def test_pair_points_reach_latent_pixels(tmp_path):
    write_pair_dataset(tmp_path, 2, seed=1)
    listing = json.loads((tmp_path / "pairs.json").read_text())
    data = pair_data(random_source(), point_pairs(tmp_path), 32, seed=0)
    first = listing[0]["points"][0]
    assert data.points[0][0].tolist() == [first[1], first[0], first[3], first[2]]  # (x, y) → (y, x), factor 1
    assert len(data.features) == 4


@pytest.mark.parametrize("kind, writer", [
    ("spatial", lambda d: write_spatial_dataset(d, 6, 0)),
    ("appearance", lambda d: write_subject_dataset(d, 2, 2, 0)),
    ("identity", lambda d: write_subject_dataset(d, 2, 2, 0)),
    ("correspondence", lambda d: write_pair_dataset(d, 3, 0)),
])
def test_train_from_folder_writes_a_loadable_head(tmp_path, kind, writer):
    writer(tmp_path / "data")
    request = TrainRequest(kind=kind, dataset=tmp_path / "data", output=tmp_path / f"{kind}.safetensors",
                           config=TrainingConfig(steps=3, batch_size=2, validate_every=3), resolution=32,
                           control_type="depth", triplets=3, projection_dim=64, num_groups=8,
                           checkpoint_dir=tmp_path / "ckpt")
    path, state = train_from_folder(random_source(), request)
    head = load_head(path)
    info = head.info
    assert info.kind == kind and info.family == "sd15" and info.dims == random_source().dims
    assert info.training["trained_steps"] == 3 and info.base_model == "random"
    assert info.training["dataset_size"] == {"spatial": 6, "appearance": 4, "identity": 4, "correspondence": 3}[kind]
    if kind == "spatial":
        assert info.control_type == "depth" and info.control_range == (-1.0, 1.0) and info.output_channels == 3
    assert (tmp_path / "ckpt" / "checkpoint.pt").is_file()


def test_bad_requests_say_what_to_change(tmp_path):
    with pytest.raises(ReadoutError, match="Cannot train a 'keypoint' head"):
        TrainRequest(kind="keypoint", dataset=tmp_path, output=tmp_path / "h.safetensors")
    with pytest.raises(ReadoutError, match="as a .safetensors file"):
        TrainRequest(kind="spatial", dataset=tmp_path, output=tmp_path / "h.pt")
    with pytest.raises(ReadoutError, match="multiple of 8"):
        TrainRequest(kind="spatial", dataset=tmp_path, output=tmp_path / "h.safetensors", resolution=30)
    edge = TrainRequest(kind="spatial", dataset=tmp_path, output=tmp_path / "h.safetensors", control_type="edge")
    assert edge.spatial_range == (-0.5, 0.5) and edge.spatial_sparse
    assert edge.training_config.steps == 5000 and edge.training_config.lr == 1e-3
