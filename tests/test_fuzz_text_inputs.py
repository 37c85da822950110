"""Every text input under hostile text: deep nesting, huge, random unicode, NaN / Infinity, wrong types.

Each case gives a valid result or the parser's own `ReadoutError` subclass, within the CPU-time
and memory bounds of `fuzz_bounds`. The README's reliability section quotes the counts below.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_bounds import bounded
from readout_core import HeadConfigError, HeadInfo, ReadoutError
from readout_core.crop_boxes import MAX_BOX_CHARS, parse_box
from readout_core.drag_points import MAX_POINTS_CHARS, PointsError, parse_drag_points
from pack_modules import node_module
from readout_core.pose.keypoints import PoseKeypointError, parse_pose_keypoint
from readout_core.safe_json import MAX_DEPTH, read_json
from readout_core.training.datasets import MAX_PAIRS_JSON_BYTES, PointPair, point_pairs

PRESET_NAMES, check_preset_name = node_module("presets").PRESET_NAMES, node_module("presets").check_preset_name

TEXT_EXAMPLES = 150
"""Hostile texts per text input (drag points, face box, preset name, head metadata, pose text, pairs.json)."""

UNITS = ["[", "{\"a\":", "[1, 2], ", "9", "\"\\u00e9\\\"", "NaN, ", "1e999, ", " ", "é", "\ud800", "]", "}"]
hostile = (
    st.text(max_size=60)
    | st.builds(lambda unit, count: unit * count, st.sampled_from(UNITS), st.integers(0, 2 * MAX_POINTS_CHARS))
    | st.builds(lambda depth, core: "[" * depth + core + "]" * depth, st.integers(0, 4 * MAX_DEPTH),
                st.sampled_from(["[1, 2]", "NaN", "Infinity", "-Infinity", "1e400", "1" * 40, "\"x\"", ""]))
    | st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                   lambda c: st.lists(c, max_size=4) | st.dictionaries(
                       st.sampled_from(["pairs", "handle", "target", "x", "y", "width", "height", "a", "b", "points", "people",
                                        "pose_keypoints_2d", "canvas_width", "canvas_height"]),
                       c, max_size=4), max_leaves=20).map(json.dumps)
)
not_text = st.none() | st.integers() | st.lists(st.integers(), max_size=3) | st.binary(max_size=5)
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")  # huge inputs are the point
FUZZ = settings(deadline=None, max_examples=TEXT_EXAMPLES,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def _only(result, error: type[ReadoutError]):
    assert not isinstance(result, ReadoutError) or isinstance(result, error), repr(result)
    return result


@settings(FUZZ)
@given(text=hostile | not_text)
def test_drag_points(text):
    result = _only(bounded(lambda: parse_drag_points(text, (512, 384))), PointsError)
    if not isinstance(result, ReadoutError):
        assert len(result) == result.targets.shape[0] and bool((result.handles >= 0).all())


@settings(FUZZ)
@given(text=hostile | not_text | st.text(alphabet="0123456789., -e", max_size=3 * MAX_BOX_CHARS))
def test_face_box(text):
    result = bounded(lambda: parse_box(text))
    assert result is None or isinstance(result, ReadoutError) or result[0] < result[2]


@settings(FUZZ)
@given(text=hostile | not_text | st.sampled_from(PRESET_NAMES))
def test_preset_name(text):
    result = bounded(lambda: check_preset_name(text))
    assert isinstance(result, ReadoutError) or result in PRESET_NAMES


@settings(FUZZ)
@given(text=hostile | not_text)
def test_head_metadata(text):
    result = _only(bounded(lambda: HeadInfo.from_json(text)), HeadConfigError)
    assert isinstance(result, (HeadInfo, ReadoutError))


@settings(FUZZ)
@given(text=hostile | not_text)
def test_pose_text(text):
    result = _only(bounded(lambda: parse_pose_keypoint(text)), PoseKeypointError)
    assert isinstance(result, ReadoutError) or all(frame.people.shape[1:] == (18, 3) for frame in result)


@settings(FUZZ)
@given(text=hostile)
def test_pairs_json(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("pairs", numbered=True)
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(b"")
    (folder / "pairs.json").write_text(text, encoding="utf-8", errors="surrogatepass")
    result = bounded(lambda: point_pairs(folder))
    assert isinstance(result, ReadoutError) or all(isinstance(p, PointPair) and p.points.shape[1] == 4 for p in result)


@pytest.mark.parametrize("text, message", [
    ("[" * 60_000, f"nested more than {MAX_DEPTH} levels deep"),
    ('{"a": ' * 5_000 + "1" + "}" * 5_000, f"nested more than {MAX_DEPTH} levels deep"),
    ("[NaN, 1]", "contains NaN"),
    ("[1, -Infinity]", "contains -Infinity"),
    ("[1e400]", "too large to be a number"),
    ("[" + "7" * 5000 + "]", "an integer of 5000 digits"),
    (" " * (MAX_POINTS_CHARS + 1), f"at most {MAX_POINTS_CHARS:,} are read"),
])
def test_the_shared_reader_says_what_is_wrong(text, message):
    result = bounded(lambda: read_json(text, "The drag points text", PointsError, MAX_POINTS_CHARS))
    assert isinstance(result, PointsError) and re.search(message, str(result)), result


def test_pairs_json_errors_name_the_level(tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"")
    listing = tmp_path / "pairs.json"
    for text, message in [('[{"a": "a.png", "b": "b.png", "points": [[1, 2, 3]]}]', r"four numbers \[xa, ya, xb, yb\]"),
                          ('[{"a": "a.png", "b": "b.png", "points": [[1, 2, 3, NaN]]}]', "contains NaN"),
                          ('[{"a": 5, "b": "b.png", "points": [[1, 2, 3, 4]]}]', '"a" must be the file name'),
                          ('[{"a": "../a.png", "b": "b.png", "points": [[1, 2, 3, 4]]}]', "outside"),
                          ('[{"a": "a.png", "b": "b.png", "points": {"x": 1}}]', '"points" must be a list'),
                          ('[[1, 2]]', "must be an object")]:
        listing.write_text(text)
        with pytest.raises(ReadoutError, match=message):
            point_pairs(tmp_path)
    with open(listing, "wb") as handle:
        handle.truncate(MAX_PAIRS_JSON_BYTES + 1)
    result = bounded(lambda: point_pairs(tmp_path))
    assert isinstance(result, ReadoutError) and f"at most {MAX_PAIRS_JSON_BYTES:,} are read" in str(result)


def test_preset_names_and_boxes_are_bounded():
    with pytest.raises(ReadoutError, match="Unknown preset 'drag'; choose one of: custom"):
        check_preset_name("drag")
    with pytest.raises(ReadoutError, match=f"at most {MAX_BOX_CHARS} are read"):
        parse_box("1, " * 100)
    with pytest.raises(ReadoutError, match="must be text"):
        parse_box(5)  # type: ignore[arg-type]
