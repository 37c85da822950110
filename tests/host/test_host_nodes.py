"""The pack's nodes in the host: guided KSampler, preview, head loading with downloads, errors."""

from __future__ import annotations

import sys

import pytest
import torch

from host_support import require_host

HOST = require_host()

import comfy.model_patcher  # noqa: E402
import folder_paths  # noqa: E402
import nodes  # noqa: E402
from published_spec import published_config, published_state_dict  # noqa: E402
from readout_core import load_head  # noqa: E402
from tiny_host import run_node, spatial_world, tiny_host_model  # noqa: E402

from readout_core import DecoderFeatureCapture, FeatureError, HeadInfo, ReadoutError, ReadoutHead  # noqa: E402
from readout_core.host_adapter import host_feature_modules, host_head_embedding  # noqa: E402


@pytest.fixture(scope="module")
def world(pack):
    image = torch.zeros(1, 128, 128, 3)
    image[:, 32:96, 32:96] = 1.0
    return spatial_world(pack, model_seed=6, head_seed=3, image=image)


def test_every_node_is_registered_with_tooltips(pack):
    for node_id in ("ReadoutGuidance_LoadHead", "ReadoutGuidance_SpatialTarget", "ReadoutGuidance_Apply",
                    "ReadoutGuidance_KSampler", "ReadoutGuidance_Preview"):
        node = pack[node_id]
        assert node.CATEGORY == "Readout Guidance"
        inputs = node.INPUT_TYPES()
        for group in ("required", "optional"):
            for name, spec in inputs.get(group, {}).items():
                assert spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_guided_ksampler_equals_apply_then_ksampler(pack, world):
    common = dict(seed=3, steps=5, cfg=3.0, sampler_name="euler", scheduler="normal", positive=world["positive"],
                  negative=world["negative"], latent_image={"samples": torch.zeros(1, 4, 16, 16)}, denoise=1.0)
    results = {}
    with torch.inference_mode():
        plain = nodes.KSampler().sample(model=world["model"], **common)[0]
        for recurrent in (1, 2):
            (one_node,) = run_node(pack["ReadoutGuidance_KSampler"], model=world["model"], terms=world["terms"],
                                   update_rule="official", guidance_weight=0.05, start_percent=0.0, end_percent=0.8,
                                   recurrent_steps=recurrent, **common)
            (guided,) = run_node(pack["ReadoutGuidance_Apply"], model=world["model"], terms=world["terms"],
                                 update_rule="official", weight=0.05, start_percent=0.0, end_percent=0.8,
                                 recurrent_steps=recurrent)
            two_nodes = nodes.KSampler().sample(model=guided, **common)[0]
            assert torch.equal(one_node["samples"], two_nodes["samples"]), recurrent
            assert not torch.equal(one_node["samples"], plain["samples"]), recurrent
            results[recurrent] = one_node["samples"]
    assert not torch.equal(results[1], results[2])  # the KSampler's recurrent_steps reaches the guidance


def test_preview_shows_the_heads_readout(pack, world):
    model, head = world["model"], world["head"]
    latent = {"samples": torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))}
    with torch.inference_mode():
        (image,) = run_node(pack["ReadoutGuidance_Preview"], model=model, head=head, latent=latent,
                            conditioning=world["positive"], percent=0.9)
    assert image.shape == (2, 128, 128, 3) and 0 <= image.min() and image.max() <= 1

    # independent: the same evaluation by hand
    inner = model.model
    sigma = inner.model_sampling.percent_to_sigma(0.9)
    x = inner.process_latent_in(latent["samples"])
    with torch.no_grad(), DecoderFeatureCapture(host_feature_modules(inner.diffusion_model)) as capture:
        inner.apply_model(x, torch.full((2,), sigma), c_crossattn=world["positive"][0][0].expand(2, -1, -1))
        t = inner.model_sampling.timestep(torch.full((2,), sigma)).float()
        readout = head(capture.collected((16, 16)), host_head_embedding(inner.diffusion_model, t))
    expected = ((readout + 1) / 2).clamp(0, 1).movedim(1, -1)
    assert torch.allclose(image[:, ::8, ::8], expected, atol=1e-4)


