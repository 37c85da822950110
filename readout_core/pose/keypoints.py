"""Body poses in the OpenPose JSON layout (ComfyUI's ``POSE_KEYPOINT``): parsing and writing.

comfyui_controlnet_aux's DWPose and OpenPose preprocessors output ``POSE_KEYPOINT``: a list,
one entry per image, of OpenPose dicts::

    {"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...],
                 "face_keypoints_2d": ..., "hand_left_keypoints_2d": ..., "hand_right_keypoints_2d": ...}],
     "canvas_width": W, "canvas_height": H}

- ``pose_keypoints_2d`` holds 18 body joints in OpenPose (COCO-18) order, as flat
  ``x, y, confidence`` triples (lists of ``[x, y, c]`` triples are accepted too); a missing
  joint is ``0, 0, 0``. The 25-joint BODY_25 layout of CMU OpenPose is mapped to the 18.
- Coordinates are pixels of the ``canvas_width × canvas_height`` image (DWPose), or 0..1
  fractions of it (the OpenPose preprocessor). As in controlnet_aux's own drawing code, a
  person whose present joints all lie within 0..1 is read as fractions.
- Face and hand keypoints are ignored: the keypoint heads read body joints only. An
  AP-10K animal pose (``"animals"``) is refused.

`PoseFrame` keeps each person's joints as fractions of the canvas, so a pose maps onto a
readout of any size. The same JSON as text is accepted (bounded in size).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ReadoutError
from ..safe_json import read_json

JOINT_NAMES = (
    "nose", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder", "left elbow", "left wrist",
    "right hip", "right knee", "right ankle", "left hip", "left knee", "left ankle", "right eye", "left eye",
    "right ear", "left ear",
)
"""The 18 body joints in OpenPose order: the channel order of the keypoint heads."""

JOINTS = len(JOINT_NAMES)

BODY25_TO_OPENPOSE18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
"""For each of the 18 joints, its index in CMU OpenPose's BODY_25 (which adds a mid-hip and feet)."""

LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
"""The skeleton's 17 limbs as joint pairs, in the order OpenPose colours them."""

COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
"""OpenPose's colours: joint j and limb j use colour j (what pose ControlNets were trained on)."""

MAX_TEXT_CHARS = 1_048_576
MAX_FRAMES = 4096
MAX_PEOPLE = 100
MAX_CANVAS = 16384


class PoseKeypointError(ReadoutError):
    """A pose (POSE_KEYPOINT or its JSON text) cannot be used; the message says what to change."""


@dataclass(frozen=True)
class PoseFrame:
    """The body poses of one image.

    Attributes:
        width, height: the canvas (image) size in pixels the pose was made on.
        people: ``[P, 18, 3]`` float tensor of ``(x, y, confidence)``, x and y as fractions
            of the width and height (0..1 inside the image); confidence 0 marks a missing joint.
    """

    width: int
    height: int
    people: torch.Tensor

    def present(self) -> torch.Tensor:
        """``[P, 18]`` bool: which joints of which person are there (confidence > 0)."""
        return self.people[..., 2] > 0

    def as_openpose(self) -> dict:
        """This frame as an OpenPose dict in pixel coordinates (the DWPose layout)."""
        people = []
        for person in self.people.tolist():
            flat: list[float] = []
            for x, y, confidence in person:
                flat += [x * self.width, y * self.height, confidence] if confidence > 0 else [0.0, 0.0, 0.0]
            people.append({"pose_keypoints_2d": flat})
        return {"people": people, "canvas_width": self.width, "canvas_height": self.height}


def pose_keypoint_value(frames: list[PoseFrame]) -> list[dict]:
    """Frames as a ``POSE_KEYPOINT`` value (a list of OpenPose dicts, pixel coordinates)."""
    return [frame.as_openpose() for frame in frames]


def pose_keypoint_text(frames: list[PoseFrame]) -> str:
    """Frames as ``POSE_KEYPOINT`` JSON text (what the pose text box and the canvas hold)."""
    return json.dumps(pose_keypoint_value(frames))


def parse_pose_keypoint(value: Any) -> list[PoseFrame]:
    """A ``POSE_KEYPOINT`` value, one OpenPose dict, or either as JSON text → one `PoseFrame` per image.

    Raises `PoseKeypointError` naming the part at fault.
    """
    if isinstance(value, str):
        value = load_json_text(value, "The pose text")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise PoseKeypointError(
            f"A pose must be a POSE_KEYPOINT list (from DWPose / OpenPose Pose) or its JSON text, got {_kind(value)}."
        )
    if not value:
        raise PoseKeypointError("The pose list is empty: it needs one OpenPose entry per image (or one for all).")
    if len(value) > MAX_FRAMES:
        raise PoseKeypointError(f"The pose list has {len(value)} entries; at most {MAX_FRAMES} are read.")
    return [_frame(entry, index) for index, entry in enumerate(value)]


