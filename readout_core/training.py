"""Training a spatial readout head on extracted U-Net features (released recipe §6.1).

The features are extracted once (by the host adapter inside ComfyUI, or diffusers from
the command line) and handed over as a `FeatureSet`; training then needs only the head:
AdamW (weight decay 0), MSE or the sparse re-weighting against targets in the head's
control range, a fixed seed, a held-out validation split, and checkpoints that resume to
exactly the result of an uninterrupted run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .errors import ReadoutError
from .head_files import save_head
from .heads import ReadoutHead
from .losses import sparse_mse_loss

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class FeatureSet:
    """Extracted training examples.

    Attributes:
        features: ``[N, sum(dims), h, w]`` decoder features at latent resolution.
        emb: ``[N, E]`` the U-Net's timestep embedding of each example's noise level.
        targets: ``[N, K, H, W]`` controls in the head's control range (resized to ``h, w``
            with nearest sampling, as released).
    """

    features: torch.Tensor
    emb: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        count = self.features.shape[0]
        if count == 0 or self.emb.shape[0] != count or self.targets.shape[0] != count:
            raise ReadoutError(
                f"Training needs the same number (> 0) of features, embeddings and targets; got "
                f"{self.features.shape[0]}, {self.emb.shape[0]} and {self.targets.shape[0]}."
            )

    def __len__(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class SpatialTrainingConfig:
    """Released spatial recipe: lr 1e-3, batch 8, 5k steps (fewer suit small datasets)."""

    steps: int = 5000
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    validation_fraction: float = 0.1
    sparse: bool = False
    checkpoint_every: int = 500
    validate_every: int = 100


@dataclass
class TrainingState:
    """Everything a run needs to continue exactly where it stopped."""

    step: int
    head: ReadoutHead
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    history: list[dict]


def split_indices(count: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) example indices: a fixed-seed shuffle, at least one of each when possible."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    held = min(count - 1, max(1, round(count * fraction))) if count > 1 and fraction > 0 else 0
    return order[held:], order[:held]


def train_spatial_head(
    head: ReadoutHead,
    data: FeatureSet,
    config: SpatialTrainingConfig,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
) -> TrainingState:
    """Train ``head`` on ``data``; with ``checkpoint_dir``, write ``checkpoint.pt`` every
    ``checkpoint_every`` steps and, with ``resume``, continue from the one there."""
    info = head.info
    if info.kind != "spatial" or info.control_range is None:
        raise ReadoutError(f"train_spatial_head trains spatial heads; this is a {info.kind} head.")
    if data.targets.shape[1] != info.output_channels:
        raise ReadoutError(f"Targets have {data.targets.shape[1]} channels, the head outputs {info.output_channels}.")
    train_ids, val_ids = split_indices(len(data), config.validation_fraction, config.seed)
    state = _start(head, config, checkpoint_dir, resume)
    background = float(info.control_range[0])
    head.train()
    while state.step < config.steps:
        batch = train_ids[torch.randint(len(train_ids), (config.batch_size,), generator=state.generator)]
        loss = _batch_loss(head, data, batch, config.sparse, background)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.step += 1
        if state.step % config.validate_every == 0 or state.step == config.steps:
            record = {"step": state.step, "loss": float(loss.detach())}
            if val_ids.numel():
                record["validation_loss"] = validation_loss(head, data, val_ids, config.sparse, background)
            state.history.append(record)
            if progress is not None:
                progress(record)
        if checkpoint_dir is not None and (state.step % config.checkpoint_every == 0 or state.step == config.steps):
            save_checkpoint(state, config, Path(checkpoint_dir) / "checkpoint.pt")
    head.eval()
    return state


def validation_loss(head: ReadoutHead, data: FeatureSet, ids: torch.Tensor, sparse: bool, background: float) -> float:
    """Mean loss over the validation examples, without gradients."""
    was_training = head.training
    head.eval()
    with torch.no_grad():
        losses = [float(_batch_loss(head, data, ids[i:i + 8], sparse, background)) * len(ids[i:i + 8])
                  for i in range(0, len(ids), 8)]
    head.train(was_training)
    return sum(losses) / len(ids)


def save_trained_head(state: TrainingState, config: SpatialTrainingConfig, data: FeatureSet, path: str | Path,
                      control_type: str | None = None) -> Path:
    """The trained head as a ``.safetensors`` the loader reads, with its training facts."""
    last = next((r["validation_loss"] for r in reversed(state.history) if "validation_loss" in r), None)
    training = {**asdict(config), "trained_steps": state.step, "dataset_size": len(data), "validation_loss": last}
    info = replace(state.head.info, training=training,
                   control_type=control_type or state.head.info.control_type)
    head = ReadoutHead(info)
    head.load_state_dict(state.head.state_dict())
    return save_head(head, path)


def save_checkpoint(state: TrainingState, config: SpatialTrainingConfig, path: Path) -> None:
    """Head, optimiser, sampler RNG, step and history, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save({"format": CHECKPOINT_FORMAT, "step": state.step, "config": asdict(config),
                "head": state.head.state_dict(), "optimizer": state.optimizer.state_dict(),
                "generator": state.generator.get_state(), "history": state.history}, partial)
    partial.replace(path)


def _start(head: ReadoutHead, config: SpatialTrainingConfig, checkpoint_dir, resume: bool) -> TrainingState:
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    state = TrainingState(step=0, head=head.requires_grad_(True), optimizer=optimizer, generator=generator, history=[])
    path = Path(checkpoint_dir) / "checkpoint.pt" if checkpoint_dir is not None else None
    if resume and path is not None and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("format") != CHECKPOINT_FORMAT:
            raise ReadoutError(f"{path} is not a checkpoint of this trainer (format {saved.get('format')}).")
        if saved["config"] != asdict(config):
            raise ReadoutError(f"{path} was written with other settings; resume with the same ones or start anew.")
        head.load_state_dict(saved["head"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        state.step, state.history = int(saved["step"]), list(saved["history"])
    return state


def _batch_loss(head: ReadoutHead, data: FeatureSet, ids: torch.Tensor, sparse: bool, background: float) -> torch.Tensor:
    features = data.features[ids].float()
    prediction = head(features, data.emb[ids].float())
    target = data.targets[ids].float()
    if tuple(target.shape[-2:]) != tuple(prediction.shape[-2:]):
        target = F.interpolate(target, size=prediction.shape[-2:], mode="nearest")
    loss = sparse_mse_loss(prediction, target, background) if sparse else F.mse_loss(prediction, target)
    if not math.isfinite(float(loss.detach())):
        raise ReadoutError("The training loss is not finite; check the features and targets for NaN / inf.")
    return loss
