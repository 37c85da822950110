"""Inputs are checked by the host's own prompt validation, before any sampling starts, and
head names from the graph cannot reach files outside the heads folders."""

from __future__ import annotations

import asyncio

import pytest
import torch

from host_support import require_host

HOST = require_host()

import execution  # noqa: E402
import folder_paths  # noqa: E402
from published_spec import published_config, published_state_dict  # noqa: E402
from tiny_host import run_node  # noqa: E402

from readout_core import HeadFileError  # noqa: E402

SAMPLING_DEFAULTS = {"update_rule": "official", "start_percent": 0.0, "end_percent": 0.5}


def host_validation(node_id: str, inputs: dict) -> list[str]:
    """The error messages the host's prompt validation gives one node (none: valid)."""
    prompt = {"1": {"class_type": node_id, "inputs": inputs},
              "8": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
              "9": {"class_type": "ReadoutGuidance_LoadHead", "inputs": {"head_name": "sub/mine.pt"}}}
    valid, errors, _ = asyncio.run(execution.validate_inputs("test", prompt, "1", {}))
    return [] if valid else [f"{e['message']}: {e['details']}" for e in errors]


@pytest.fixture()
def heads_folder(tmp_path, monkeypatch):
    inside = tmp_path / "models" / "readout_heads"
    inside.mkdir(parents=True)
    extensions = folder_paths.folder_names_and_paths["readout_heads"][1]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "readout_heads", ([str(inside)], extensions))
    dims = [128, 64]
    torch.save({"config": published_config(dims, output_channels=3, projection_dim=128, control_type="depth"),
                "aggregation_network": published_state_dict(dims, projection_dim=128, output_channels=3)},
               tmp_path / "outside.pt")  # a loadable head, but outside the folder
    (inside / "sub").mkdir()
    torch.save({"config": published_config(dims, output_channels=3, projection_dim=128, control_type="depth"),
                "aggregation_network": published_state_dict(dims, projection_dim=128, output_channels=3)},
               inside / "sub" / "mine.pt")
    return inside


@pytest.mark.parametrize("name", ["../../outside.pt", "../outside.pt", "/etc/passwd", "sub/../../../outside.pt",
                                  "..\\..\\outside.pt"])
def test_head_names_cannot_leave_the_heads_folder(pack, heads_folder, name):
    loader = pack["ReadoutGuidance_LoadHead"]
    message = loader.validate_inputs(head_name=name)
    assert isinstance(message, str) and "not found" in message and "outside it are not read" in message
    with pytest.raises(HeadFileError, match="not found"):
        run_node(loader, head_name=name)


def test_a_text_file_renamed_pt_and_a_folder_give_the_packs_errors(pack, heads_folder):
    loader = pack["ReadoutGuidance_LoadHead"]
    (heads_folder / "notes.pt").write_text("these are my notes, not a head\n")
    assert loader.validate_inputs(head_name="notes.pt") is True
    with pytest.raises(HeadFileError, match=r"^notes\.pt could not be read as a PyTorch checkpoint"):
        run_node(loader, head_name="notes.pt")
    (heads_folder / "folder.pt").mkdir()
    message = loader.validate_inputs(head_name="folder.pt")
    assert "is a folder inside" in message and str(heads_folder) in message
    with pytest.raises(HeadFileError, match="is a folder inside"):
        run_node(loader, head_name="folder.pt")


def test_heads_in_sub_folders_load(pack, heads_folder):
    loader = pack["ReadoutGuidance_LoadHead"]
    assert loader.validate_inputs(head_name="sub/mine.pt") is True
    (head,) = run_node(loader, head_name="sub/mine.pt")
    assert head.info.control_type == "depth"


@pytest.mark.parametrize("node_id, extra", [
    ("ReadoutGuidance_Apply", {"weight": 0.02, "recurrent_steps": 1}),
    ("ReadoutGuidance_KSampler", {"guidance_weight": 0.02}),
    ("ReadoutGuidance_ReferenceSampler", {"guidance_weight": 0.02}),
])
def test_a_guidance_window_that_never_acts_is_refused_before_sampling(pack, node_id, extra):
    node = pack[node_id]
    assert node.validate_inputs(start_percent=0.8, end_percent=0.2).startswith("start_percent (0.8) is after")
    assert node.validate_inputs(start_percent=0.0, end_percent=0.5) is True


def test_reference_sampler_checks_the_preset_name(pack):
    node = pack["ReadoutGuidance_ReferenceSampler"]
    assert node.validate_inputs(start_percent=0.0, end_percent=0.5, preset="drag: real image (SD1.5)") is True
    for bad in ("drag", {"nested": [1]}, "x" * 10_000):
        assert node.validate_inputs(start_percent=0.0, end_percent=0.5, preset=bad).startswith("Unknown preset")


def test_host_prompt_validation_reports_the_packs_messages(pack, heads_folder):
    errors = host_validation("ReadoutGuidance_LoadHead", {"head_name": "../outside.pt"})
    assert any("not found" in e for e in errors), errors
    errors = host_validation("ReadoutGuidance_DragPoints", {"image": ["8", 0], "points": '{"handles": [[1, 2]]}'})
    assert any("1 handles but 0 targets" in e for e in errors), errors
    errors = host_validation("ReadoutGuidance_IdentityReference", {"head": ["9", 0], "weight": 1.0, "face_box": "1, 2"})
    assert any("four numbers" in e for e in errors), errors
    errors = host_validation("ReadoutGuidance_SpatialTarget", {"head": ["9", 0], "image": ["8", 0], "weight": -1.0})
    assert any("weight" in e for e in errors), errors  # below the schema's minimum
