"""The README's reliability figures are the ones the tests use."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import test_drag_points
import test_pose_keypoints
import test_robustness

REPO = Path(__file__).resolve().parents[1]


def _reliability_section() -> str:
    text = (REPO / "README.md").read_text()
    return text[text.index("## Reliability"):text.index("## Troubleshooting")]


def _constant(path: Path, name: str):
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in {path}")


def _parametrize_cases(path: Path, test_name: str) -> int:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == test_name:
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and getattr(decorator.func, "attr", "") == "parametrize":
                    return len(decorator.args[1].elts)
    raise AssertionError(f"no parametrize on {test_name}")


def test_reliability_figures_match_the_tests():
    section = _reliability_section()
    bad_points = _parametrize_cases(REPO / "tests" / "test_drag_points.py", "test_bad_points_say_what_is_wrong")
    escaping = _parametrize_cases(REPO / "tests" / "host" / "test_host_validation.py",
                                  "test_head_names_cannot_leave_the_heads_folder")
    faults = len(_constant(REPO / "tests" / "host" / "test_host_faults.py", "FAULT_PATHS"))
    expected = [
        f"{escaping} escaping names",
        f"{bad_points} hand-written bad point lists",
        f"{test_drag_points.JSON_EXAMPLES} random JSON structures",
        f"{test_drag_points.TEXT_EXAMPLES}\nrandom strings",
        f"{test_pose_keypoints.POSE_EXAMPLES} random pose structures",
        f"{test_robustness.EXAMPLES} random tensors",
        f"{len(test_robustness.DTYPES)} dtypes",
        f"{test_robustness.EXAMPLES} random face-box texts and {test_robustness.EXAMPLES} random masks",
        f"{faults} fault paths",
    ]
    flat = re.sub(r"\s+", " ", section)
    for phrase in expected:
        assert re.sub(r"\s+", " ", phrase) in flat, f"README reliability section should say {phrase!r}"
