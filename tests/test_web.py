"""The browser code: the canvas logic's own tests (Node's built-in runner) and the layout of web/."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed: the canvas logic tests skipped")
def test_canvas_logic_with_nodes_test_runner():
    result = subprocess.run(["node", "--test", "tests/js/"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^# fail 0$", result.stdout, re.M) and re.search(r"^# pass [1-9]", result.stdout, re.M)


def test_web_modules_import_only_the_documented_frontend_api():
    for path in (REPO / "web").glob("*.js"):
        for target in re.findall(r'^import .* from "([^"]+)";', path.read_text(), re.M):
            assert target in ("../../scripts/app.js", "../../scripts/api.js") or target.startswith("./"), (path, target)


def test_the_pose_canvas_uses_the_nodes_joints_limbs_and_colours():
    from readout_core.pose.keypoints import BODY25_TO_OPENPOSE18, COLOURS, JOINT_NAMES, LIMBS

    source = (REPO / "web" / "pose_model.js").read_text()

    def constant(name: str) -> object:
        match = re.search(rf"export const {name} = (\[.*?\]);", source, re.S)
        assert match, name
        return json.loads(re.sub(r",\s*\]", "]", match.group(1)))

    assert constant("JOINT_NAMES") == list(JOINT_NAMES)
    assert constant("LIMBS") == [list(limb) for limb in LIMBS]
    assert constant("COLOURS") == [list(colour) for colour in COLOURS]
    assert constant("BODY25_TO_OPENPOSE18") == list(BODY25_TO_OPENPOSE18)
