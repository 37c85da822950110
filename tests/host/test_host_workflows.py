"""Every example workflow against the node definitions a real host serves (``/object_info``),
and the workflows listed in the host's template browser.

The pose-from-DWPose workflows use comfyui_controlnet_aux's DWPose Estimator: with
``READOUT_CONTROLNET_AUX`` set to a checkout of that pack (its Python dependencies importable
by the host, e.g. through PYTHONPATH) the server loads it and the workflows are checked against
its real definition, which must equal the recorded one; otherwise against the recorded one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from host_support import PACK_DIR, require_host
from pack_modules import node_module

HOST = require_host()

from host_server import PACK_FOLDER_NAME, get_json, running_server  # noqa: E402
from workflow_check import EXTERNAL_NODES, with_external_nodes, workflow_problems  # noqa: E402

WORKFLOWS = sorted((PACK_DIR / "example_workflows").glob("*.json"))
APPLICATIONS = ["pose_control_sd15", "depth_control_sd15", "edge_control_sd15", "pose_control_sdxl",
                "depth_control_sdxl", "edge_control_sdxl", "controlnet_depth_refined_sd15", "drag_generated_image_sdxl",
                "drag_real_image_sd15", "appearance_variations_sdxl", "identity_reference_sd15", "train_depth_head_sd15",
                "pose_edit_generated_image_sd15", "pose_from_dwpose_sd15", "pose_from_dwpose_sdxl"]
CONTROLNET_AUX = os.environ.get("READOUT_CONTROLNET_AUX")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy-base")
    if CONTROLNET_AUX:
        (base / "custom_nodes").mkdir()
        (base / "custom_nodes" / "comfyui_controlnet_aux").symlink_to(Path(CONTROLNET_AUX).resolve())
    with running_server(HOST, base) as url:
        yield {"url": url, "object_info": get_json(f"{url}/object_info")}


@pytest.mark.skipif(not CONTROLNET_AUX, reason="READOUT_CONTROLNET_AUX not set: recorded DWPose definition used")
def test_the_recorded_external_nodes_are_the_real_ones(server):
    for name, recorded in EXTERNAL_NODES.items():
        assert name in server["object_info"], f"{name} did not load from {CONTROLNET_AUX} (see the server log)"
        real = server["object_info"][name]
        assert {key: real[key] for key in ("input", "input_order", "output", "output_name")} == \
            {key: recorded[key] for key in ("input", "input_order", "output", "output_name")}


def test_there_is_a_workflow_for_every_application():
    assert sorted(p.stem for p in WORKFLOWS) == sorted(APPLICATIONS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_matches_the_hosts_node_definitions(server, path):
    workflow = json.loads(path.read_text())
    assert workflow_problems(workflow, with_external_nodes(server["object_info"])) == []
    kinds = {node["type"] for node in workflow["nodes"]}
    assert "Note" in kinds and any(kind.startswith("ReadoutGuidance_") for kind in kinds)
    pack_or_core = {name for name, info in server["object_info"].items()
                    if info.get("python_module") in ("nodes", "comfy_extras") or name.startswith("ReadoutGuidance_")
                    or info.get("python_module", "").startswith("comfy_extras")}
    external = kinds - {"Note"} - pack_or_core
    assert external <= set(EXTERNAL_NODES), f"nodes from elsewhere: {external}"
    assert bool(external) == path.stem.startswith("pose_from_dwpose"), external  # named where the note says so


def test_the_checker_catches_broken_workflows(server):
    workflow = json.loads((PACK_DIR / "example_workflows" / "drag_real_image_sd15.json").read_text())
    sampler = next(n for n in workflow["nodes"] if n["type"] == "ReadoutGuidance_ReferenceSampler")
    sampler["widgets_values"][1] = 123  # seed slot fine, so break the preset (slot 0) instead
    sampler["widgets_values"][0] = "no such preset"
    workflow["links"][0][5] = "IMAGE"
    workflow["nodes"].append({"id": 99, "type": "NoSuchNode", "inputs": [], "widgets_values": []})
    problems = workflow_problems(workflow, server["object_info"])
    assert any("no such preset" in p for p in problems)
    assert any(p.startswith("link 1:") for p in problems)
    assert any("NoSuchNode does not exist" in p for p in problems)
    dwpose = json.loads((PACK_DIR / "example_workflows" / "pose_from_dwpose_sd15.json").read_text())
    without = {name: info for name, info in server["object_info"].items() if name not in EXTERNAL_NODES}
    assert any("DWPreprocessor does not exist" in p for p in workflow_problems(dwpose, without))
    estimator = next(n for n in dwpose["nodes"] if n["type"] == "DWPreprocessor")
    estimator["widgets_values"][3] = 100000  # resolution past its maximum
    assert any("resolution: 100000 is outside" in p for p in workflow_problems(dwpose, with_external_nodes(without)))


def test_workflows_appear_in_the_template_browser(server):
    listed = get_json(f"{server['url']}/workflow_templates")
    assert sorted(listed.get(PACK_FOLDER_NAME, [])) == sorted(APPLICATIONS)
    served = get_json(f"{server['url']}/api/workflow_templates/{PACK_FOLDER_NAME}/drag_real_image_sd15.json")
    assert served == json.loads((PACK_DIR / "example_workflows" / "drag_real_image_sd15.json").read_text())


def test_the_presets_route_serves_the_released_presets(server):
    PRESETS = node_module("presets").PRESETS

    assert get_json(f"{server['url']}/readout_guidance/presets") == json.loads(json.dumps(PRESETS))
