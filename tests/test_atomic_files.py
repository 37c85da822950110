"""Every file the pack saves is complete or absent: head files, feature caches, training checkpoints."""

from __future__ import annotations

import os
import stat

import pytest
import torch

import readout_core.atomic_files as atomic_files
from readout_core import load_head, save_head
from readout_core.atomic_files import SaveFailed, atomic_file
from readout_core.training.loop import TrainingConfig, TrainingState, new_head, save_checkpoint

from test_training import learnable_spatial, make_head


def test_complete_file_is_renamed_into_place_readable(tmp_path):
    with atomic_file(tmp_path / "sub" / "head.safetensors") as partial:
        assert partial.parent == tmp_path / "sub" and partial.name.startswith(".head.")
        assert partial.name.endswith(".partial.safetensors")
        assert set(partial.name.split(".")[2]) <= set("0123456789")  # stem + digits only
        partial.write_bytes(b"new")
    assert (tmp_path / "sub" / "head.safetensors").read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(tmp_path / "sub" / "head.safetensors").st_mode) == 0o644
    assert os.listdir(tmp_path / "sub") == ["head.safetensors"]


@pytest.mark.parametrize("failure", [ValueError("writer failed"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path, failure):
    target = tmp_path / "cache.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(type(failure)):
        with atomic_file(target) as partial:
            partial.write_bytes(b"half")
            raise failure
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["cache.safetensors"]


def _head_writer(path):
    save_head(make_head(), path)


def _cache_writer(path):
    learnable_spatial(4).data.save(path, {"a": 1})


def _checkpoint_writer(path):
    head = new_head("spatial", "sd15", (16, 8), emb_dim=8, projection_dim=32, num_groups=4)
    state = TrainingState(step=3, head=head, optimizer=torch.optim.AdamW(head.parameters()),
                          generator=torch.Generator().manual_seed(0))
    save_checkpoint(state, "spatial", TrainingConfig(), path)


@pytest.mark.parametrize("writer, name", [(_head_writer, "head.safetensors"), (_cache_writer, "cache.safetensors"),
                                          (_checkpoint_writer, "checkpoint.pt")])
def test_every_writer_saves_atomically(tmp_path, monkeypatch, writer, name):
    target = tmp_path / name
    writer(target)
    first = target.read_bytes()
    assert os.listdir(tmp_path) == [name]

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_files.os, "fsync", full_disk)
    with pytest.raises(SaveFailed, match="No space left on device"):
        writer(target)
    assert target.read_bytes() == first and os.listdir(tmp_path) == [name]


def test_saved_head_loads_back(tmp_path):
    head = make_head()
    loaded = load_head(save_head(head, tmp_path / "h.safetensors"))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in head.state_dict().items())
