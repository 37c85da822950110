"""The ``models/readout_heads`` folder, registered with the host's ``folder_paths``."""

from __future__ import annotations

import os

import folder_paths

from readout_core import HEAD_EXTENSIONS

HEADS_FOLDER = "readout_heads"


def register_model_folders() -> None:
    """Register ``models/readout_heads`` as the default heads folder.

    Paths a user gave for ``readout_heads`` in ``extra_model_paths.yaml`` (loaded by
    the host before packs) are kept; the default folder is put first.
    """
    default = os.path.join(folder_paths.models_dir, HEADS_FOLDER)
    os.makedirs(default, exist_ok=True)
    folder_paths.add_model_folder_path(HEADS_FOLDER, default, is_default=True)
    paths, _extensions = folder_paths.folder_names_and_paths[HEADS_FOLDER]
    folder_paths.folder_names_and_paths[HEADS_FOLDER] = (paths, set(HEAD_EXTENSIONS))


def head_file_names() -> list[str]:
    """Head files in the registered folders, without hidden or partial downloads."""
    names = folder_paths.get_filename_list(HEADS_FOLDER)
    return [name for name in names if not os.path.basename(name).startswith(".") and ".partial" not in name]
