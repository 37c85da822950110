"""Head files: published .pt (weights-only), the pack's .safetensors, conversion and the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from readout_core import HeadFileError, convert_published_head, load_head, read_head_file
from readout_core.__main__ import main as cli_main
from published_spec import SDXL_DIMS, published_config, published_state_dict, spec_forward

REPO = Path(__file__).resolve().parents[1]
TINY_DIMS = [256, 128, 128, 64]


def write_published(path: Path, dims=TINY_DIMS, projection_dim=128, output_channels=3, **config_kw) -> dict:
    """Save a checkpoint shaped like the released ones (step, config, weights, optimizer state)."""
    state = published_state_dict(dims, projection_dim=projection_dim, output_channels=output_channels, seed=3)
    config = published_config(dims, output_channels=output_channels, projection_dim=projection_dim, **config_kw)
    optimizer = {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-3, "params": [0]}]}
    torch.save({"step": 5000, "config": config, "aggregation_network": state, "optimizer_state_dict": optimizer}, path)
    return state


def test_published_spatial_pt_loads_with_metadata_and_spec_outputs(tmp_path):
    path = tmp_path / "readout_sdv15_spatial_pose.pt"
    state = write_published(path, control_type="pose", run_name="readout_sdv15_spatial_pose")
    head = load_head(path)
    info = head.info
    assert (info.kind, info.family, info.control_type, info.control_range) == ("spatial", "sd15", "pose", (-0.5, 0.5))
    assert info.sparse_loss and info.training["step"] == 5000
    assert not head.training and not any(p.requires_grad for p in head.parameters())
    features, emb = torch.randn(1, sum(TINY_DIMS), 4, 4), torch.randn(1, 1280)
    assert torch.allclose(head(features, emb).double(), spec_forward(state, TINY_DIMS, features, emb), atol=1e-5)


@pytest.mark.parametrize(
    ("stem", "config_kw", "expected"),
    [
        ("readout_sdxl_spatial_depth", {"control_type": "depth", "model_id": "stabilityai/stable-diffusion-xl-base-1.0"},
         ("spatial", "sdxl", "depth", (-1.0, 1.0))),
        ("readout_sdv15_spatial_edge", {"control_type": "edge"}, ("spatial", "sd15", "edge", (-0.5, 0.5))),
        ("readout_sdxl_drag_appearance", {"model_id": "stabilityai/stable-diffusion-xl-base-1.0",
                                          "run_name": "readout_sdxl_drag_appearance"}, ("appearance", "sdxl", None, None)),
        ("readout_sdv15_drag_correspondence", {"run_name": "readout_sdv15_drag_correspondence"},
         ("correspondence", "sd15", None, None)),
        ("readout_sdv15_pose_keypoint", {"output_act": False}, ("keypoint", "sd15", "pose_keypoint", (0.0, 1.0))),
    ],
)
def test_kind_family_and_control_inferred_from_published_configs(tmp_path, stem, config_kw, expected):
    channels = None if expected[0] in ("appearance", "correspondence") else (18 if expected[0] == "keypoint" else 3)
    path = tmp_path / f"{stem}.pt"
    write_published(path, output_channels=channels, **config_kw)
    info = load_head(path).info
    assert (info.kind, info.family, info.control_type, info.control_range) == expected
    assert info.output_channels == channels


def test_published_sdxl_full_size_pt_converts_bit_identically(tmp_path):
    src, dst = tmp_path / "readout_sdxl_spatial_pose.pt", tmp_path / "pose.safetensors"
    state = write_published(src, dims=SDXL_DIMS, projection_dim=384, control_type="pose",
                            model_id="stabilityai/stable-diffusion-xl-base-1.0")
    convert_published_head(src, dst)
    with safe_open(str(dst), framework="pt") as handle:
        metadata = handle.metadata()
        assert set(handle.keys()) == set(state)
        for key in state:
            assert torch.equal(handle.get_tensor(key), state[key])
    stored = json.loads(metadata["readout_guidance.info"])
    assert stored["kind"] == "spatial" and stored["family"] == "sdxl" and stored["control_range"] == [-0.5, 0.5]
    assert json.loads(metadata["readout_guidance.source_config"])["dims"] == SDXL_DIMS
    assert load_head(dst).info == load_head(src).info


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('ran')",))

    zip_pt = tmp_path / "zip_format.pt"
    torch.save({"config": {"dims": [1]}, "aggregation_network": Payload()}, zip_pt)
    legacy_pt = tmp_path / "legacy_format.pt"
    legacy_pt.write_bytes(pickle.dumps({"config": Payload()}, protocol=2))
    for path in (zip_pt, legacy_pt):
        with pytest.raises(HeadFileError, match=rf"Refused to open {path.name}: it asks to import (builtins\.)?exec when unpickled"):
            load_head(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda p: torch.save([torch.zeros(2)], p), "not a readout head checkpoint: expected a dict"),
        (lambda p: torch.save({"aggregation_network": {}, "weights": 1}, p), "found \\['aggregation_network', 'weights'\\]"),
        (lambda p: torch.save({"config": {"projection_dim": 384}, "aggregation_network": {}}, p), "has no 'dims'"),
        (lambda p: torch.save({"config": [], "aggregation_network": {}}, p), "'config' must be a dict"),
        (lambda p: torch.save({"config": {"dims": [4]}, "aggregation_network": {"w": 3}}, p), "must map parameter names to tensors"),
        (lambda p: p.write_bytes(b""), "is empty \\(0 bytes\\)"),
        (lambda p: p.write_bytes(b"<html>404 not found</html>"), "could not be read as a PyTorch checkpoint"),
    ],
)
def test_wrong_pt_content_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "head.pt"
    content(path)
    with pytest.raises(HeadFileError, match=message):
        load_head(path)


def test_truncated_files_name_the_file(tmp_path):
    good_pt = tmp_path / "readout_sdv15_spatial_depth.pt"
    write_published(good_pt, control_type="depth")
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(good_pt.read_bytes()[:4000])
    with pytest.raises(HeadFileError, match=r"cut\.pt could not be read .* truncated or corrupted"):
        load_head(truncated)
    good_st = tmp_path / "depth.safetensors"
    convert_published_head(good_pt, good_st)
    cut_st = tmp_path / "cut.safetensors"
    cut_st.write_bytes(good_st.read_bytes()[:3000])
    with pytest.raises(HeadFileError, match=r"cut\.safetensors is not a readable \.safetensors file"):
        load_head(cut_st)


def test_safetensors_without_head_metadata_or_missing_file(tmp_path):
    plain = tmp_path / "lora.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(HeadFileError, match="without readout-head metadata"):
        read_head_file(plain)
    with pytest.raises(HeadFileError, match="not found"):
        load_head(tmp_path / "nope.safetensors")
    other = tmp_path / "head.ckpt"
    other.write_bytes(b"x")
    with pytest.raises(HeadFileError, match="unsupported head file type '.ckpt'"):
        load_head(other)


def test_load_head_device_and_dtype(tmp_path):
    path = tmp_path / "readout_sdv15_spatial_depth.pt"
    write_published(path, control_type="depth")
    head = load_head(path, device="cpu", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in head.parameters())
    assert load_head(path).mixing_weights.dtype == torch.float32


def test_cli_info_and_convert(tmp_path, capsys):
    src = tmp_path / "readout_sdv15_spatial_edge.pt"
    write_published(src, control_type="edge")
    dst = tmp_path / "edge.safetensors"
    assert cli_main(["convert", str(src), str(dst)]) == 0
    assert "wrote" in capsys.readouterr().out and dst.is_file()
    assert cli_main(["info", str(dst)]) == 0
    out = capsys.readouterr().out
    for expected in ("spatial", "sd15", "edge", "(-0.5, 0.5)", "4: dims [256, 128, 128, 64]", "parameters"):
        assert expected in out
    assert cli_main(["info", "--json", str(src)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layers"] == 4 and summary["parameters"] > 0 and summary["kind"] == "spatial"


def test_convert_refuses_missing_and_non_pt_inputs(tmp_path):
    with pytest.raises(HeadFileError, match="Readout head file not found"):
        convert_published_head(tmp_path / "missing.pt", tmp_path / "out.safetensors")
    src = tmp_path / "readout_sdv15_spatial_depth.pt"
    write_published(src, control_type="depth")
    converted = tmp_path / "depth.safetensors"
    convert_published_head(src, converted)
    assert converted.stat().st_mode & 0o044  # readable by the ComfyUI user, not only the converter
    with pytest.raises(HeadFileError, match="convert reads a published .pt head; depth.safetensors is not one"):
        convert_published_head(converted, tmp_path / "again.safetensors")
    assert not (tmp_path / "again.safetensors").exists()


def test_cli_fails_clearly_on_a_broken_file_as_a_subprocess(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    result = subprocess.run([sys.executable, "-m", "readout_core", "info", str(broken)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: broken.pt could not be read")
    assert "Traceback" not in result.stderr


RANDOM_FILES = 400
"""Random files given to `info` (the README's reliability section quotes this count)."""


@settings(max_examples=RANDOM_FILES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(min_size=1, max_size=300) | st.text(min_size=1, max_size=300).map(str.encode),
       suffix=st.sampled_from([".pt", ".pth", ".safetensors"]))
def test_cli_info_on_random_files_is_one_error_line_with_code_2(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("random") / f"file{suffix}"
    path.write_bytes(content)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert cli_main(["info", str(path)]) == 2
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: file{suffix} ")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "readout_core", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=180)


def test_cli_on_a_text_file_renamed_pt_and_on_a_folder(tmp_path):
    notes = tmp_path / "notes.pt"
    notes.write_text("Shopping list\n- milk\n- 2 heads of lettuce\n")
    folder = tmp_path / "heads"
    folder.mkdir()
    for path, expected in [(notes, "error: notes.pt could not be read as a PyTorch checkpoint"),
                           (folder, f"error: {folder} is a folder, not a head file")]:
        result = _cli("info", str(path))
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1, result.stderr
        assert "models/readout_heads" not in result.stderr and "Traceback" not in result.stderr
