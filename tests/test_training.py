"""The head trainer: each kind learns, validates, checkpoints, and resumes exactly."""

from __future__ import annotations

import pytest
import torch

from readout_core import ReadoutError, load_head
from readout_core.training.feature_sets import FeatureSet, load_cached
from readout_core.training.loop import (
    RECIPES,
    TrainingConfig,
    new_head,
    recipe_config,
    save_trained_head,
    split_indices,
    train_head,
    validation_loss,
)
from readout_core.training.tasks import AppearanceTask, CorrespondenceTask, SpatialTask

DIMS = (16, 8)


def make_head(kind: str = "spatial", seed: int = 0):
    torch.manual_seed(seed)
    return new_head(kind, "sd15", DIMS, emb_dim=8, projection_dim=32, num_groups=4, control_type="depth",
                    control_range=(-1.0, 1.0))


def learnable_spatial(count: int = 40) -> SpatialTask:
    """Targets that are a fixed function of the features (a depth-like map from two channels);
    the second layer is stored at half resolution, as decoder layers are."""
    gen = torch.Generator().manual_seed(1)
    fine = torch.randn(count, DIMS[0], 8, 8, generator=gen)
    coarse = torch.randn(count, DIMS[1], 4, 4, generator=gen)
    targets = torch.tanh(fine[:, :3] - fine[:, 3:6]).clamp(-1, 1)
    return SpatialTask(FeatureSet((fine, coarse), torch.randn(count, 8, generator=gen), (8, 8)), targets)


def learnable_triplets(count: int = 30) -> AppearanceTask:
    """Anchor and positive share a random per-subject 'colour' code; the negative has another."""
    gen = torch.Generator().manual_seed(2)
    codes = torch.randn(count, 2, DIMS[0], 1, 1, generator=gen)
    noise = lambda: 0.3 * torch.randn(count, DIMS[0], 8, 8, generator=gen)  # noqa: E731
    fine = torch.stack([codes[:, 0] + noise(), codes[:, 0] + noise(), codes[:, 1] + noise()], 1).flatten(0, 1)
    coarse = torch.randn(3 * count, DIMS[1], 4, 4, generator=gen)
    return AppearanceTask(FeatureSet((fine, coarse), torch.randn(3 * count, 8, generator=gen), (8, 8)))


def learnable_pairs(count: int = 20) -> CorrespondenceTask:
    """B is A shifted by (1, 2) pixels; matches follow the shift."""
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(count, DIMS[0], 8, 8, generator=gen)
    b = torch.roll(a, shifts=(1, 2), dims=(2, 3))
    fine = torch.stack([a, b], 1).flatten(0, 1)
    coarse = torch.randn(2 * count, DIMS[1], 4, 4, generator=gen)
    points = []
    for _ in range(count):
        ya, xa = torch.randint(0, 7, (6,), generator=gen), torch.randint(0, 6, (6,), generator=gen)
        points.append(torch.stack([ya, xa, ya + 1, xa + 2], 1).float())
    return CorrespondenceTask(FeatureSet((fine, coarse), torch.randn(2 * count, 8, generator=gen), (8, 8)),
                              tuple(points))


TASKS = {"spatial": learnable_spatial, "appearance": learnable_triplets, "correspondence": learnable_pairs}


@pytest.mark.parametrize("kind", TASKS)
def test_training_lowers_the_validation_loss(kind):
    task = TASKS[kind]()
    head = make_head(kind)
    config = TrainingConfig(steps=150, batch_size=4, lr=3e-3, validate_every=50, checkpoint_every=1000,
                            validation_fraction=0.2)
    _, val_ids = split_indices(len(task), config.validation_fraction, config.seed)
    before = validation_loss(head, task, val_ids)
    state = train_head(head, task, config)
    after = state.validation_loss
    print(f"{kind}: validation loss {before:.4f} -> {after:.4f} after {state.step} steps")
    assert state.step == 150 and [r["step"] for r in state.history] == [50, 100, 150]
    assert after < 0.6 * before


def test_split_is_fixed_and_disjoint():
    train, val = split_indices(40, 0.1, seed=0)
    again_train, again_val = split_indices(40, 0.1, seed=0)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert len(val) == 4 and not set(train.tolist()) & set(val.tolist())
    assert len(split_indices(1, 0.5, 0)[1]) == 0


