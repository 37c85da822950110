"""Load Readout Head: a head file from ``models/readout_heads`` (downloaded if it is a
published head that is not there yet) → READOUT_HEAD."""

from __future__ import annotations

from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io

from readout_core import HeadFileError, ReadoutHead, load_head
from readout_core.heads.download import download_and_load_head
from readout_core.heads.published import PublishedHead, find_published_head, published_head_names

from .io_types import ReadoutHeadType
from .model_folders import HEADS_FOLDER, head_file_names


def head_choices() -> list[str]:
    """Local head files first, then the published heads not downloaded yet."""
    local = head_file_names()
    return local + [name for name in published_head_names() if name not in local]


class LoadReadoutHead(io.ComfyNode):
    """Loads a published ``.pt`` or a pack ``.safetensors`` readout head."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_LoadHead",
            display_name="Load Readout Head",
            category="Readout Guidance",
            description="Loads a readout head (pose / depth / edge / appearance / correspondence / keypoint) "
            "from models/readout_heads. A published head that is not there yet is downloaded on first use.",
            inputs=[
                io.Combo.Input(
                    "head_name",
                    options=head_choices(),
                    tooltip="A head file in models/readout_heads (.safetensors, or a published .pt). "
                    "Published heads missing locally are downloaded from the authors' Hugging Face page.",
                ),
            ],
            outputs=[ReadoutHeadType.Output(display_name="head", tooltip="The loaded readout head.")],
        )

    @classmethod
    def validate_inputs(cls, head_name: str) -> bool | str:
        if folder_paths.get_full_path(HEADS_FOLDER, head_name) or find_published_head(head_name):
            return True
        return _not_found(head_name)

    @classmethod
    def execute(cls, head_name: str) -> io.NodeOutput:
        path = folder_paths.get_full_path(HEADS_FOLDER, head_name)
        if path is not None:
            return io.NodeOutput(load_head(path))
        published = find_published_head(head_name)
        if published is None:
            raise HeadFileError(_not_found(head_name))
        return io.NodeOutput(_download(published))


def _not_found(head_name: str) -> str:
    """Names that are neither in the heads folders nor published (paths outside the folder included)."""
    folder = folder_paths.get_folder_paths(HEADS_FOLDER)[0]
    candidate = Path(folder, head_name).resolve()
    if candidate.is_dir() and candidate.is_relative_to(Path(folder).resolve()):
        return (f"Readout head {head_name!r} is a folder inside {folder}, not a head file: pick a .safetensors or "
                ".pt file (files in sub-folders are listed as sub/name.pt).")
    return (f"Readout head {head_name!r} not found. Put the file in {folder} (sub-folders are fine; paths "
            "outside it are not read) and refresh the page (press R).")


def _download(published: PublishedHead) -> ReadoutHead:
    """The published head, downloaded into the heads folder with the host's progress bar and interrupt."""
    folder = folder_paths.get_folder_paths(HEADS_FOLDER)[0]
    bar = comfy.utils.ProgressBar(100)

    def progress(done: int, total: int | None) -> None:
        if total:
            bar.update_absolute(min(100, done * 100 // total), 100)

    def should_stop() -> bool:
        comfy.model_management.throw_exception_if_processing_interrupted()
        return False

    return download_and_load_head(published, folder, progress=progress, should_stop=should_stop)
