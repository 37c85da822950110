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
    soak = REPO / "tests" / "host" / "test_host_soak.py"
    prompts = _constant(soak, "PROMPTS")
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
        f"{prompts} prompts through `/prompt`",
        f"every {_constant(soak, 'INTERRUPT_EVERY')}th one",
        f"after every {_constant(soak, 'MALFORMED_EVERY')}th",
        f"less than {round(_constant(soak, 'RSS_GROWTH_LIMIT') * 100)} %",
    ]
    flat = re.sub(r"\s+", " ", section)
    for phrase in expected:
        assert re.sub(r"\s+", " ", phrase) in flat, f"README reliability section should say {phrase!r}"


def _value(path: Path, name: str):
    """A module constant written as a literal or as simple arithmetic (e.g. ``64 * 1024``)."""
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(getattr(t, "id", None) == name for t in targets):
            return eval(compile(ast.Expression(node.value), str(path), "eval"), {"__builtins__": {}})
    raise AssertionError(f"{name} not found in {path}")


def test_fuzzing_and_input_bound_figures_match_the_code():
    section = re.sub(r"\s+", " ", _reliability_section())
    tests, core = REPO / "tests", REPO / "readout_core"
    heads = tests / "test_fuzz_head_files.py"
    texts = tests / "test_fuzz_text_inputs.py"
    fuzzed_text_inputs = texts.read_text().count("@settings(FUZZ)")
    bounds = tests / "fuzz_bounds.py"
    expected = [
        f"within {_value(bounds, 'TIME_BOUND_S'):g} s of CPU time, {_value(bounds, 'MEMORY_BOUND') // 2**20} MiB of "
        f"Python allocations and {_value(bounds, 'RSS_BOUND') // 2**20} MiB of resident-memory growth",
        f"{_value(heads, 'CONFIG_EXAMPLES')} published configs and {_value(heads, 'METADATA_EXAMPLES')} pack metadata",
        f"{_value(heads, 'DAMAGED_EXAMPLES')} truncated or bit-flipped files",
        f"{_value(heads, 'CONTAINER_EXAMPLES')} zip archives and pickles",
        f"{_value(heads, 'HEADER_EXAMPLES')} safetensors files with random header lengths",
        f"{_value(tests / 'test_head_files.py', 'RANDOM_FILES')} random files given to",
        f"{_value(texts, 'TEXT_EXAMPLES')} hostile texts",
        f"for each of {fuzzed_text_inputs} text inputs",
        f"drag points at most {_value(core / 'drag_points.py', 'MAX_POINTS_CHARS'):,} characters",
        f"`pairs.json` {_value(core / 'training' / 'datasets.py', 'MAX_PAIRS_JSON_BYTES'):,} bytes",
        f"head metadata {_value(core / 'heads' / 'info.py', 'MAX_METADATA_CHARS'):,}",
        f"deeper than {_value(core / 'safe_json.py', 'MAX_DEPTH')} levels",
        f"read up to {_value(core / 'crop_boxes.py', 'MAX_BOX_CHARS')} characters",
        f"at most {_value(core / 'heads' / 'info.py', 'MAX_LAYERS')} layers, widths up to {_value(core / 'heads' / 'info.py', 'MAX_CHANNELS')}",
        f"Files over {_value(core / 'heads' / 'files.py', 'MAX_HEAD_BYTES') // 2**30} GiB are refused",
    ]
    for phrase in expected:
        assert phrase in section, f"README reliability section should say {phrase!r}"
