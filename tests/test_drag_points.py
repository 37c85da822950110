"""Drag point parsing: every accepted format, the released pixel → latent mapping, and errors."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from readout_core import ReadoutError
from readout_core.crop_boxes import box_from_mask, parse_box
from readout_core.drag_points import PointsError, check_image_fits_latent, parse_drag_points, read_point_pairs

SIZE = (512, 384)  # width, height
EXPECTED_HANDLES = [[100.0, 120.0], [300.5, 40.0]]
EXPECTED_TARGETS = [[160.0, 120.0], [280.0, 200.0]]

FORMATS = {
    "canvas": json.dumps({"width": 512, "height": 384, "pairs": [
        {"handle": [100, 120], "target": [160, 120]}, {"handle": [300.5, 40], "target": [280, 200]}]}),
    "pairs": "[[[100, 120], [160, 120]], [[300.5, 40], [280, 200]]]",
    "handles_targets": '{"handles": [[100, 120], [300.5, 40]], "targets": [[160, 120], [280, 200]]}',
    "released_tracks": "[[[[100, 120], [300.5, 40]], [[160, 120], [280, 200]]]]",
    "kjnodes": '[{"x": 100, "y": 120}, {"x": 160, "y": 120}, {"x": 300.5, "y": 40}, {"x": 280, "y": 200}]',
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_gives_the_same_pairs(name):
    points = parse_drag_points(FORMATS[name], SIZE)
    assert points.handles.tolist() == EXPECTED_HANDLES
    assert points.targets.tolist() == EXPECTED_TARGETS
    assert points.image_size == SIZE and points.dropped == ()


def test_released_three_track_frames_use_first_and_last_frame_pairs():
    # (F = 2, N = 3, 2): frame 0 handles, frame 1 targets
    text = "[[[8, 16], [24, 32], [40, 48]], [[16, 16], [32, 32], [48, 48]]]"
    points = parse_drag_points(text, SIZE)
    assert points.handles.tolist() == [[8, 16], [24, 32], [40, 48]]
    assert points.targets.tolist() == [[16, 16], [32, 32], [48, 48]]


def test_latent_points_are_yx_divided_by_eight_as_released():
    points = parse_drag_points(FORMATS["pairs"], SIZE)
    source, target = points.latent_points((48, 64))
    assert source.tolist() == [[15.0, 12.5], [5.0, 37.5625]]
    assert target.tolist() == [[15.0, 20.0], [25.0, 35.0]]


def test_points_drawn_on_another_size_are_rescaled():
    text = json.dumps({"width": 256, "height": 192, "pairs": [{"handle": [50, 60], "target": [80, 60]}]})
    points = parse_drag_points(text, SIZE)
    assert points.handles.tolist() == [[100.0, 120.0]] and points.targets.tolist() == [[160.0, 120.0]]


def test_pairs_outside_the_image_are_dropped_with_a_note():
    text = "[[[100, 120], [160, 120]], [[500, 10], [530, 10]], [[-1, 5], [10, 5]], [[10, 383], [10, 384]]]"
    points = parse_drag_points(text, SIZE)
    assert len(points) == 1 and points.handles.tolist() == [[100.0, 120.0]]
    assert points.dropped == (
        "pair 2 (target outside the 512×384 image)",
        "pair 3 (handle outside the 512×384 image)",
        "pair 4 (target outside the 512×384 image)",
    )


@pytest.mark.parametrize("text, message", [
    ("", "No drag points"),
    ("   ", "No drag points"),
    ("[]", "No drag points"),
    ('{"pairs": []}', "No drag points"),
    ("[[[1, 2], [3, 4]],", "not valid JSON"),
    ('{"handles": [[1, 2]], "targets": [[3, 4], [5, 6]]}', "more targets than handles"),
    ('{"handles": [[1, 2], [3, 4]], "targets": [[5, 6]]}', "more handles than targets"),
    ('[{"x": 1, "y": 2}, {"x": 3, "y": 4}, {"x": 5, "y": 6}]', "count must be even"),
    ('[{"x": 1}, {"x": 3, "y": 4}]', 'needs "x" and "y"'),
    ('[[[1, "a"], [3, 4]]]', "finite number"),
    ('[[[1, 2, 3], [3, 4]]]', "A point must be"),
    ('{"pairs": [{"handle": [1, 2]}]}', 'needs a "handle" and a "target"'),
    ('{"width": 0, "height": 10, "pairs": []}', "must be positive"),
    ('"hello"', "must be a JSON list or object"),
    ('{"points": []}', 'needs "pairs"'),
])
def test_bad_points_say_what_is_wrong(text, message):
    with pytest.raises(PointsError, match=message):
        parse_drag_points(text, SIZE)


def test_validation_without_an_image_catches_the_same_mistakes():
    assert read_point_pairs(FORMATS["pairs"])[0] == [(100.0, 120.0), (300.5, 40.0)]
    with pytest.raises(PointsError, match="not valid JSON"):
        read_point_pairs("{")


def test_an_image_of_another_size_than_the_latent_is_refused():
    check_image_fits_latent((512, 384), (48, 64))
    check_image_fits_latent((515, 389), (48, 64))  # the VAE crops to a multiple of 8
    with pytest.raises(PointsError, match=r"512×384 image, but the latent is 512×512"):
        check_image_fits_latent((512, 384), (64, 64))
    points = parse_drag_points(FORMATS["pairs"], SIZE)
    with pytest.raises(PointsError, match="Draw the points on the image"):
        points.latent_points((64, 64))


JSON_EXAMPLES, TEXT_EXAMPLES = 300, 200
"""Examples per property (the README's reliability section quotes these counts)."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["x", "y", "pairs", "handle", "target", "handles", "targets", "width", "height"]),
        children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=JSON_EXAMPLES, deadline=None)
