"""The shipped tiny world: small, loadable, trainable in minutes, and guidance works on it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from readout_core import load_head
from readout_core.training.from_folder import TrainRequest, train_from_folder
from readout_core.tiny_world import HEAD_FILES, HEAD_SETTINGS, model, tiny_source
from readout_core.tiny_world.datasets import write_spatial_dataset
from readout_core.tiny_world.evaluate import evaluate
from readout_core.tiny_world.scenes import Scene, Shape, object_mask, render
from readout_core.training.loop import TrainingConfig

REPO = Path(__file__).resolve().parents[1]
SPATIAL_VALIDATION_TARGET = 0.12  # MSE in the depth range -1..1 (untrained: ~0.3; 1000 examples: 0.074)
DEFAULT_SEEDS = 4
"""Seeds of the evaluation in the default suite; all 16 (the README's table) run with ``-m evaluation``."""


def test_shipped_weights_are_small_and_load():
    files = [model.WEIGHTS_DIR / model.UNET_FILE] + [model.WEIGHTS_DIR / name for name in HEAD_FILES.values()]
    total = sum(f.stat().st_size for f in files)
    print(f"tiny world weights: {total / 2**20:.1f} MiB in {len(files)} files")
    assert total < 20 * 2**20
    source = tiny_source()
    assert source.family == "sd15" and len(source.dims) == 12
    for name in HEAD_FILES:
        head = load_head(model.WEIGHTS_DIR / HEAD_FILES[name])
        assert head.info.dims == source.dims and head.info.training["trained_steps"] > 0


def test_scenes_render_exact_labels():
    scene = Scene((Shape("square", (10.0, 10.0), 5.0, (0.9, 0.2, 0.2), 0.3),
                   Shape("circle", (12.0, 14.0), 5.0, (0.2, 0.4, 0.95), 0.9)))
    rendering = render(scene)
    near = rendering.masks[1] > 0.99
    assert torch.allclose(rendering.image[:, near], torch.tensor([[0.2], [0.4], [0.95]]))
    assert torch.allclose(rendering.depth[0][near], torch.tensor(0.8))  # 2 * 0.9 - 1
    assert rendering.masks[0][near].max() < 1e-6  # the far shape is hidden under the near one
    far_only = (rendering.masks[0] > 0.99) & (rendering.masks[1] < 0.01)
    assert far_only.any() and torch.allclose(rendering.depth[0][far_only], torch.tensor(-0.4))  # 2 * 0.3 - 1
    agree = (object_mask(rendering.image) == (rendering.masks.sum(0) > 0.5)).float().mean()
    assert agree > 0.95 and object_mask(rendering.image).sum() > 100  # they differ only on antialiased edges


def test_spatial_head_from_100_examples_in_minutes(tmp_path):
    write_spatial_dataset(tmp_path / "data", 100, seed=123)
    request = TrainRequest(kind="spatial", dataset=tmp_path / "data", output=tmp_path / "depth.safetensors",
                           config=TrainingConfig(steps=200, batch_size=16, lr=3e-4, validate_every=50),
                           resolution=32, control_type="depth", **HEAD_SETTINGS)
    path, state = train_from_folder(tiny_source(), request)
    losses = [r["validation_loss"] for r in state.history]
    print(f"validation MSE at steps 50/100/150/200: {[round(v, 4) for v in losses]}")
    assert losses[-1] < SPATIAL_VALIDATION_TARGET
    assert load_head(path).info.training["dataset_size"] == 100


def test_train_command_line(tmp_path):
    write_spatial_dataset(tmp_path / "data", 8, seed=0)
    out = tmp_path / "cli.safetensors"
    command = [sys.executable, "-m", "readout_core", "train", "spatial", "--model", "tiny-world", "--dataset",
               str(tmp_path / "data"), "--out", str(out), "--steps", "4", "--batch-size", "2", "--validate-every",
               "2", "--control-type", "depth", "--checkpoints", str(tmp_path / "ckpt")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "step 4/4" in result.stderr and f"wrote {out}" in result.stdout
    info = subprocess.run([sys.executable, "-m", "readout_core", "info", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert "trained_steps=4" in info.stdout and "dataset_size=8" in info.stdout and "depth" in info.stdout
    again = subprocess.run(command + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "4 steps" in again.stdout  # already complete: resumes at the end
    bad = subprocess.run(command[:-2] + ["--dataset", str(tmp_path / "nowhere"), "--resume"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:")


def test_demo_writes_the_grid(tmp_path):
    out = tmp_path / "grid.png"
    result = subprocess.run([sys.executable, "-m", "readout_core", "demo", "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    print(result.stdout)
    grid = Image.open(out)
    assert grid.size == (4 * 128, 16 + 3 * (13 + 128 + 13 + 6) + 4 * 13 + 4)  # header, rows, legend
    assert result.stdout.count("unguided") == 3 and result.stdout.count("is better") == 3
    assert re.search(r"in \d+ s on \d+ CPU threads?; seed 0", result.stdout)


@pytest.mark.parametrize("seeds", [DEFAULT_SEEDS, pytest.param(16, marks=pytest.mark.evaluation)])
def test_guidance_works_on_the_tiny_world(seeds, progress):
    results = evaluate(seeds, progress)
    (iou_plain, iou_guided), (drag_plain, drag_guided), (colour_plain, colour_guided) = (
        results["spatial"], results["drag"], results["appearance"])
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    print({k: (round(mean(a), 3), round(mean(b), 3)) for k, (a, b) in results.items()})
    assert all(len(values) == seeds for pair in results.values() for values in pair)
    assert mean(iou_guided) >= 0.6 and mean(iou_guided) > mean(iou_plain)
    assert mean(drag_guided) <= 0.5 * mean(drag_plain)
    assert mean(colour_guided) < mean(colour_plain)


def test_guide_every_table_gives_efficacy_as_the_share_of_every_step_guidance():
    from readout_core.tiny_world.evaluate import every_list, guide_every_table

    assert every_list("1, 2,3") == [1, 2, 3]
    results = {("drag", 1): ([8.0, 8.0], [2.0, 4.0], [10.0, 10.0]), ("drag", 2): ([8.0, 8.0], [5.0, 5.0], [6.0, 6.0]),
               ("appearance", 1): ([0.6], [0.2], [8.0]), ("appearance", 2): ([0.6], [0.5], [4.0])}
    lines = guide_every_table(results).splitlines()[2:]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert [(c[0], c[2], c[5], c[7]) for c in cells] == [
        ("drag", "1", "100%", "1.00×"), ("drag", "2", "60%", "0.60×"),
        ("appearance", "1", "100%", "1.00×"), ("appearance", "2", "25%", "0.50×")]
