"""Regenerate the tiny world's weights: the U-Net, then the heads, with the pack's own trainer.

    python tools/make_tiny_world.py unet                   # ~30 min on 2 CPU cores
    python tools/make_tiny_world.py heads                  # ~10 min

Everything is seeded; the files land in readout_core/tiny_world/weights/.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from readout_core.tiny_world import model as tiny  # noqa: E402
from readout_core.tiny_world.datasets import (write_pair_dataset, write_spatial_dataset,  # noqa: E402
                                              write_subject_dataset)
from readout_core.tiny_world.scenes import random_scene, render  # noqa: E402


def scene_images(count: int, seed: int) -> torch.Tensor:
    """``count`` random scenes rendered to ``[count, 3, 32, 32]`` in 0..1."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([render(random_scene(generator)).image for _ in range(count)])


def train_unet(steps: int, eps_steps: int, batch: int, lr: float, seed: int, checkpoint: Path) -> None:
    """On Stable Diffusion's schedule: ε-prediction for the first ``eps_steps`` steps (a quick
    start), v-prediction after (the model's objective; the EMA restarts there). EMA weights are
    saved; resumable."""
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    images = tiny.image_to_latent(scene_images(20000, seed))
    unet = tiny.build_unet()
    ema = copy.deepcopy(unet).requires_grad_(False)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    noise_schedule = DDPMScheduler(**tiny.SCHEDULE)
    generator = torch.Generator().manual_seed(seed)
    step = 0
    if checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=True)
        unet.load_state_dict(saved["unet"])
        ema.load_state_dict(saved["ema"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        step = saved["step"]
        print(f"resumed at step {step}")
    context = tiny.context(batch)
    started, running = time.time(), None
    while step < steps:
        if step == eps_steps:  # v-prediction starts: the EMA starts again from the current weights
            ema.load_state_dict(unet.state_dict())
        ids = torch.randint(len(images), (batch,), generator=generator)
        clean = images[ids]
        noise = torch.randn(clean.shape, generator=generator)
        t = torch.randint(0, 1000, (batch,), generator=generator)
        noisy = noise_schedule.add_noise(clean, noise, t)
        target = noise if step < eps_steps else noise_schedule.get_velocity(clean, noise, t)
        loss = F.mse_loss(unet(noisy, t, encoder_hidden_states=context).sample, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        since = step - eps_steps if step > eps_steps else step
        decay = min(0.998, (1 + since) / (10 + since))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), unet.parameters()):
                e.lerp_(p, 1 - decay)
        value = float(loss.detach())
        running = value if running is None or step == eps_steps + 1 else 0.98 * running + 0.02 * value
        if step % 50 == 0 or step == steps:
            print(f"step {step}/{steps}  loss {running:.4f}  {time.time() - started:.0f}s", flush=True)
        if step % 250 == 0 or step == steps:
            torch.save({"unet": unet.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                        "generator": generator.get_state(), "step": step}, checkpoint)
            tiny.WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
            tiny.save_unet(ema, tiny.WEIGHTS_DIR / tiny.UNET_FILE)


HEAD_RUNS = {
    # name: (kind, dataset writer and size, training settings)
    "depth": ("spatial", lambda d, s: write_spatial_dataset(d, 1000, s), dict(steps=1500, batch_size=16, lr=1e-3)),
    "appearance": ("appearance", lambda d, s: write_subject_dataset(d, 250, 4, s),
                   dict(steps=1000, batch_size=8, lr=3e-4)),
    "correspondence": ("correspondence", lambda d, s: write_pair_dataset(d, 400, s),
                       dict(steps=1000, batch_size=8, lr=1e-3)),
}


SDEDIT_STRENGTH = 0.8
"""The hard negatives' SDEdit strength: at the released 0.5 the tiny model keeps the shapes'
colours, so the negatives would look like the anchor; 0.8 keeps the layout, not the colours."""


def train_heads(work: Path, seed: int, names: list[str]) -> None:
    """Write each head's dataset as folders and train it with the pack's trainer."""
    from readout_core.training.from_folder import TrainRequest, train_from_folder
    from readout_core.tiny_world import HEAD_FILES, HEAD_SETTINGS, tiny_source
    from readout_core.training.loop import TrainingConfig

    source = tiny_source()
    for offset, (name, (kind, write, settings)) in enumerate(HEAD_RUNS.items()):
        if names and name not in names:
            continue
        dataset = work / f"{name}_dataset"
        if not dataset.exists():
            write(dataset, seed + offset)
        request = TrainRequest(kind=kind, dataset=dataset, output=tiny.WEIGHTS_DIR / HEAD_FILES[name],
                               config=TrainingConfig(seed=seed, validate_every=250, **settings), resolution=32,
                               control_type="depth", control_range=(-1.0, 1.0), sparse=False, triplets=400,
                               sdedit_strength=SDEDIT_STRENGTH,
                               cache=work / f"{name}.features", **HEAD_SETTINGS)
        started = time.time()
        path, state = train_from_folder(source, request, on_train=lambda r, n=name: print(n, r, flush=True),
                                        on_extract=lambda done, total, n=name: print(f"{n}: features {done}/{total}",
                                                                                      flush=True))
        print(f"{name}: {path.name}, validation loss {state.validation_loss:.4f}, {time.time() - started:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["unet", "heads"])
    parser.add_argument("names", nargs="*", help="heads: only these (depth, appearance, correspondence)")
    parser.add_argument("--steps", type=int, default=3250)
    parser.add_argument("--eps-steps", type=int, default=1750, help="ε-prediction warm start before v-prediction")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tiny_world_work"), help="checkpoints (not shipped)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage == "unet":
        train_unet(args.steps, args.eps_steps, args.batch, args.lr, args.seed, args.work / "unet_checkpoint.pt")
    else:
        train_heads(args.work, args.seed, args.names)


if __name__ == "__main__":
    main()