@given(value=json_values, width=st.integers(1, 4096), height=st.integers(1, 4096))
def test_random_json_gives_points_or_a_points_error(value, width, height):
    try:
        points = parse_drag_points(json.dumps(value), (width, height))
    except PointsError:
        return
    assert points.handles.shape == points.targets.shape and points.handles.shape[-1] == 2
    inside = (points.handles[:, 0] < width) & (points.handles[:, 1] < height) & (points.handles >= 0).all(dim=1)
    assert bool(inside.all())


coordinates = st.floats(-100, 700, allow_nan=False)
canvas_pairs = st.lists(st.tuples(coordinates, coordinates, coordinates, coordinates), min_size=1, max_size=5)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@settings(max_examples=TEXT_EXAMPLES, deadline=None)
@given(text=st.text(max_size=40).filter(lambda text: not _is_json(text)))
def test_text_that_is_not_json_gives_a_points_error(text):
    with pytest.raises(PointsError, match="JSON|points|pairs"):
        parse_drag_points(text, SIZE)


@settings(max_examples=TEXT_EXAMPLES, deadline=None)
@given(pairs=canvas_pairs)
def test_canvas_json_keeps_exactly_the_pairs_inside_the_image(pairs):
    text = json.dumps({"pairs": [{"handle": [hx, hy], "target": [tx, ty]} for hx, hy, tx, ty in pairs]})
    inside = [p for p in pairs if all(0 <= x < SIZE[0] for x in p[0::2]) and all(0 <= y < SIZE[1] for y in p[1::2])]
    points = parse_drag_points(text, SIZE)
    assert len(points) == len(inside) and len(points.dropped) == len(pairs) - len(inside)
    expected = torch.tensor([p[:2] for p in inside], dtype=torch.float32).reshape(-1, 2)
    assert torch.equal(points.handles, expected)


def test_face_boxes_from_text_and_masks():
    assert parse_box("") is None
    assert parse_box("180, 60, 330, 250") == (180.0, 60.0, 330.0, 250.0)
    assert parse_box("[10 20 30 40]") == (10.0, 20.0, 30.0, 40.0)
    for bad in ("1, 2, 3", "a, b, c, d", "30, 20, 10, 40", "1, 2, 3, inf"):
        with pytest.raises(ReadoutError, match="x0"):
            parse_box(bad)
    mask = torch.zeros(1, 64, 96)
    mask[0, 10:20, 30:45] = 1.0
    assert box_from_mask(mask) == (30.0, 10.0, 45.0, 20.0)
    with pytest.raises(ReadoutError, match="empty"):
        box_from_mask(torch.zeros(64, 64))
