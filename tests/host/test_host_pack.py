"""The pack inside a real ComfyUI: loading through the host's own loader, the heads folder,
the Load Readout Head node, and the host adapter on the host's own U-Net."""

from __future__ import annotations

import pytest
import torch

from host_support import require_host

HOST = require_host()

import folder_paths  # noqa: E402
import nodes  # noqa: E402
from comfy.ldm.modules.diffusionmodules.util import timestep_embedding  # noqa: E402

from published_spec import published_config, published_state_dict  # noqa: E402
from tiny_host import tiny_host_model  # noqa: E402
from readout_core import DecoderFeatureCapture, FeatureError, load_head  # noqa: E402
from readout_core.host_adapter import (  # noqa: E402
    find_diffusion_model,
    host_decoder_layout,
    host_feature_modules,
    host_head_embedding,
)


def test_pack_registers_its_node_and_heads_folder(pack):
    node = pack["ReadoutGuidance_LoadHead"]
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS.get("ReadoutGuidance_LoadHead") == "Load Readout Head"
    assert node.CATEGORY == "Readout Guidance"
    paths, extensions = folder_paths.folder_names_and_paths["readout_heads"]
    assert paths[0].endswith("readout_heads") and {".safetensors", ".pt"} <= set(extensions)
    spec = node.INPUT_TYPES()["required"]["head_name"]
    assert "tooltip" in spec[1]


def test_load_head_node_reads_a_head_from_an_extra_folder(pack, tmp_path, monkeypatch):
    dims = [128, 64]
    torch.save({"step": 1, "config": published_config(dims, output_channels=3, projection_dim=128, control_type="depth"),
                "aggregation_network": published_state_dict(dims, projection_dim=128, output_channels=3)},
               tmp_path / "readout_sdv15_spatial_depth.pt")
    paths, extensions = folder_paths.folder_names_and_paths["readout_heads"]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "readout_heads", ([*paths, str(tmp_path)], extensions))
    assert "readout_sdv15_spatial_depth.pt" in folder_paths.get_filename_list("readout_heads")
    node = pack["ReadoutGuidance_LoadHead"]
    output = node.execute(head_name="readout_sdv15_spatial_depth.pt")
    head = output.result[0]
    assert head.info.kind == "spatial" and head.info.control_type == "depth"
    reference = load_head(tmp_path / "readout_sdv15_spatial_depth.pt")
    assert torch.equal(head.mixing_weights, reference.mixing_weights)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_host_adapter_reads_the_decoder_hidden_features(family):
    patcher = tiny_host_model(family)
    unet = find_diffusion_model(patcher)
    layout = host_decoder_layout(unet)
    expected = [128] * 6 + [64] * 3 + [32] * 3 if family == "sd15" else [128] * 3 + [64] * 3 + [32] * 3
    assert layout.family == family and list(layout.dims) == expected

    modules = host_feature_modules(unet, layout)
    resblocks = [unet.output_blocks[layout.host_output_block(i)][0] for i in range(len(expected))]
    seen = {}
    handles = [b.register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, (a[0], out)))
               for i, b in enumerate(resblocks)]
    x = torch.randn(2, 4, 16, 16)
    kwargs = {"c_crossattn": torch.randn(2, 7, 32)}
    if family == "sdxl":
        kwargs["y"] = torch.randn(2, 32 + 6 * 256)
    with torch.no_grad(), DecoderFeatureCapture(modules) as capture:
        patcher.model.apply_model(x, torch.tensor([3.0, 3.0]), **kwargs)
    for h in handles:
        h.remove()
    for i, (feature, block) in enumerate(zip(capture.features, resblocks)):
        inputs, output = seen[i]
        assert feature.shape == (2, expected[i], 16 // layout.strides[i], 16 // layout.strides[i])
        with torch.no_grad():
            assert torch.allclose(feature, output - block.skip_connection(inputs), atol=1e-5)
    assert capture.collected((16, 16)).shape == (2, sum(expected), 16, 16)
    assert all(not m._forward_hooks for m in modules)

    t = torch.tensor([999.0, 10.0])
    with torch.no_grad():
        emb = host_head_embedding(unet, t)
        assert torch.allclose(emb, unet.time_embed(timestep_embedding(t, unet.model_channels)), atol=1e-6)


def test_non_unet_model_is_refused_with_advice():
    with pytest.raises(FeatureError, match="decoder of a Stable Diffusion U-Net .* Load an SD1.5 or SDXL checkpoint"):
        find_diffusion_model(torch.nn.Linear(2, 2))
