"""The readout heads the Readout Guidance authors published, and where to fetch them.

Twelve ``.pt`` files on the authors' Hugging Face repository ``g-luo/readout-guidance``:
for each of SD1.5 and SDXL,
spatial pose / depth / edge heads, drag correspondence / appearance heads
(``weights/``) and a pose-keypoint head (``readout_pose/``). The files keep their
published names; `PUBLISHED_HEAD_NAMES` is the list a ComfyUI combo box offers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import HeadFileError

REPOSITORY = "g-luo/readout-guidance"
BASE_URL = f"https://huggingface.co/{REPOSITORY}/resolve/main"
_FAMILY_PREFIX = {"sd15": "sdv15", "sdxl": "sdxl"}


@dataclass(frozen=True)
class PublishedHead:
    """One published head file.

    Attributes:
        name: the file name, e.g. ``readout_sdxl_spatial_pose.pt``; the file is saved
            under this name in the heads folder.
        url: direct download URL (``.../resolve/main/<path>?download=true``).
        kind: spatial, keypoint, appearance or correspondence (as `HeadInfo.kind`).
        family: ``sd15`` or ``sdxl`` (as `HeadInfo.family`).
        control_type: pose / depth / edge for spatial heads, ``pose_keypoint`` for
            keypoint heads, None for appearance and correspondence heads.
    """

    name: str
    url: str
    kind: str
    family: str
    control_type: str | None

    @property
    def stem(self) -> str:
        """The file name without ``.pt``."""
        return self.name[: -len(".pt")]

    def describe(self) -> str:
        """One line for users, e.g. ``spatial pose head for SDXL``."""
        what = f"{self.control_type} " if self.kind == "spatial" else ""
        return f"{what}{self.kind} head for {self.family.upper()}"


def _head(family: str, folder: str, what: str, kind: str, control_type: str | None) -> PublishedHead:
    name = f"readout_{_FAMILY_PREFIX[family]}_{what}.pt"
    return PublishedHead(
        name=name,
        url=f"{BASE_URL}/{folder}/{name}?download=true",
        kind=kind,
        family=family,
        control_type=control_type,
    )


def _registry() -> tuple[PublishedHead, ...]:
    heads: list[PublishedHead] = []
    for family in ("sd15", "sdxl"):
        for control in ("pose", "depth", "edge"):
            heads.append(_head(family, "weights", f"spatial_{control}", "spatial", control))
        heads.append(_head(family, "weights", "drag_correspondence", "correspondence", None))
        heads.append(_head(family, "weights", "drag_appearance", "appearance", None))
        heads.append(_head(family, "readout_pose", "pose_keypoint", "keypoint", "pose_keypoint"))
    return tuple(heads)


PUBLISHED_HEADS: tuple[PublishedHead, ...] = _registry()
PUBLISHED_HEAD_NAMES: tuple[str, ...] = tuple(head.name for head in PUBLISHED_HEADS)
_BY_NAME = {head.name: head for head in PUBLISHED_HEADS}


def published_head_names() -> list[str]:
    """The published file names, SD1.5 first, for a combo box (a fresh list each call)."""
    return list(PUBLISHED_HEAD_NAMES)


def find_published_head(name: str) -> PublishedHead | None:
    """The published head called ``name``, or None.

    ``name`` is a file name (``readout_sdxl_spatial_pose.pt``) or its stem
    (``readout_sdxl_spatial_pose``); a folder part (``sub/readout_....pt``, as
    ComfyUI lists files in subfolders) is ignored. Matching is exact otherwise.
    """
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    return _BY_NAME.get(base) or _BY_NAME.get(base + ".pt")


def get_published_head(name: str) -> PublishedHead:
    """Like `find_published_head`, but an unknown name raises `HeadFileError` listing the known ones."""
    head = find_published_head(name)
    if head is None:
        raise HeadFileError(
            f"{name!r} is not one of the published readout heads. Known names: {', '.join(PUBLISHED_HEAD_NAMES)}."
        )
    return head