@pytest.mark.parametrize("kind", ["spatial", "correspondence"])
def test_resume_gives_the_uninterrupted_result(tmp_path, kind):
    task = TASKS[kind]()
    config = TrainingConfig(steps=40, batch_size=4, validate_every=5, checkpoint_every=10)
    straight = train_head(make_head(kind), task, config)

    class Killed(Exception):
        pass

    def kill_after_step_20_checkpoint(record):
        if record["step"] == 25:  # after the checkpoint at step 20, before the one at 30
            raise Killed

    with pytest.raises(Killed):
        train_head(make_head(kind), task, config, checkpoint_dir=tmp_path, progress=kill_after_step_20_checkpoint)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 20
    resumed = train_head(make_head(kind, seed=99), task, config, checkpoint_dir=tmp_path, resume=True)
    assert resumed.step == 40 and resumed.history == straight.history
    for key, value in straight.head.state_dict().items():
        assert torch.equal(value, resumed.head.state_dict()[key]), key
    with pytest.raises(ReadoutError, match="other settings"):
        train_head(make_head(kind), task, TrainingConfig(steps=40, lr=1e-4), checkpoint_dir=tmp_path, resume=True)
    other = "appearance" if kind == "spatial" else "spatial"
    with pytest.raises(ReadoutError, match=f"not a checkpoint of a {TASKS[other]().kind} run"):
        train_head(make_head(other), TASKS[other](), config, checkpoint_dir=tmp_path, resume=True)
    (tmp_path / "checkpoint.pt").write_bytes(b"<html>not a checkpoint</html>")
    with pytest.raises(ReadoutError, match="could not be read: it is damaged.*Delete it to start anew"):
        train_head(make_head(kind), task, config, checkpoint_dir=tmp_path, resume=True)


def test_trained_head_file_loads_with_its_training_facts(tmp_path):
    task = learnable_spatial(12)
    config = TrainingConfig(steps=10, batch_size=4, validate_every=5)
    state = train_head(make_head(), task, config)
    path = save_trained_head(state, config, 12, tmp_path / "my_depth.safetensors", base_model="tiny")
    head = load_head(path)
    assert head.info.training["trained_steps"] == 10 and head.info.training["dataset_size"] == 12
    assert head.info.training["validation_loss"] == pytest.approx(state.validation_loss)
    assert head.info.control_type == "depth" and head.info.control_range == (-1.0, 1.0)
    assert head.info.base_model == "tiny" and head.info.kind == "spatial"
    assert torch.equal(head.mixing_weights, state.head.mixing_weights)


def test_feature_cache_round_trip_and_key(tmp_path):
    data = learnable_spatial(5).data
    data.save(tmp_path / "f.safetensors", {"a": 1})
    loaded = load_cached(tmp_path / "f.safetensors", {"a": 1})
    assert loaded is not None and loaded.latent_hw == (8, 8)
    assert all(torch.equal(x, y) for x, y in zip(loaded.layers, data.layers))
    assert torch.equal(loaded.features(torch.tensor([1, 3])), data.features(torch.tensor([1, 3])))
    assert load_cached(tmp_path / "f.safetensors", {"a": 2}) is None
    assert load_cached(tmp_path / "missing.safetensors", {"a": 1}) is None


def test_bad_training_inputs():
    task = learnable_spatial(4)
    data = task.data
    with pytest.raises(ReadoutError, match="same number"):
        FeatureSet(data.layers, data.emb[:2], (8, 8))
    with pytest.raises(ReadoutError, match="1 channels"):
        train_head(make_head(), SpatialTask(data, task.targets[:, :1]), TrainingConfig(steps=1))
    nan = FeatureSet(tuple(layer * float("nan") for layer in data.layers), data.emb, (8, 8))
    with pytest.raises(ReadoutError, match="not finite"):
        train_head(make_head(), SpatialTask(nan, task.targets), TrainingConfig(steps=1, batch_size=2))
    with pytest.raises(ReadoutError, match="spatial task trains spatial heads"):
        train_head(make_head("appearance"), task, TrainingConfig(steps=1))
    with pytest.raises(ReadoutError, match="whole triplets"):
        train_head(make_head("appearance"), AppearanceTask(data), TrainingConfig(steps=1))
    with pytest.raises(ReadoutError, match="no point matches"):
        pairs = learnable_pairs(2)
        train_head(make_head("correspondence"), CorrespondenceTask(pairs.data, (pairs.points[0], torch.zeros(0, 4))),
                   TrainingConfig(steps=1))
    with pytest.raises(ReadoutError, match="steps and batch_size"):
        TrainingConfig(steps=0)


@pytest.mark.parametrize("kind", ["spatial", "appearance", "correspondence"])
def test_zero_means_the_released_recipe(kind):
    assert recipe_config(kind, 0, 0, 0.0) == RECIPES[kind] == recipe_config(kind)
    custom = recipe_config(kind, 7, 3, 0.5, seed=4)
    assert (custom.steps, custom.batch_size, custom.lr, custom.seed) == (7, 3, 0.5, 4)
    assert custom.checkpoint_every == RECIPES[kind].checkpoint_every
