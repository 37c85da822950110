"""``python -m readout_core train KIND --dataset DIR --model MODEL --out FILE``.

MODEL is ``tiny-world`` (the shipped tiny model) or a diffusers Stable Diffusion 1.5 /
SDXL folder (``model_index.json`` inside). Inside ComfyUI, the Train Readout Head node
does the same with any checkpoint ComfyUI loads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ReadoutError
from ..heads.info import CONTROL_RANGE_BY_TYPE, TRAINABLE_KINDS
from ..progress import ProgressBar

if TYPE_CHECKING:
    import torch

TINY_WORLD = "tiny-world"


def add_train_parser(commands: argparse._SubParsersAction) -> None:
    """The ``train`` sub-command's options."""
    cmd = commands.add_parser("train", help="train a readout head on your own images",
                              description="Train a readout head (released recipes; see the README, 'Training heads').")
    cmd.add_argument("kind", choices=TRAINABLE_KINDS)
    cmd.add_argument("--dataset", required=True, type=Path, help="dataset folder (layout depends on the kind)")
    cmd.add_argument("--model", required=True, help=f"'{TINY_WORLD}' or a diffusers SD1.5 / SDXL folder")
    cmd.add_argument("--out", required=True, type=Path, help="the head file to write (.safetensors)")
    cmd.add_argument("--resolution", type=int, help="training image size (default 512 SD1.5, 1024 SDXL, 32 tiny)")
    cmd.add_argument("--control-type", default="custom", help="spatial: pose, depth, edge, segmentation, …")
    cmd.add_argument("--control-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                     help=f"spatial: target range (default by type: {CONTROL_RANGE_BY_TYPE}, else -1 1)")
    cmd.add_argument("--sparse", action=argparse.BooleanOptionalAction, default=None,
                     help="spatial: balance background and foreground (default on for pose and edge)")
    cmd.add_argument("--steps", type=int)
    cmd.add_argument("--batch-size", type=int)
    cmd.add_argument("--lr", type=float)
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument("--validation-fraction", type=float, default=0.1)
    cmd.add_argument("--validate-every", type=int, default=100)
    cmd.add_argument("--checkpoint-every", type=int, default=500)
    cmd.add_argument("--checkpoints", type=Path, help="folder for checkpoint.pt (enables --resume)")
    cmd.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoints")
    cmd.add_argument("--cache", type=Path, help="file to cache the extracted features in")
    cmd.add_argument("--triplets", type=int, default=100, help="appearance / identity: triplets to draw")
    cmd.add_argument("--projection-dim", type=int, help="head width (default 384; 64 for the tiny world)")
    cmd.add_argument("--device", help="where to run the U-Net and the head (default: cuda when available, else cpu)")
    cmd.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default="fp32",
                     help="U-Net dtype for feature extraction (features and head are fp32 either way)")


def run_train(args: argparse.Namespace) -> int:
    """Run a training from parsed arguments; prints progress and the head's path."""
    import torch  # here, not at the top: `--help` must not wait for torch

    from .from_folder import TrainRequest, train_from_folder
    from .loop import recipe_config

    if args.resume and args.checkpoints is None:
        raise ReadoutError("--resume needs --checkpoints, the folder the interrupted run wrote to.")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    source, defaults = _source(args.model, device, {"fp32": torch.float32, "fp16": torch.float16,
                                                    "bf16": torch.bfloat16}[args.dtype])
    config = recipe_config(args.kind, args.steps, args.batch_size, args.lr, seed=args.seed,
                           validation_fraction=args.validation_fraction, checkpoint_every=args.checkpoint_every,
                           validate_every=args.validate_every)
    request = TrainRequest(
        kind=args.kind, dataset=args.dataset, output=args.out, config=config,
        resolution=args.resolution or defaults["resolution"], control_type=args.control_type,
        control_range=tuple(args.control_range) if args.control_range else None, sparse=args.sparse,
        triplets=args.triplets, checkpoint_dir=args.checkpoints, resume=args.resume, cache=args.cache,
        projection_dim=args.projection_dim or defaults["projection_dim"], num_groups=defaults["num_groups"])
    bar = ProgressBar(config.steps, label="step ")
    path, state = train_from_folder(
        source, request, on_extract=lambda done, total: print(f"\rextracting features {done}/{total}", end="",
                                                              file=sys.stderr, flush=True),
        on_train=lambda record: bar.update(record["step"], _training_note(record)))
    bar.finish()
    print(f"wrote {path}: {state.step} steps, validation loss {state.validation_loss}")
    return 0


def _training_note(record: dict) -> str:
    validation = f"  validation {record['validation_loss']:.4f}" if "validation_loss" in record else ""
    return f"loss {record['loss']:.4f}{validation}"


def _source(model: str, device: str, dtype: torch.dtype):
    if model == TINY_WORLD:
        from ..tiny_world import HEAD_SETTINGS, tiny_source

        return tiny_source(), {"resolution": 32, **HEAD_SETTINGS}
    from ..diffusers_adapter.pipelines import load_pipeline_source

    source = load_pipeline_source(model, device, dtype)
    return source, {"resolution": 1024 if source.family == "sdxl" else 512, "projection_dim": 384, "num_groups": 32}