def test_load_head_downloads_a_missing_published_head(pack, tmp_path, monkeypatch):
    extensions = folder_paths.folder_names_and_paths["readout_heads"][1]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "readout_heads", ([str(tmp_path)], extensions))
    loader = pack["ReadoutGuidance_LoadHead"]
    name = "readout_sdv15_spatial_depth.pt"
    assert name in loader.INPUT_TYPES()["required"]["head_name"][1]["options"]  # offered before it is local
    calls = []

    def fake_download(published, folder, progress=None, should_stop=None):
        calls.append((published.name, folder))
        assert should_stop() is False
        dims = [128, 64]
        torch.save({"config": published_config(dims, output_channels=3, projection_dim=128, control_type="depth"),
                    "aggregation_network": published_state_dict(dims, projection_dim=128, output_channels=3)},
                   f"{folder}/{published.name}")
        progress(10, 10)
        return load_head(f"{folder}/{published.name}")

    loader_module = sys.modules[loader.__module__]
    monkeypatch.setattr(loader_module, "download_and_load_head", fake_download)
    assert loader.validate_inputs(head_name=name) is True
    (head,) = run_node(loader, head_name=name)
    assert calls == [(name, str(tmp_path))]
    assert head.info.control_type == "depth"
    (again,) = run_node(loader, head_name=name)  # now local: no second download
    assert len(calls) == 1 and again.info.kind == "spatial"
    message = loader.validate_inputs(head_name="my_own_head.safetensors")
    assert "not found" in message and str(tmp_path) in message


def test_errors_say_what_to_change(pack, world):
    model = world["model"]
    appearance = ReadoutHead(HeadInfo(kind="appearance", family="sd15", dims=world["head"].info.dims,
                                      projection_dim=128, emb_dim=128))
    with pytest.raises(ReadoutError, match="Spatial Target needs a pose / depth / edge head; this is a appearance"):
        run_node(pack["ReadoutGuidance_SpatialTarget"], head=appearance, image=torch.zeros(1, 8, 8, 3), weight=0.5)

    sdxl_model = tiny_host_model("sdxl")
    with pytest.raises(ReadoutError, match="trained for SD15 .* this model is SDXL-like .* Load a SDXL head"):
        run_node(pack["ReadoutGuidance_Apply"], model=sdxl_model, terms=world["terms"], update_rule="official",
                 weight=0.02, start_percent=0.0, end_percent=0.5, recurrent_steps=1)

    class NotAUnet(torch.nn.Module):
        def forward(self, x):
            return x

    dit = comfy.model_patcher.ModelPatcher(torch.nn.Module(), torch.device("cpu"), torch.device("cpu"))
    dit.model.diffusion_model = NotAUnet()
    with pytest.raises(FeatureError, match="this model is a NotAUnet without one. Load an SD1.5 or SDXL checkpoint"):
        run_node(pack["ReadoutGuidance_Apply"], model=dit, terms=world["terms"], update_rule="official",
                 weight=0.02, start_percent=0.0, end_percent=0.5, recurrent_steps=1)

    with pytest.raises(ReadoutError, match=r"start_percent \(0.8\) must be ≤ end_percent \(0.2\)"):
        run_node(pack["ReadoutGuidance_Apply"], model=model, terms=world["terms"], update_rule="official",
                 weight=0.02, start_percent=0.8, end_percent=0.2, recurrent_steps=1)


def test_heads_folder_keeps_extra_model_paths_entries(pack, tmp_path, monkeypatch):
    """extra_model_paths.yaml is read before packs load: its readout_heads folders must survive."""
    loader_module = sys.modules[pack["ReadoutGuidance_LoadHead"].__module__]
    register = sys.modules[loader_module.__package__ + ".model_folders"].register_model_folders
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "readout_heads", ([str(tmp_path)], set()))
    (tmp_path / "mine.safetensors").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a head")
    register()
    paths, extensions = folder_paths.folder_names_and_paths["readout_heads"]
    assert paths[0].endswith("readout_heads") and str(tmp_path) in paths
    assert "mine.safetensors" in folder_paths.get_filename_list("readout_heads")
    assert "notes.txt" not in folder_paths.get_filename_list("readout_heads")


def test_guidance_loss_is_shown_under_the_running_node(pack, world, monkeypatch):
    import types

    sent = []
    server = types.SimpleNamespace(send_progress_text=lambda text, node_id: sent.append((text, node_id)))
    monkeypatch.setitem(sys.modules, "server", types.SimpleNamespace(PromptServer=types.SimpleNamespace(instance=server)))
    context = types.SimpleNamespace(node_id="42")
    monkeypatch.setitem(sys.modules, "comfy_execution.utils", types.SimpleNamespace(get_executing_context=lambda: context))
    with torch.inference_mode():
        run_node(pack["ReadoutGuidance_KSampler"], model=world["model"], terms=world["terms"], update_rule="official",
                 guidance_weight=0.05, start_percent=0.0, end_percent=1.0, seed=1, steps=3, cfg=3.0,
                 sampler_name="euler", scheduler="normal", positive=world["positive"], negative=world["negative"],
                 latent_image={"samples": torch.zeros(1, 4, 16, 16)}, denoise=1.0)
    assert len(sent) == 3 and all(node == "42" for _, node in sent)
    assert sent[0][0].startswith("Readout guidance loss ")
