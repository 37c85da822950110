"""POSE_KEYPOINT parsing (DWPose / OpenPose layouts, text, malformed input) and writing."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from readout_core import ReadoutError
from readout_core.pose.drawing import draw_poses
from readout_core.pose.keypoints import (
    COLOURS,
    JOINTS,
    PoseKeypointError,
    parse_pose_keypoint,
    pose_from_inputs,
    pose_keypoint_text,
    pose_keypoint_value,
)

WIDTH, HEIGHT = 768, 512


def body(joints: dict[int, tuple[float, float]], confidence: float = 1.0) -> list[float]:
    """A flat pose_keypoints_2d list, missing joints as 0, 0, 0 (as controlnet_aux writes them)."""
    flat: list[float] = []
    for joint in range(JOINTS):
        flat += [*joints[joint], confidence] if joint in joints else [0.0, 0.0, 0.0]
    return flat


JOINTS_A = {0: (384.0, 100.0), 1: (384.0, 160.0), 2: (330.0, 160.0), 5: (438.0, 160.0), 8: (350.0, 300.0)}
JOINTS_B = {0: (100.0, 80.0), 1: (110.0, 150.0)}


def dwpose_output() -> list[dict]:
    """What DWPose Estimator returns for one image of two people: pixel coordinates, face and hands lists."""
    return [{
        "people": [
            {"pose_keypoints_2d": body(JOINTS_A), "face_keypoints_2d": [1.0, 2.0, 1.0] * 70,
             "hand_left_keypoints_2d": [5.0, 6.0, 1.0] * 21, "hand_right_keypoints_2d": None},
            {"pose_keypoints_2d": body(JOINTS_B), "face_keypoints_2d": None,
             "hand_left_keypoints_2d": None, "hand_right_keypoints_2d": None},
        ],
        "canvas_height": HEIGHT,
        "canvas_width": WIDTH,
    }]


def test_dwpose_pixels_become_fractions_of_the_canvas():
    (frame,) = parse_pose_keypoint(dwpose_output())
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    assert frame.people.shape == (2, JOINTS, 3)
    assert torch.allclose(frame.people[0, 0], torch.tensor([0.5, 100 / 512, 1.0]))
    assert torch.allclose(frame.people[1, 1], torch.tensor([110 / 768, 150 / 512, 1.0]))
    assert frame.present()[0].nonzero().flatten().tolist() == [0, 1, 2, 5, 8]
    assert frame.present()[1].sum() == 2


def test_openpose_preprocessor_fractions_are_kept():
    normalised = {j: (x / WIDTH, y / HEIGHT) for j, (x, y) in JOINTS_A.items()}
    value = [{"people": [{"pose_keypoints_2d": body(normalised)}], "canvas_width": WIDTH, "canvas_height": HEIGHT}]
    (frame,) = parse_pose_keypoint(value)
    (pixels,) = parse_pose_keypoint(dwpose_output())
    assert torch.allclose(frame.people[0], pixels.people[0], atol=1e-6)


def test_round_trip_through_the_pixel_layout_and_text():
    frames = parse_pose_keypoint(dwpose_output())
    value = pose_keypoint_value(frames)
    assert value[0]["canvas_width"] == WIDTH and len(value[0]["people"]) == 2
    assert value[0]["people"][0]["pose_keypoints_2d"][:6] == pytest.approx([384.0, 100.0, 1.0, 384.0, 160.0, 1.0])
    assert value[0]["people"][0]["pose_keypoints_2d"][9:12] == [0.0, 0.0, 0.0]  # joint 3 stays missing
    again = parse_pose_keypoint(pose_keypoint_text(frames))
    assert torch.allclose(again[0].people, frames[0].people, atol=1e-6)


def test_triples_body25_single_dict_and_real_confidences():
    triples = [[x, y, 0.8 * c] for x, y, c in zip(*[iter(body(JOINTS_A))] * 3)]
    (frame,) = parse_pose_keypoint({"people": [{"pose_keypoints_2d": triples}], "canvas_width": WIDTH,
                                    "canvas_height": HEIGHT})
    assert frame.people[0, 0, 2] == pytest.approx(0.8) and frame.present()[0].sum() == 5
    body25 = [0.0] * 75
    body25[8 * 3:8 * 3 + 3] = [10.0, 20.0, 0.9]  # BODY_25 mid-hip: not one of the 18
    body25[9 * 3:9 * 3 + 3] = [300.0, 200.0, 0.7]  # BODY_25 right hip = joint 8
    (frame,) = parse_pose_keypoint([{"people": [{"pose_keypoints_2d": body25}], "canvas_width": 600,
                                     "canvas_height": 400}])
    assert frame.present()[0].nonzero().flatten().tolist() == [8]
    assert torch.allclose(frame.people[0, 8], torch.tensor([0.5, 0.5, 0.7]))


def test_no_body_and_no_people_are_poses_without_joints():
    value = [{"people": [{"pose_keypoints_2d": None, "face_keypoints_2d": [1.0, 1.0, 1.0] * 70}],
              "canvas_width": 64, "canvas_height": 64},
             {"people": [], "canvas_width": 64, "canvas_height": 64}]
    first, second = parse_pose_keypoint(value)
    assert not first.present().any() and second.people.shape == (0, JOINTS, 3)


@pytest.mark.parametrize("value, message", [
    (42, "POSE_KEYPOINT list"),
    ([], "empty"),
    ("", "empty"),
    ("{not json", "not valid JSON \\(.* at line 1"),
    ("[" * 100000, "nested more than 32 levels deep"),
    ('[{"people": [], "canvas_width": NaN, "canvas_height": 5}]', "finite numbers"),
    ("x" * 1_048_577, "at most 1,048,576 are read"),
    ([3], "must be an OpenPose dict"),
    ([{"canvas_width": 5, "canvas_height": 5}], "no 'people' list"),
    ([{"animals": [], "canvas_width": 5, "canvas_height": 5}], "animal pose"),
    ([{"people": {}, "canvas_width": 5, "canvas_height": 5}], "'people' must be a list"),
    ([{"people": []}], "needs 'canvas_width'"),
    ([{"people": [], "canvas_width": 0, "canvas_height": 5}], "needs 'canvas_width'"),
    ([{"people": [], "canvas_width": 5.5, "canvas_height": 5}], "needs 'canvas_width'"),
    ([{"people": [], "canvas_width": True, "canvas_height": 5}], "needs 'canvas_width'"),
    ([{"people": [7], "canvas_width": 5, "canvas_height": 5}], "person 0 must be a dict"),
    ([{"people": [{"pose_keypoints_2d": "1,2,3"}], "canvas_width": 5, "canvas_height": 5}], "list of numbers"),
    ([{"people": [{"pose_keypoints_2d": [1, 2, 3]}], "canvas_width": 5, "canvas_height": 5}], "has 3 numbers"),
    ([{"people": [{"pose_keypoints_2d": [[1, 2]] * 18}], "canvas_width": 5, "canvas_height": 5}], "\\[x, y, confidence\\]"),
    ([{"people": [{"pose_keypoints_2d": ["a"] * 54}], "canvas_width": 5, "canvas_height": 5}], "finite numbers"),
    ([{"people": [{"pose_keypoints_2d": [float("inf")] * 54}], "canvas_width": 5, "canvas_height": 5}], "finite"),
    ([{"people": [{}] * 101, "canvas_width": 5, "canvas_height": 5}], "at most 100"),
])
def test_malformed_poses_say_what_to_change(value, message):
    with pytest.raises(PoseKeypointError, match=message) as caught:
        parse_pose_keypoint(value)
    assert isinstance(caught.value, ReadoutError)


def test_skeleton_is_drawn_in_openpose_colours_where_the_joints_are():
    (frame,) = parse_pose_keypoint(dwpose_output())
    image = draw_poses([frame])
    assert image.shape == (1, HEIGHT, WIDTH, 3) and image.min() >= 0 and image.max() <= 1
    nose = image[0, 100, 384]  # joint 0: red, full colour
    assert torch.allclose(nose, torch.tensor(COLOURS[0]) / 255, atol=0.01)
    neck_to_right_shoulder = image[0, 160, 357]  # limb 0 (joints 1–2) at 60 % of colour 0
    assert torch.allclose(neck_to_right_shoulder, 0.6 * torch.tensor(COLOURS[0]) / 255, atol=0.01)
    assert image[0, 400, 700].sum() == 0  # background stays black
    assert draw_poses([frame], size=(64, 32)).shape == (1, 32, 64, 3)


def test_text_written_by_hand_is_read():
    text = json.dumps({"people": [{"pose_keypoints_2d": body({0: (0.25, 0.5)})}], "canvas_width": 100,
                       "canvas_height": 80})
    (frame,) = parse_pose_keypoint(text)
    assert torch.allclose(frame.people[0, 0], torch.tensor([0.25, 0.5, 1.0]))


def test_the_node_text_wins_over_the_upstream_pose_and_one_is_needed():
    text = json.dumps({"people": [{"pose_keypoints_2d": body({0: (0.25, 0.5)})}], "canvas_width": 100,
                       "canvas_height": 80})
    (edited,) = pose_from_inputs(dwpose_output(), text)
    assert edited.width == 100
    (upstream,) = pose_from_inputs(dwpose_output(), "  \n")
    assert upstream.width == WIDTH
    with pytest.raises(PoseKeypointError, match="connect a POSE_KEYPOINT"):
        pose_from_inputs(None, "")


POSE_EXAMPLES = 300
"""Random pose structures per run (the README's reliability section quotes this count)."""

pose_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(
        st.sampled_from(["people", "pose_keypoints_2d", "canvas_width", "canvas_height", "animals",
                         "face_keypoints_2d"]), children, max_size=5),
    max_leaves=60,
)


@settings(max_examples=POSE_EXAMPLES, deadline=None)
@given(value=pose_values)
def test_random_structures_give_poses_or_a_pose_error(value):
    try:
        frames = parse_pose_keypoint(value)
    except PoseKeypointError:
        return
    for frame in frames:
        assert frame.people.ndim == 3 and frame.people.shape[1:] == (JOINTS, 3)
        assert torch.isfinite(frame.people).all() and frame.width >= 1 and frame.height >= 1
