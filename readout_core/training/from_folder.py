"""One call from a dataset folder to a trained head file, for the CLI and the ComfyUI node.

`train_from_folder` reads the dataset (`datasets`), extracts features with the
given base model (`feature_extraction`, optionally cached), trains the head
(`loop`) and saves a `.safetensors` the loader reads, with its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import ReadoutError
from ..heads.info import CONTROL_RANGE_BY_TYPE, DEFAULT_CONTROL_RANGE, SPARSE_CONTROL_TYPES, TRAINABLE_KINDS
from .datasets import point_pairs, spatial_pairs, subject_groups
from .feature_extraction import FeatureSource, pair_data, spatial_data, triplet_data
from .loop import RECIPES, TrainingConfig, TrainingState, new_head, save_trained_head, train_head
from .tasks import AppearanceTask, CorrespondenceTask, SpatialTask


@dataclass(frozen=True)
class TrainRequest:
    """What to train.

    Attributes:
        kind: spatial, appearance, identity or correspondence.
        dataset: the dataset folder (layout per kind: see `readout_core.training.datasets`).
        output: the ``.safetensors`` file to write.
        config: optimiser settings (`RECIPES[kind]` by default).
        resolution: training image size (square; 512 for SD1.5, 1024 for SDXL).
        control_type: spatial only: pose, depth, edge, segmentation, normals, …
        control_range: spatial only; default by control type (pose / edge ±0.5, else ±1).
        sparse: spatial only: re-weight background and foreground equally (default for
            pose and edge).
        triplets: appearance / identity: how many triplets to draw from the groups.
        sdedit_strength: the hard negatives' SDEdit strength (released 0.5).
        checkpoint_dir: where ``checkpoint.pt`` is kept (None: no checkpoints).
        resume: continue from the checkpoint there.
        cache: a file to keep the extracted features in (reused when nothing changed).
        projection_dim, num_groups: head size (released 384, 32).
    """

    kind: str
    dataset: Path
    output: Path
    config: TrainingConfig | None = None
    resolution: int = 512
    control_type: str = "custom"
    control_range: tuple[float, float] | None = None
    sparse: bool | None = None
    triplets: int = 100
    sdedit_strength: float = 0.5
    checkpoint_dir: Path | None = None
    resume: bool = False
    cache: Path | None = None
    projection_dim: int = 384
    num_groups: int = 32

    def __post_init__(self) -> None:
        if self.kind not in TRAINABLE_KINDS:
            raise ReadoutError(f"Cannot train a {self.kind!r} head; choose one of {', '.join(TRAINABLE_KINDS)}.")
        if Path(self.output).suffix != ".safetensors":
            raise ReadoutError(f"Save the head as a .safetensors file, not {Path(self.output).name}.")
        if self.resolution < 8 or self.resolution % 8:
            raise ReadoutError(f"The training resolution must be a multiple of 8, got {self.resolution}.")
        if not 0 < self.sdedit_strength < 1:
            raise ReadoutError(f"sdedit_strength must lie strictly between 0 and 1, got {self.sdedit_strength}.")

    @property
    def training_config(self) -> TrainingConfig:
        """The given settings, or the released recipe for the kind."""
        return self.config or RECIPES[self.kind]

    @property
    def spatial_range(self) -> tuple[float, float]:
        """The control range the targets and the head use."""
        return tuple(self.control_range or CONTROL_RANGE_BY_TYPE.get(self.control_type, DEFAULT_CONTROL_RANGE))

    @property
    def spatial_sparse(self) -> bool:
        """Whether the sparse re-weighting is used."""
        return self.control_type in SPARSE_CONTROL_TYPES if self.sparse is None else self.sparse


ExtractProgress = Callable[[int, int], None]
TrainProgress = Callable[[dict], None]


def train_from_folder(source: FeatureSource, request: TrainRequest, on_extract: ExtractProgress | None = None,
                      on_train: TrainProgress | None = None) -> tuple[Path, TrainingState]:
    """Extract, train and save; returns the head file and the final training state."""
    task, size = _task(source, request, on_extract)
    config = request.training_config
    with torch.random.fork_rng():  # the head's initial weights follow the seed, not earlier random draws
        torch.manual_seed(config.seed)
        head = new_head(request.kind, source.family, source.dims, source.emb_dim, request.projection_dim,
                        request.num_groups, control_type=request.control_type, control_range=request.spatial_range,
                        sparse=request.spatial_sparse)
    state = train_head(head, task, config, request.checkpoint_dir, request.resume, on_train)
    Path(request.output).parent.mkdir(parents=True, exist_ok=True)
    path = save_trained_head(state, config, size, request.output, base_model=source.describe().get("name", ""))
    return path, state


def _task(source: FeatureSource, request: TrainRequest, on_extract: ExtractProgress | None):
    seed, resolution = request.training_config.seed, request.resolution
    if request.kind == "spatial":
        pairs = spatial_pairs(request.dataset)
        data = spatial_data(source, pairs, request.spatial_range, resolution, seed, request.cache, on_extract)
        return SpatialTask(data.features, data.targets, request.spatial_sparse), len(pairs)
    if request.kind == "correspondence":
        pairs = point_pairs(request.dataset)
        data = pair_data(source, pairs, resolution, seed, request.cache, on_extract)
        return CorrespondenceTask(data.features, data.points), len(pairs)
    groups = subject_groups(request.dataset)
    features = triplet_data(source, groups, request.triplets, resolution, seed, request.sdedit_strength,
                            request.cache, on_extract)
    return AppearanceTask(features), sum(len(g) for g in groups)
