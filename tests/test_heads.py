"""The head network against the published key layout, parameter counts and forward pass."""

from __future__ import annotations

import pytest
import torch

from readout_core import FeatureError, HeadFileError, HeadInfo, build_head, count_parameters
from published_spec import SD15_DIMS, SDXL_DIMS, published_state_dict, spec_forward

TINY_DIMS = [256, 256, 128, 128, 64]  # includes a layer with C == P (identity shortcut)
TINY_P = 128


def _info(kind: str, dims: list[int], family: str = "sd15", **kw) -> HeadInfo:
    if kind == "spatial":
        kw.setdefault("output_channels", 3)
        kw.setdefault("control_type", "depth")
        kw.setdefault("control_range", (-1.0, 1.0))
    return HeadInfo(kind=kind, family=family, dims=tuple(dims), **kw)


@pytest.mark.parametrize(
    ("family", "dims", "kind", "channels", "params", "keys"),
    [
        ("sd15", SD15_DIMS, "spatial", 3, 8_484_751, 175),
        ("sdxl", SDXL_DIMS, "spatial", 3, 5_907_436, 133),
        ("sd15", SD15_DIMS, "appearance", None, 8_005_260, 169),
        ("sdxl", SDXL_DIMS, "correspondence", None, 5_427_945, 127),
    ],
)
def test_full_size_heads_match_published_layout(family, dims, kind, channels, params, keys):
    state = published_state_dict(dims, output_channels=channels)
    head = build_head(_info(kind, dims, family=family), state)
    assert len(state) == keys
    assert set(head.state_dict()) == set(state)
    assert count_parameters(head) == params
    assert head.info.emb_dim == 1280


@pytest.mark.parametrize(("family", "dims"), [("sd15", SD15_DIMS), ("sdxl", SDXL_DIMS)])
def test_full_size_spatial_forward_matches_spec(family, dims):
    torch.manual_seed(1)
    state = published_state_dict(dims, output_channels=3, seed=2)
    head = build_head(_info("spatial", dims, family=family), state).double()
    features = torch.randn(2, sum(dims), 6, 6, dtype=torch.float64)
    emb = torch.randn(2, 1280, dtype=torch.float64)
    ours = head(features, emb)
    expected = spec_forward(state, dims, features, emb)
    assert ours.shape == (2, 3, 6, 6)
    assert torch.allclose(ours, expected, atol=1e-5, rtol=0)
    # The timestep embedding matters: dropping it changes the readout.
    assert (head(features, None) - ours).abs().max() > 1e-3


def test_full_size_float32_forward_within_1e5():
    state = published_state_dict(SD15_DIMS, output_channels=3, seed=4)
    head = build_head(_info("spatial", SD15_DIMS), state)
    features = torch.randn(1, sum(SD15_DIMS), 8, 8)
    emb = torch.randn(1, 1280)
    assert torch.allclose(head(features, emb).double(), spec_forward(state, SD15_DIMS, features, emb), atol=1e-5)


@pytest.mark.parametrize("sequential", [False, True])
@pytest.mark.parametrize("kind", ["spatial", "appearance", "keypoint"])
def test_tiny_heads_match_spec(kind, sequential):
    channels = {"spatial": 3, "keypoint": 18, "appearance": None}[kind]
    act = kind != "keypoint"
    extra = {"output_channels": channels, "output_activation": act}
    if kind == "keypoint":
        extra.update(control_type="pose_keypoint", control_range=(0.0, 1.0))
    state = published_state_dict(TINY_DIMS, projection_dim=TINY_P, emb_dim=48, output_channels=channels,
                                 sequential=sequential, seed=5)
    info = _info(kind, TINY_DIMS, projection_dim=TINY_P, sequential=sequential, **extra)
    head = build_head(info, state).double()
    assert head.info.emb_dim == 48  # taken from the weights, not the default 1280
    assert not any(key.startswith(("bottleneck_layers.2.shortcut", "bottleneck_layers.2.0.shortcut")) for key in state)
    features = torch.randn(3, sum(TINY_DIMS), 5, 7, dtype=torch.float64)
    emb = torch.randn(1, 48, dtype=torch.float64)  # broadcast over the batch
    ours = head(features, emb)
    expected = spec_forward(state, TINY_DIMS, features, emb.expand(3, -1), sequential=sequential, output_act=act)
    assert ours.shape == (3, channels or TINY_P, 5, 7)
    assert torch.allclose(ours, expected, atol=1e-10)
    if sequential:
        assert torch.equal(head(features, None), ours)  # sequential heads ignore the embedding
    if kind == "keypoint":
        assert not any(isinstance(m, torch.nn.Tanh) for m in head.modules())


def test_strict_loading_names_missing_unexpected_and_mismatched_keys():
    info = _info("spatial", TINY_DIMS, projection_dim=TINY_P)
    good = published_state_dict(TINY_DIMS, projection_dim=TINY_P, output_channels=3)

    missing = dict(good)
    del missing["bottleneck_layers.2.conv2.norm.bias"]
    with pytest.raises(HeadFileError, match=r"missing keys: bottleneck_layers\.2\.conv2\.norm\.bias"):
        build_head(info, missing)

    unexpected = dict(good, **{"bottleneck_layers.9.conv1.weight": torch.zeros(1)})
    with pytest.raises(HeadFileError, match=r"unexpected keys: bottleneck_layers\.9\.conv1\.weight"):
        build_head(info, unexpected)

    wrong = dict(good, **{"bottleneck_layers.1.conv3.weight": torch.zeros(TINY_P, 16, 1, 1)})
    with pytest.raises(HeadFileError, match=r"shape mismatches: bottleneck_layers\.1\.conv3\.weight: file \(128, 16, 1, 1\)"):
        build_head(info, wrong)

    sequential_keys = published_state_dict(TINY_DIMS, projection_dim=TINY_P, output_channels=3, sequential=True)
    with pytest.raises(HeadFileError, match="missing keys"):
        build_head(info, sequential_keys)


def test_wrong_feature_width_and_embedding_are_clear_errors():
    state = published_state_dict(TINY_DIMS, projection_dim=TINY_P, emb_dim=48, output_channels=3)
    head = build_head(_info("spatial", TINY_DIMS, projection_dim=TINY_P), state)
    with pytest.raises(FeatureError, match=r"reads 5 decoder layers with 832 channels"):
        head(torch.randn(1, 830, 4, 4))
    with pytest.raises(FeatureError, match=r"\[N, C, H, W\]"):
        head(torch.randn(832, 4, 4))
    with pytest.raises(FeatureError, match=r"must be \[N, 48\]"):
        head(torch.randn(1, 832, 4, 4), torch.randn(1, 1280))
    with pytest.raises(FeatureError, match="does not match feature batch"):
        head(torch.randn(2, 832, 4, 4), torch.randn(3, 48))