def load_json_text(text: str, what: str) -> Any:
    """JSON text → Python values through the pack's bounded reader (size, nesting, finite numbers)."""
    if isinstance(text, str) and not text.strip():
        raise PoseKeypointError(f"{what} is empty; give a POSE_KEYPOINT input or OpenPose JSON.")
    return read_json(text, what, PoseKeypointError, MAX_TEXT_CHARS)


def _frame(entry: Any, index: int) -> PoseFrame:
    where = f"Pose entry {index}"
    if not isinstance(entry, dict):
        raise PoseKeypointError(f"{where} must be an OpenPose dict with 'people', got {_kind(entry)}.")
    if "people" not in entry:
        if "animals" in entry:
            raise PoseKeypointError(f"{where} is an animal pose (AP-10K); the keypoint heads read human body poses.")
        raise PoseKeypointError(f"{where} has no 'people' list; give OpenPose JSON as DWPose / OpenPose Pose output it.")
    width = _canvas_side(entry, "canvas_width", where)
    height = _canvas_side(entry, "canvas_height", where)
    people = entry["people"]
    if not isinstance(people, list):
        raise PoseKeypointError(f"{where}: 'people' must be a list of people, got {_kind(people)}.")
    if len(people) > MAX_PEOPLE:
        raise PoseKeypointError(f"{where} has {len(people)} people; at most {MAX_PEOPLE} are read.")
    joints = [_person(person, width, height, f"{where}, person {number}") for number, person in enumerate(people)]
    stacked = torch.stack(joints) if joints else torch.zeros(0, JOINTS, 3)
    return PoseFrame(width=width, height=height, people=stacked)


def _canvas_side(entry: dict, key: str, where: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or not 1 <= value <= MAX_CANVAS:
        raise PoseKeypointError(
            f"{where} needs '{key}': the image size in pixels (a whole number 1..{MAX_CANVAS}), got {value!r}."
        )
    return int(value)


def _person(person: Any, width: int, height: int, where: str) -> torch.Tensor:
    if not isinstance(person, dict):
        raise PoseKeypointError(f"{where} must be a dict with 'pose_keypoints_2d', got {_kind(person)}.")
    numbers = person.get("pose_keypoints_2d")
    if numbers is None or numbers == []:
        return torch.zeros(JOINTS, 3)  # body not detected (or not asked for): every joint missing
    if not isinstance(numbers, list):
        raise PoseKeypointError(f"{where}: 'pose_keypoints_2d' must be a list of numbers, got {_kind(numbers)}.")
    if all(isinstance(item, list) for item in numbers):
        if any(len(item) != 3 for item in numbers):
            raise PoseKeypointError(f"{where}: each joint in 'pose_keypoints_2d' must be [x, y, confidence].")
        numbers = [value for item in numbers for value in item]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in numbers):
        raise PoseKeypointError(f"{where}: 'pose_keypoints_2d' must hold finite numbers only.")
    if len(numbers) % 3 or len(numbers) // 3 not in (JOINTS, len(BODY25_TO_OPENPOSE18) + 7):
        raise PoseKeypointError(
            f"{where}: 'pose_keypoints_2d' has {len(numbers)} numbers; it needs 18 joints × (x, y, confidence) "
            "= 54 in OpenPose order (or BODY_25's 75)."
        )
    joints = torch.tensor(numbers, dtype=torch.float32).reshape(-1, 3)
    if joints.shape[0] != JOINTS:
        joints = joints[list(BODY25_TO_OPENPOSE18)]
    present = joints[:, 2] > 0
    joints[~present] = 0.0
    joints[:, 2] = joints[:, 2].clamp(0.0, 1.0)
    if present.any() and not (joints[present, :2].abs() <= 1).all():
        joints[:, 0] /= width
        joints[:, 1] /= height
    return joints


def _kind(value: Any) -> str:
    return "text" if isinstance(value, str) else ("nothing" if value is None else type(value).__name__)


def pose_from_inputs(pose_keypoint: Any, pose_text: str | None) -> list[PoseFrame]:
    """The pose a target node uses: its ``pose_text`` when not blank (an edited pose), else the
    upstream ``POSE_KEYPOINT``; `PoseKeypointError` when there is neither."""
    if pose_text is not None and pose_text.strip():
        return parse_pose_keypoint(pose_text)
    if pose_keypoint is None:
        raise PoseKeypointError(
            "No pose: connect a POSE_KEYPOINT (DWPose Estimator, OpenPose Pose or Readout Pose) or write OpenPose "
            "JSON into pose_text."
        )
    return parse_pose_keypoint(pose_keypoint)
