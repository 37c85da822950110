"""Decoder feature layout, capture from a diffusers U-Net, resize-and-concat, timestep embedding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from readout_core import SD15_LAYOUT, SDXL_LAYOUT, DecoderFeatureCapture, FeatureError, resize_and_concat
from readout_core.diffusers_adapter.feature_modules import diffusers_feature_modules, diffusers_head_embedding, diffusers_layout
from readout_core.features import sinusoidal_timestep_embedding

diffusers = pytest.importorskip("diffusers", reason="diffusers is needed for the standalone U-Net feature tests")


def tiny_unet(family: str) -> torch.nn.Module:
    """A small U-Net with SD1.5's (4 levels) or SDXL's (3 levels, text-time embedding) block layout."""
    torch.manual_seed(0)
    if family == "sd15":
        config = dict(
            block_out_channels=(32, 64, 96, 96),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        )
    else:
        config = dict(
            block_out_channels=(32, 64, 96),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + 6 * 8,
        )
    return diffusers.UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=16, **config,
    ).eval()


def run_unet(unet, family, latent, t):
    context = torch.randn(latent.shape[0], 7, 32)
    kwargs = {}
    if family == "sdxl":
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(latent.shape[0], 32), "time_ids": torch.randn(latent.shape[0], 6)}
    return unet(latent, t, encoder_hidden_states=context, **kwargs).sample


def test_published_layer_maps():
    assert list(SD15_LAYOUT.dims) == [1280] * 6 + [640] * 3 + [320] * 3
    assert list(SDXL_LAYOUT.dims) == [1280] * 3 + [640] * 3 + [320] * 3
    # feature sizes for the published latent sizes: SD1.5 64 -> 8, 16, 32, 64; SDXL 128 -> 32, 64, 128
    assert [64 // s for s in SD15_LAYOUT.strides] == [8] * 3 + [16] * 3 + [32] * 3 + [64] * 3
    assert [128 // s for s in SDXL_LAYOUT.strides] == [32] * 3 + [64] * 3 + [128] * 3
    assert SD15_LAYOUT.blocks[4] == (1, 1) and SDXL_LAYOUT.blocks[8] == (2, 2)
    # ComfyUI output_blocks index = 3 * up block + resnet
    assert [SD15_LAYOUT.host_output_block(i) for i in range(12)] == list(range(12))
    assert SDXL_LAYOUT.host_output_block(5) == 5


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_capture_reads_residual_branch_of_every_decoder_resnet_in_order(family):
    unet = tiny_unet(family)
    layout = diffusers_layout(unet, family)
    expected_dims = [96] * 6 + [64] * 3 + [32] * 3 if family == "sd15" else [96] * 3 + [64] * 3 + [32] * 3
    assert list(layout.dims) == expected_dims

    # Independent record: each decoder ResNet's input and output; hidden = output - shortcut(input).
    resnets = [r for block in unet.up_blocks for r in block.resnets]
    seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = [
        r.register_forward_hook(lambda m, args, out, i=i: seen.__setitem__(i, (args[0], out)))
        for i, r in enumerate(resnets)
    ]
    latent = torch.randn(2, 4, 16, 16)
    with torch.no_grad(), DecoderFeatureCapture(diffusers_feature_modules(unet)) as capture:
        run_unet(unet, family, latent, torch.tensor([500, 500]))
    for h in handles:
        h.remove()

    assert len(capture.features) == len(resnets) == len(layout.dims)
    for index, (feature, resnet) in enumerate(zip(capture.features, resnets)):
        inputs, output = seen[index]
        shortcut = resnet.conv_shortcut(inputs) if resnet.conv_shortcut is not None else inputs
        hidden = output * resnet.output_scale_factor - shortcut
        size = 16 // layout.strides[index]
        assert feature.shape == (2, layout.dims[index], size, size)
        assert torch.allclose(feature, hidden, atol=1e-5)
        assert (feature - output).abs().max() > 1e-3  # not the block output

    features = capture.collected((16, 16))
    assert features.shape == (2, sum(layout.dims), 16, 16)
    first = F.interpolate(capture.features[0], size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.equal(features[:, : layout.dims[0]], first)
    assert torch.equal(features[:, -32:], capture.features[-1])
    # hooks are gone after the block
    assert all(not r.conv2._forward_hooks for r in resnets)


def test_capture_keeps_graph_for_guidance_and_removes_hooks_on_error():
    unet = tiny_unet("sd15").requires_grad_(False)
    latent = torch.randn(1, 4, 16, 16, requires_grad=True)
    with DecoderFeatureCapture(diffusers_feature_modules(unet)) as capture:
        run_unet(unet, "sd15", latent, torch.tensor([10]))
    capture.collected((16, 16)).square().mean().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0

    with pytest.raises(RuntimeError, match="boom"):
        with DecoderFeatureCapture(diffusers_feature_modules(unet)):
            raise RuntimeError("boom")
    assert all(not r.conv2._forward_hooks for b in unet.up_blocks for r in b.resnets)
    with pytest.raises(FeatureError, match="produced no features"):
        DecoderFeatureCapture(diffusers_feature_modules(unet)).collected((16, 16))


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_head_embedding_is_the_unets_own_time_embedding(family):
    unet = tiny_unet(family)
    t = torch.tensor([981, 1])
    emb = diffusers_head_embedding(unet, t, batch=2)
    sinusoid = sinusoidal_timestep_embedding(t, 32)
    lin1, lin2 = unet.time_embedding.linear_1, unet.time_embedding.linear_2
    assert torch.allclose(emb, lin2(F.silu(lin1(sinusoid))), atol=1e-6)
    assert emb.shape == (2, 128)
    assert torch.allclose(diffusers_head_embedding(unet, 981, batch=3), emb[:1].expand(3, -1))


def test_sinusoid_matches_diffusers_timesteps_cos_first():
    reference = diffusers.models.embeddings.Timesteps(320, flip_sin_to_cos=True, downscale_freq_shift=0)
    t = torch.tensor([0, 1, 250, 999])
    ours = sinusoidal_timestep_embedding(t, 320)
    assert torch.allclose(ours, reference(t), atol=1e-6)
    assert torch.allclose(ours[0, :160], torch.ones(160))  # cos(0) first


def test_resize_and_concat_order_and_errors():
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 8, 8)
    out = resize_and_concat([a, b], (8, 8))
    assert out.shape == (2, 8, 8, 8)
    assert torch.equal(out[:, :3], F.interpolate(a, size=(8, 8), mode="bilinear", align_corners=False))
    assert torch.equal(out[:, 3:], b)
    with pytest.raises(FeatureError, match="No decoder features"):
        resize_and_concat([], (8, 8))
    with pytest.raises(FeatureError, match=r"expected \[N=2, C, h, w\]"):
        resize_and_concat([a, torch.randn(1, 5, 8, 8)], (8, 8))
