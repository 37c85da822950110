"""The training loop: a head trained on a `Task` (see `tasks`) with the released recipes.

`train_head` runs any task the same way: AdamW (weight decay 0) on an
fp32 head, a fixed seed, a held-out validation split, and atomic checkpoints that resume
to exactly the result of an uninterrupted run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from ..atomic_files import atomic_file
from ..errors import HeadFileError, ReadoutError
from ..heads.files import save_head
from ..heads.info import HeadInfo
from ..heads.network import ReadoutHead
from ..heads.pt_container import load_weights_only
from .tasks import Task

CHECKPOINT_FORMAT = 2
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser and bookkeeping settings; `RECIPES` holds the released ones per kind."""

    steps: int = 5000
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    validation_fraction: float = 0.1
    checkpoint_every: int = 500
    validate_every: int = 100

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ReadoutError(f"steps and batch_size must be ≥ 1 and lr > 0; got {self.steps}, {self.batch_size}, "
                               f"{self.lr}.")
        if not 0 <= self.validation_fraction < 1 or self.checkpoint_every < 1 or self.validate_every < 1:
            raise ReadoutError("validation_fraction must be in [0, 1); checkpoint_every and validate_every ≥ 1.")


RECIPES = {
    "spatial": TrainingConfig(steps=5000, batch_size=8, lr=1e-3),
    "appearance": TrainingConfig(steps=1000, batch_size=1, lr=1e-4),
    "identity": TrainingConfig(steps=1000, batch_size=1, lr=1e-4),
    "correspondence": TrainingConfig(steps=10000, batch_size=1, lr=1e-3),
}
"""Released recipes: spatial lr 1e-3 / batch 8 / 5k steps; appearance (and identity)
lr 1e-4 / 1k steps on single triplets; correspondence lr 1e-3 / 10k steps."""


def recipe_config(kind: str, steps: int | None = None, batch_size: int | None = None, lr: float | None = None,
                  **settings) -> TrainingConfig:
    """The released recipe of ``kind`` with the given overrides; a steps, batch size or learning
    rate of 0 or None keeps the released value (the node's and the CLI's "0 = released")."""
    recipe = RECIPES[kind]
    return replace(recipe, steps=steps or recipe.steps, batch_size=batch_size or recipe.batch_size,
                   lr=lr or recipe.lr, **settings)


@dataclass
class TrainingState:
    """Everything a run needs to continue exactly where it stopped."""

    step: int
    head: ReadoutHead
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    history: list[dict] = field(default_factory=list)

    @property
    def validation_loss(self) -> float | None:
        """The last validation loss measured, if any."""
        return next((r["validation_loss"] for r in reversed(self.history) if "validation_loss" in r), None)


def split_indices(count: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) example indices: a fixed-seed shuffle, at least one of each when possible."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    held = min(count - 1, max(1, round(count * fraction))) if count > 1 and fraction > 0 else 0
    return order[held:], order[:held]


def train_head(
    head: ReadoutHead,
    task: Task,
    config: TrainingConfig,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[dict], None] | None = None,
) -> TrainingState:
    """Train ``head`` (in fp32) on ``task``.

    With ``checkpoint_dir``, ``checkpoint.pt`` is written every ``checkpoint_every``
    steps and at the end; with ``resume`` the run continues from it (same settings
    required). ``progress`` gets ``{"step", "loss"[, "validation_loss"]}`` every
    ``validate_every`` steps and at the end.
    """
    task.check(head)
    head.float()
    train_ids, val_ids = split_indices(len(task), config.validation_fraction, config.seed)
    state = _start(head, task.kind, config, checkpoint_dir, resume)
    head.train()
    while state.step < config.steps:
        batch = train_ids[torch.randint(len(train_ids), (config.batch_size,), generator=state.generator)]
        loss = _finite(task.loss(head, batch))
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.step += 1
        record = None
        if state.step % config.validate_every == 0 or state.step == config.steps:
            record = {"step": state.step, "loss": float(loss.detach())}
            if val_ids.numel():
                record["validation_loss"] = validation_loss(head, task, val_ids)
            state.history.append(record)
        if checkpoint_dir is not None and (state.step % config.checkpoint_every == 0 or state.step == config.steps):
            save_checkpoint(state, task.kind, config, Path(checkpoint_dir) / CHECKPOINT_NAME)
        if record is not None and progress is not None:
            progress(record)  # after the checkpoint: a progress hook that interrupts loses nothing
    head.eval()
    return state


