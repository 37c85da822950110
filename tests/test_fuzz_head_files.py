"""Structured fuzzing of head files: every case gives a head that agrees with its weights or the
pack's `HeadFileError`, within the CPU-time and memory bounds of `fuzz_bounds`.

Cases: random types and magnitudes in every field of a published config and of a pack
head's metadata; truncated and bit-flipped files of both formats; zip archives and pickles
that are not torch checkpoints (or not heads); safetensors headers with random lengths and
entries. The README's reliability section quotes the counts below.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from fuzz_bounds import bounded
from published_spec import published_config, published_state_dict
from readout_core import HeadFileError, HeadInfo, ReadoutHead, build_head, load_head
from readout_core.heads.files import INFO_KEY, VERSION_KEY, save_head
from readout_core.heads.weights import expected_shapes

CONFIG_EXAMPLES = 150
"""Published configs with random values in their fields."""
METADATA_EXAMPLES = 150
"""Pack metadata (HeadInfo JSON) with random values in its fields."""
DAMAGED_EXAMPLES = 150
"""Truncated and bit-flipped files, per format."""
CONTAINER_EXAMPLES = 100
"""Zip archives and pickles that are not readout-head checkpoints."""
HEADER_EXAMPLES = 150
"""Safetensors files with random header lengths and entries."""

DIMS, PROJECTION, EMB = [16, 8], 128, 8
STATE = published_state_dict(DIMS, projection_dim=PROJECTION, emb_dim=EMB, output_channels=3, seed=1)
CONFIG = published_config(DIMS, output_channels=3, projection_dim=PROJECTION, control_type="depth")
PUBLISHED_FIELDS = {
    "": ["dims", "projection_dim", "model_id", "model_path", "aggregation_kwargs", "dataset_args", "wandb_kwargs",
         "lr", "max_steps", "step"],
    "aggregation_kwargs": ["use_output_head", "output_head_channels", "output_head_act", "bottleneck_sequential"],
    "dataset_args": ["control_type", "control_range", "sparse_loss", "sdedit_root", "points_root"],
    "wandb_kwargs": ["name"],
}
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

magnitudes = st.sampled_from([0, 1, -1, 3, 4, 18, 32, 128, 1280, 10**6, 10**9, 10**12, 2**63, 10**40, -10**12])
scalars = (st.none() | st.booleans() | magnitudes | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12))
wild = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=6), children, max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz_heads")
    bounded(lambda: load_head(_good_pt(folder)))  # warm up lazy imports outside the measured cases
    return folder


def _good_pt(folder: Path) -> Path:
    path = folder / "readout_sdv15_spatial_depth.pt"
    torch.save({"step": 5000, "config": CONFIG, "aggregation_network": STATE}, path)
    return path


def _good_safetensors(folder: Path) -> Path:
    return save_head(build_head(load_head(_good_pt(folder)).info, STATE), folder / "good.safetensors")


def _load(path: Path):
    """`load_head` under the bounds; a head must describe exactly the weights it holds."""
    result = bounded(lambda: load_head(path))
    if isinstance(result, ReadoutHead):
        assert expected_shapes(result.info) == {k: tuple(v.shape) for k, v in result.state_dict().items()}
        assert all(bool(torch.isfinite(v).all()) for v in result.state_dict().values())
    else:
        assert isinstance(result, HeadFileError), repr(result)
    return result


@settings(FAST, max_examples=CONFIG_EXAMPLES)
@given(changes=st.lists(st.tuples(st.sampled_from([(s, f) for s, fs in PUBLISHED_FIELDS.items() for f in fs]), wild),
                        min_size=1, max_size=4))
def test_published_configs_with_random_fields(folder, changes):
    config = json.loads(json.dumps(CONFIG))
    for (section, name), value in changes:
        target = config if not section else config.setdefault(section, {})
        if isinstance(target, dict):
            target[name] = value
    path = folder / "readout_sdv15_spatial_depth.pt"
    torch.save({"step": 5000, "config": config, "aggregation_network": STATE}, path)
    result = _load(path)
    if isinstance(result, ReadoutHead):
        assert list(result.info.dims) == DIMS and result.info.projection_dim == PROJECTION


@settings(FAST, max_examples=METADATA_EXAMPLES)
@given(changes=st.dictionaries(st.sampled_from(["kind", "family", "dims", "projection_dim", "emb_dim",
                                                "output_channels", "output_activation", "sequential", "control_type",
                                                "control_range", "sparse_loss", "num_groups", "base_model", "training",
                                                "unknown_field"]), wild, min_size=1, max_size=4),
       drop=st.booleans())
def test_pack_metadata_with_random_fields(folder, changes, drop):
    info = asdict(load_head(_good_pt(folder)).info)
    info.update(changes)
    if drop:
        info.pop(sorted(changes)[0], None)
    path = folder / "meta.safetensors"
    save_file(STATE, str(path), metadata={VERSION_KEY: "1", INFO_KEY: json.dumps(info)})
    result = _load(path)
    if isinstance(result, ReadoutHead):
        assert list(result.info.dims) == DIMS and result.info.emb_dim == EMB


@settings(FAST, max_examples=DAMAGED_EXAMPLES)
@given(data=st.data(), suffix=st.sampled_from([".pt", ".safetensors"]))
def test_truncated_and_bit_flipped_files(folder, data, suffix):
    good = (_good_pt(folder) if suffix == ".pt" else _good_safetensors(folder)).read_bytes()
    content = bytearray(good[:data.draw(st.integers(1, len(good)), label="length")])
    for _ in range(data.draw(st.integers(0, 8), label="flips")):
        position = data.draw(st.integers(0, len(content) - 1))
        content[position] ^= 1 << data.draw(st.integers(0, 7))
    path = folder / f"damaged{suffix}"
    path.write_bytes(bytes(content))
    _load(path)


container_names = st.sampled_from(["archive/data.pkl", "archive/version", "archive/data/0", "archive/byteorder",
                                   "other/data.pkl", "data.pkl", "a/b/c.txt"]) | st.text(min_size=1, max_size=12)
container_bodies = st.binary(max_size=200) | wild.map(lambda v: pickle.dumps(v, protocol=2))


@settings(FAST, max_examples=CONTAINER_EXAMPLES)
@given(kind=st.sampled_from(["zip", "torch.save", "pickle"]), value=wild,
       entries=st.dictionaries(container_names, st.tuples(container_bodies, st.booleans()), max_size=5))
def test_containers_that_are_not_head_checkpoints(folder, kind, value, entries):
    path = folder / "container.pt"
    if kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, (body, deflate) in entries.items():
                archive.writestr(name, body, compress_type=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
        path.write_bytes(buffer.getvalue())
    elif kind == "torch.save":
        torch.save({"config": value, "aggregation_network": {"w": torch.zeros(2)}} if entries else value, path)
    else:
        path.write_bytes(pickle.dumps(value))
    assert isinstance(_load(path), HeadFileError)


header_entries = st.dictionaries(
    st.text(max_size=8),
    st.fixed_dictionaries({"dtype": st.sampled_from(["F32", "F16", "I64", "BOOL", "X9", ""]) | wild,
                           "shape": st.lists(magnitudes | st.integers(-2, 64), max_size=4) | wild,
                           "data_offsets": st.lists(magnitudes | st.integers(0, 512), min_size=2, max_size=2) | wild}),
    max_size=4)


@settings(FAST, max_examples=HEADER_EXAMPLES)
@given(entries=header_entries, metadata=st.none() | wild, length=st.none() | magnitudes | st.integers(0, 2**64 - 1),
       data=st.binary(max_size=600), raw=st.none() | st.binary(max_size=40))
def test_safetensors_headers_with_random_lengths_and_entries(folder, entries, metadata, length, data, raw):
    header = dict(entries)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = raw if raw is not None else json.dumps(header).encode()
    declared = len(text) if length is None else length % 2**64
    path = folder / "header.safetensors"
    path.write_bytes(struct.pack("<Q", declared) + text + data)
    assert isinstance(_load(path), HeadFileError)


def test_nothing_is_allocated_for_a_config_that_disagrees_with_its_weights(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(ReadoutHead, "__init__", lambda self, info: built.append(info))
    for field, value, message in [("projection_dim", 2**20, "projection_dim must be a multiple of 4 from 4 to 8192"),
                                  ("projection_dim", 256, "projection_dim=256 but the weights say 128"),
                                  ("dims", [16, 8, 4096], "dims=\\(16, 8, 4096\\) but the weights say \\(16, 8\\)"),
                                  ("dims", [10**12], "each 1 to 8192 channels"),
                                  ("dims", "16, 8", "dims must be a list of integers")]:
        path = tmp_path / "readout_sdv15_spatial_depth.pt"
        torch.save({"config": dict(CONFIG, **{field: value}), "aggregation_network": STATE}, path)
        with pytest.raises(HeadFileError, match=message):
            load_head(path)
    assert built == []


def test_non_finite_and_non_float_weights_are_refused(tmp_path):
    for value, message in [(torch.tensor([float("nan"), 1.0]), "weight mixing_weights contains NaN or infinite"),
                           (torch.tensor([1, 2]), "weight mixing_weights is torch.int64; readout heads hold floating"),
                           (torch.zeros(1).expand(2), "weight mixing_weights claims 2 values but its data holds fewer")]:
        path = tmp_path / "readout_sdv15_spatial_depth.pt"
        torch.save({"config": CONFIG, "aggregation_network": dict(STATE, mixing_weights=value)}, path)
        with pytest.raises(HeadFileError, match=message):
            load_head(path)


@pytest.mark.parametrize("info", [
    HeadInfo(kind="spatial", family="sd15", dims=(16, 128, 8), projection_dim=128, emb_dim=8, output_channels=3,
             control_range=(-1.0, 1.0)),
    HeadInfo(kind="appearance", family="sdxl", dims=(16,), projection_dim=128, emb_dim=0, sequential=True),
    HeadInfo(kind="keypoint", family="sd15", dims=(8, 8), projection_dim=64, emb_dim=4, output_channels=18,
             output_activation=False, num_groups=16, control_range=(0.0, 1.0)),
])
def test_expected_shapes_are_the_modules_own(info):
    assert expected_shapes(info) == {key: tuple(v.shape) for key, v in ReadoutHead(info).state_dict().items()}
