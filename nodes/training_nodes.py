"""Train Readout Head: a head trained on your own images with the loaded checkpoint,
saved into ``models/readout_heads`` (thin wrapper around `readout_core.training.from_folder`)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io

from readout_core import ReadoutError, load_head
from readout_core.training.from_folder import TRAINABLE_KINDS, TrainRequest, train_from_folder
from readout_core.host_adapter import show_text_under_node
from readout_core.host_adapter.training_source import HostFeatureSource
from readout_core.training.loop import recipe_config

from .input_checks import parse_problem
from .io_types import ReadoutHeadType
from .model_folders import HEADS_FOLDER

CONTROL_TYPES = ("depth", "pose", "edge", "segmentation", "normals", "custom")
SPARSE_CHOICES = ("auto", "on", "off")
WORK_FOLDER = "readout_training"
MAX_NAME_BYTES = 200
"""Longest head_name accepted, in UTF-8 bytes (file systems allow 255, and .safetensors may be added)."""


class TrainReadoutHead(io.ComfyNode):
    """Trains a spatial, appearance, identity or correspondence head on a dataset folder."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_TrainHead",
            display_name="Train Readout Head",
            category="Readout Guidance",
            description="Trains a readout head for this checkpoint from a dataset folder (released recipes; ~100 "
            "examples are enough) and saves it in models/readout_heads. Interrupt any time: with resume on, the "
            "next run continues from the last checkpoint. Folder layouts are in the README ('Training heads').",
            is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The SD1.5 / SDXL checkpoint the head will guide."),
                io.Vae.Input("vae", tooltip="The checkpoint's VAE (encodes the training images)."),
                io.Conditioning.Input("empty_prompt", tooltip="CLIP Text Encode of an empty prompt (as released)."),
                io.Combo.Input("kind", options=list(TRAINABLE_KINDS), default="spatial",
                               tooltip="spatial: images/ + controls/; appearance or identity: one sub-folder per "
                               "subject; correspondence: pairs.json with point matches."),
                io.String.Input("dataset", default="readout_dataset",
                                tooltip="The dataset folder: an absolute path, or a folder inside ComfyUI's input "
                                "folder."),
                io.String.Input("head_name", default="my_head.safetensors",
                                tooltip="File name for the trained head in models/readout_heads."),
                io.Combo.Input("control_type", options=list(CONTROL_TYPES), default="depth",
                               tooltip="Spatial heads: what the control images are (pose and edge use ±0.5 and the "
                               "sparse loss, as released; the rest ±1)."),
                io.Combo.Input("sparse_loss", options=list(SPARSE_CHOICES), default="auto",
                               tooltip="Spatial heads: balance background and foreground (auto: on for pose, edge)."),
                io.Int.Input("resolution", default=512, min=64, max=2048, step=64,
                             tooltip="Training image size (released: 512 SD1.5, 1024 SDXL)."),
                io.Int.Input("steps", default=0, min=0, max=100000,
                             tooltip="Training steps; 0 = the released recipe (spatial 5000, appearance 1000, "
                             "correspondence 10000)."),
                io.Int.Input("batch_size", default=0, min=0, max=256, tooltip="0 = the released recipe."),
                io.Float.Input("learning_rate", default=0.0, min=0.0, max=1.0, step=1e-5, round=1e-6,
                               tooltip="0 = the released recipe (1e-3; appearance 1e-4)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFF, tooltip="Fixes noise levels, split and batches."),
                io.Int.Input("triplets", default=100, min=1, max=100000,
                             tooltip="Appearance / identity: triplets (anchor, same subject, SDEdit of the anchor)."),
                io.Int.Input("checkpoint_every", default=500, min=1, max=100000,
                             tooltip="Steps between checkpoints (and progress reports, at most every 100)."),
                io.Boolean.Input("resume", default=True,
                                 tooltip="Continue from this head's last checkpoint if the settings match."),
                io.Boolean.Input("cache_features", default=True,
                                 tooltip="Keep the extracted features on disk: retraining with other settings "
                                 "starts at once."),
            ],
            outputs=[ReadoutHeadType.Output(display_name="head", tooltip="The trained head, ready to use."),
                     io.String.Output(display_name="report", tooltip="Where the head went and its losses.")],
        )

    @classmethod
    def validate_inputs(cls, head_name: str | None = None, **_unused) -> bool | str:
        return parse_problem(_head_file_name, head_name)

    @classmethod
    def execute(cls, model, vae, empty_prompt, kind: str, dataset: str, head_name: str, control_type: str,
                sparse_loss: str, resolution: int, steps: int, batch_size: int, learning_rate: float, seed: int,
                triplets: int, checkpoint_every: int, resume: bool, cache_features: bool) -> io.NodeOutput:
        name = _head_file_name(head_name)
        output = Path(folder_paths.get_folder_paths(HEADS_FOLDER)[0]) / name
        work = Path(folder_paths.get_output_directory()) / WORK_FOLDER / Path(name).stem
        if output.exists():
            raise ReadoutError(f"{output} already exists; choose another head_name or move the old head away.")
        config = recipe_config(kind, steps, batch_size, learning_rate, seed=seed, checkpoint_every=checkpoint_every,
                               validate_every=min(100, checkpoint_every))
        request = TrainRequest(
            kind=kind, dataset=_dataset_folder(dataset), output=output, config=config, resolution=resolution,
            control_type=control_type, sparse=None if sparse_loss == "auto" else sparse_loss == "on",
            triplets=triplets, checkpoint_dir=work, resume=resume,
            cache=work / "features.safetensors" if cache_features else None)
        source = HostFeatureSource(model, vae, empty_prompt)
        bar = comfy.utils.ProgressBar(config.steps)

        def on_extract(done: int, total: int) -> None:
            show_text_under_node(f"Extracting features {done}/{total}")
            comfy.model_management.throw_exception_if_processing_interrupted()

        def on_train(record: dict) -> None:  # called after each checkpoint: interrupting here loses nothing
            show_text_under_node(_record_text(record, config.steps))
            bar.update_absolute(record["step"], config.steps)
            comfy.model_management.throw_exception_if_processing_interrupted()

        with torch.inference_mode(False):  # the host runs prompts in inference mode; training needs autograd
            path, state = train_from_folder(source, request, on_extract, on_train)
        report = (f"Saved {path} after {state.step} steps; validation loss {state.validation_loss}. "
                  f"Checkpoints and feature cache: {work}.")
        show_text_under_node(report)
        return io.NodeOutput(load_head(path), report)


def _head_file_name(head_name: str) -> str:
    """A plain ``.safetensors`` file name (no folders), the suffix added if missing."""
    name = head_name.strip()
    if (not name or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES or os.path.basename(name) != name or name.startswith(".") or "\\" in name
            or not name.isprintable()):
        raise ReadoutError(f"head_name {head_name[:60]!r} must be a plain file name such as my_depth.safetensors "
                           f"(no folders, printable characters, at most {MAX_NAME_BYTES} bytes).")
    return name if name.endswith(".safetensors") else name + ".safetensors"


def _dataset_folder(dataset: str) -> Path:
    path = Path(dataset.strip()).expanduser()
    if not path.is_absolute():
        path = Path(folder_paths.get_input_directory()) / path
    if not path.is_dir():
        raise ReadoutError(f"The dataset folder {path} does not exist. Give an absolute path or a folder inside "
                           f"{folder_paths.get_input_directory()}.")
    return path


def _record_text(record: dict, total: int) -> str:
    validation = f", validation {record['validation_loss']:.4f}" if "validation_loss" in record else ""
    return f"Training step {record['step']}/{total}: loss {record['loss']:.4f}{validation}"