def validation_loss(head: ReadoutHead, task: Task, ids: torch.Tensor) -> float:
    """Mean loss over the validation items, without gradients."""
    was_training = head.training
    head.eval()
    with torch.no_grad():
        total = sum(float(task.loss(head, ids[i:i + 8])) * len(ids[i:i + 8]) for i in range(0, len(ids), 8))
    head.train(was_training)
    return total / len(ids)


def save_trained_head(state: TrainingState, config: TrainingConfig, dataset_size: int, path: str | Path,
                      **info_changes) -> Path:
    """The trained head as a ``.safetensors`` the loader reads, with its training facts
    (steps, dataset size, last validation loss, settings); ``info_changes`` amend its
    `HeadInfo` (e.g. ``control_type``, ``base_model``)."""
    training = {**asdict(config), "trained_steps": state.step, "dataset_size": dataset_size,
                "validation_loss": state.validation_loss}
    info = replace(state.head.info, training=training, **info_changes)
    head = ReadoutHead(info)
    head.load_state_dict(state.head.state_dict())
    return save_head(head, path)


def new_head(kind: str, family: str, dims: tuple[int, ...], emb_dim: int, projection_dim: int = 384,
             num_groups: int = 32, control_type: str | None = None, control_range: tuple[float, float] | None = None,
             output_channels: int = 3, sparse: bool = False) -> ReadoutHead:
    """A freshly initialised head of ``kind`` for a U-Net with decoder ``dims``."""
    spatial = kind in ("spatial", "keypoint")
    info = HeadInfo(kind=kind, family=family, dims=dims, projection_dim=projection_dim, emb_dim=emb_dim,
                    output_channels=output_channels if spatial else None, output_activation=kind == "spatial",
                    control_type=control_type if spatial else None,
                    control_range=(control_range or (-1.0, 1.0)) if spatial else None,
                    sparse_loss=sparse and spatial, num_groups=num_groups)
    return ReadoutHead(info)


def save_checkpoint(state: TrainingState, kind: str, config: TrainingConfig, path: Path) -> None:
    """Head, optimiser, sampler RNG, step and history, written atomically."""
    with atomic_file(path) as partial:
        torch.save({"format": CHECKPOINT_FORMAT, "kind": kind, "step": state.step, "config": asdict(config),
                    "head": state.head.state_dict(), "optimizer": state.optimizer.state_dict(),
                    "generator": state.generator.get_state(), "history": state.history}, partial)


def _start(head: ReadoutHead, kind: str, config: TrainingConfig, checkpoint_dir, resume: bool) -> TrainingState:
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    state = TrainingState(step=0, head=head.requires_grad_(True), optimizer=optimizer, generator=generator)
    path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if resume and path is not None and path.exists():
        saved = _read_checkpoint(path)
        if saved.get("format") != CHECKPOINT_FORMAT or saved.get("kind") != kind:
            raise ReadoutError(f"{path} is not a checkpoint of a {kind} run of this trainer; delete it or point the "
                               "checkpoints at another folder.")
        if saved["config"] != asdict(config):
            raise ReadoutError(f"{path} was written with other settings; resume with the same ones or start anew.")
        head.load_state_dict(saved["head"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        state.step, state.history = int(saved["step"]), list(saved["history"])
    return state


def _read_checkpoint(path: Path) -> dict:
    """A training checkpoint opened as safely as a head file (checked zip, weights-only unpickling)."""
    try:
        saved = load_weights_only(path)
    except HeadFileError as error:
        raise ReadoutError(f"The training checkpoint {path} could not be read: it is damaged or was not written by "
                           "this trainer. Delete it to start anew, or point the checkpoints at another folder."
                           ) from error
    return saved if isinstance(saved, dict) else {}


def _finite(loss: torch.Tensor) -> torch.Tensor:
    if not math.isfinite(float(loss.detach())):
        raise ReadoutError("The training loss is not finite; check the features and targets for NaN / inf.")
    return loss
