"""The spatial head trainer: it learns, validates, checkpoints, and resumes exactly."""

from __future__ import annotations

import pytest
import torch

from readout_core import HeadInfo, ReadoutError, ReadoutHead, load_head
from readout_core.training import (
    FeatureSet,
    SpatialTrainingConfig,
    save_trained_head,
    split_indices,
    train_spatial_head,
    validation_loss,
)

DIMS = (16, 8)


def make_head(seed: int = 0) -> ReadoutHead:
    torch.manual_seed(seed)
    info = HeadInfo(kind="spatial", family="sd15", dims=DIMS, projection_dim=32, emb_dim=8, output_channels=3,
                    num_groups=4, control_type="depth", control_range=(-1.0, 1.0))
    return ReadoutHead(info)


def learnable_data(count: int = 40) -> FeatureSet:
    """Targets that are a fixed function of the features (a depth-like map from two channels)."""
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(count, sum(DIMS), 8, 8, generator=gen)
    targets = torch.tanh(features[:, :3] - features[:, 3:6]).clamp(-1, 1)
    return FeatureSet(features, torch.randn(count, 8, generator=gen), targets)


def test_training_lowers_the_validation_loss():
    data = learnable_data()
    head = make_head()
    config = SpatialTrainingConfig(steps=150, batch_size=8, lr=3e-3, validate_every=50, checkpoint_every=1000)
    ids_train, ids_val = split_indices(len(data), config.validation_fraction, config.seed)

    before = validation_loss(head, data, ids_val, False, -1.0)
    state = train_spatial_head(head, data, config)
    after = state.history[-1]["validation_loss"]
    print(f"validation MSE {before:.4f} -> {after:.4f} after {state.step} steps")
    assert state.step == 150 and [r["step"] for r in state.history] == [50, 100, 150]
    assert after < 0.5 * before
    assert len(ids_val) == 4 and len(set(ids_train.tolist()) & set(ids_val.tolist())) == 0


def test_resume_gives_the_uninterrupted_result(tmp_path):
    data = learnable_data()
    config = SpatialTrainingConfig(steps=40, batch_size=4, validate_every=10, checkpoint_every=10)
    straight = train_spatial_head(make_head(), data, config)

    class Killed(Exception):
        pass

    def kill_after_step_20_checkpoint(record):
        if record["step"] == 30:  # after the checkpoint at step 20, before the one at 30
            raise Killed

    with pytest.raises(Killed):
        train_spatial_head(make_head(), data, config, checkpoint_dir=tmp_path, progress=kill_after_step_20_checkpoint)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 20
    resumed = train_spatial_head(make_head(seed=99), data, config, checkpoint_dir=tmp_path, resume=True)
    assert resumed.step == 40 and resumed.history == straight.history
    for key, value in straight.head.state_dict().items():
        assert torch.equal(value, resumed.head.state_dict()[key]), key
    with pytest.raises(ReadoutError, match="other settings"):
        train_spatial_head(make_head(), data, SpatialTrainingConfig(steps=40, lr=1e-4), checkpoint_dir=tmp_path,
                           resume=True)


def test_trained_head_file_loads_with_its_training_facts(tmp_path):
    data = learnable_data(12)
    config = SpatialTrainingConfig(steps=10, batch_size=4, validate_every=5)
    state = train_spatial_head(make_head(), data, config)
    path = save_trained_head(state, config, data, tmp_path / "my_depth.safetensors", control_type="depth")
    head = load_head(path)
    assert head.info.training["trained_steps"] == 10 and head.info.training["dataset_size"] == 12
    assert head.info.training["validation_loss"] == pytest.approx(state.history[-1]["validation_loss"])
    assert torch.equal(head.mixing_weights, state.head.mixing_weights)


def test_bad_training_inputs():
    data = learnable_data(4)
    with pytest.raises(ReadoutError, match="same number"):
        FeatureSet(data.features, data.emb[:2], data.targets)
    bad = FeatureSet(data.features, data.emb, data.targets[:, :1])
    with pytest.raises(ReadoutError, match="1 channels"):
        train_spatial_head(make_head(), bad, SpatialTrainingConfig(steps=1))
    nan = FeatureSet(data.features * float("nan"), data.emb, data.targets)
    with pytest.raises(ReadoutError, match="not finite"):
        train_spatial_head(make_head(), nan, SpatialTrainingConfig(steps=1, batch_size=2))
