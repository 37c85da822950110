"""Training inside the host: the host's features equal diffusers' for the same weights, and
the Train Readout Head node trains, saves, reports, resumes and refuses bad input."""

from __future__ import annotations

import sys

import pytest
import torch

from host_support import require_host

HOST = require_host()

diffusers = pytest.importorskip("diffusers", reason="diffusers is needed for the host-vs-diffusers parity test")

import comfy.model_patcher  # noqa: E402
import folder_paths  # noqa: E402
from test_host_parity import convert_weights, diffusers_unet, host_model  # noqa: E402
from tiny_host import run_node, tiny_host_model  # noqa: E402

from readout_core import ReadoutError, load_head  # noqa: E402
from readout_core.diffusers_adapter.feature_source import DiffusersSource  # noqa: E402
from readout_core.training.feature_extraction import extract  # noqa: E402
from readout_core.host_adapter.training_source import HostFeatureSource  # noqa: E402
from readout_core.tiny_world import model as tiny  # noqa: E402
from readout_core.tiny_world.datasets import write_pair_dataset, write_spatial_dataset  # noqa: E402

SD15_SCALE = 0.18215


class PoolingVAE:
    """Stand-in VAE with the host VAE's interface: 8×8 average pooling, RGB + a constant channel."""

    downscale_ratio = 8

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1)[:, :3], 8)
        return torch.cat([pooled, torch.full_like(pooled[:, :1], 0.5)], dim=1) * 2 - 1


def test_host_features_equal_diffusers_features_for_the_same_weights():
    unet = diffusers_unet("sd15")
    model, config = host_model("sd15")
    model.diffusion_model.load_state_dict(convert_weights(unet, model.diffusion_model, config))
    cpu = torch.device("cpu")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=cpu, offload_device=cpu)
    context = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(3))
    host = HostFeatureSource(patcher, PoolingVAE(), [[context, {}]])
    reference = DiffusersSource(unet=unet, family="sd15", scheduler=tiny.scheduler(), context=context,
                                encode_images=lambda x: x, name="diffusers")
    latents = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    timesteps = torch.tensor([999, 500, 20])
    with torch.inference_mode():
        from_host = extract(host, latents, timesteps, seed=5, batch_size=3)
    from_diffusers = extract(reference, latents * SD15_SCALE, timesteps, seed=5, batch_size=3)
    assert host.dims == reference.dims and host.emb_dim == reference.emb_dim
    for layer, (a, b) in enumerate(zip(from_host.layers, from_diffusers.layers)):
        scale = max(1.0, float(b.abs().max()))
        assert float(b.abs().max()) > 1e-2, layer
        assert float((a - b).abs().max()) <= 2e-4 * scale, f"layer {layer}: {float((a - b).abs().max())}"
    assert torch.allclose(from_host.emb, from_diffusers.emb, atol=1e-3, rtol=1e-4)


@pytest.fixture
def host_folders(tmp_path, monkeypatch):
    heads = tmp_path / "models" / "readout_heads"
    heads.mkdir(parents=True)
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "readout_heads", ([str(heads)], {".safetensors"}))
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(tmp_path / "output"))
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(tmp_path / "input"))
    return tmp_path


def train(pack, kind="spatial", dataset="shapes", head_name="tiny_depth", steps=6, resume=True, **extra):
    model = tiny_host_model("sd15", seed=2)
    context = torch.randn(1, 7, 32, generator=torch.Generator().manual_seed(1))
    inputs = dict(model=model, vae=PoolingVAE(), empty_prompt=[[context, {}]], kind=kind, dataset=dataset,
                  head_name=head_name, control_type="depth", sparse_loss="auto", resolution=64, steps=steps,
                  batch_size=2, learning_rate=0.0, seed=0, triplets=3, checkpoint_every=500, resume=resume,
                  cache_features=True)
    inputs.update(extra)
    with torch.inference_mode():  # as the host runs prompts
        return run_node(pack["ReadoutGuidance_TrainHead"], **inputs)


def test_train_node_saves_a_head_the_loader_reads(pack, host_folders):
    write_spatial_dataset(host_folders / "input" / "shapes", 6, seed=0)
    head, report = train(pack)
    path = host_folders / "models" / "readout_heads" / "tiny_depth.safetensors"
    assert path.is_file() and str(path) in report
    saved = load_head(path)
    assert saved.info.kind == "spatial" and saved.info.family == "sd15" and saved.info.control_type == "depth"
    assert saved.info.training["trained_steps"] == 6 and saved.info.training["dataset_size"] == 6
    assert head.info == saved.info
    work = host_folders / "output" / "readout_training" / "tiny_depth"
    assert (work / "checkpoint.pt").is_file() and (work / "features.safetensors").is_file()
    with pytest.raises(ReadoutError, match="already exists"):
        train(pack)


def test_train_node_resumes_to_the_uninterrupted_result(pack, host_folders):
    import comfy.model_management

    write_pair_dataset(host_folders / "input" / "pairs", 4, seed=0)
    settings = dict(kind="correspondence", dataset="pairs", steps=6, checkpoint_every=2)
    straight, _ = train(pack, head_name="straight", **settings)
    node_module = sys.modules[pack["ReadoutGuidance_TrainHead"].__module__]
    shown = []

    def show_and_interrupt_at_step_4(text):
        shown.append(text)
        if text.startswith("Training step 4/"):
            comfy.model_management.interrupt_current_processing(True)  # the host's own interrupt (Cancel)

    original = node_module.show_text_under_node
    node_module.show_text_under_node = show_and_interrupt_at_step_4
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            train(pack, head_name="resumed", **settings)
    finally:
        node_module.show_text_under_node = original
        comfy.model_management.interrupt_current_processing(False)
    work = host_folders / "output" / "readout_training" / "resumed"
    assert torch.load(work / "checkpoint.pt", weights_only=True)["step"] == 4
    assert not (host_folders / "models" / "readout_heads" / "resumed.safetensors").exists()
    assert any(t.startswith("Extracting features") for t in shown)
    resumed, report = train(pack, head_name="resumed", **settings)
    assert "after 6 steps" in report
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_train_node_refuses_bad_names_and_folders(pack, host_folders):
    node = pack["ReadoutGuidance_TrainHead"]
    write_spatial_dataset(host_folders / "input" / "shapes", 2, seed=0)
    for bad in ("../escape.safetensors", "sub/dir.safetensors", ".hidden", "", "..\\x.safetensors", "a" * 300,
                "nul\0.safetensors", "line\nbreak"):
        message = node.validate_inputs(head_name=bad)
        assert isinstance(message, str) and "plain file name" in message, bad
        with pytest.raises(ReadoutError, match="plain file name"):
            train(pack, head_name=bad)
    assert node.validate_inputs(head_name="fine") is True
    assert not list((host_folders / "models").rglob("*.safetensors")) and not (host_folders / "escape.safetensors").exists()
    with pytest.raises(ReadoutError, match="dataset folder .* does not exist"):
        train(pack, dataset="missing")
