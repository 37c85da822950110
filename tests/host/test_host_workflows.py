"""Every example workflow against the node definitions a real host serves (``/object_info``),
and the workflows listed in the host's template browser."""

from __future__ import annotations

import json

import pytest

from host_support import PACK_DIR, require_host
from pack_modules import node_module

HOST = require_host()

from host_server import PACK_FOLDER_NAME, get_json, running_server  # noqa: E402
from workflow_check import workflow_problems  # noqa: E402

WORKFLOWS = sorted((PACK_DIR / "example_workflows").glob("*.json"))
APPLICATIONS = ["pose_control_sd15", "depth_control_sd15", "edge_control_sd15", "pose_control_sdxl",
                "depth_control_sdxl", "edge_control_sdxl", "controlnet_depth_refined_sd15", "drag_generated_image_sdxl",
                "drag_real_image_sd15", "appearance_variations_sdxl", "identity_reference_sd15", "train_depth_head_sd15",
                "pose_edit_generated_image_sd15"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(HOST, tmp_path_factory.mktemp("comfy-base")) as url:
        yield {"url": url, "object_info": get_json(f"{url}/object_info")}


def test_there_is_a_workflow_for_every_application():
    assert sorted(p.stem for p in WORKFLOWS) == sorted(APPLICATIONS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_matches_the_hosts_node_definitions(server, path):
    workflow = json.loads(path.read_text())
    assert workflow_problems(workflow, server["object_info"]) == []
    kinds = {node["type"] for node in workflow["nodes"]}
    assert "Note" in kinds and any(kind.startswith("ReadoutGuidance_") for kind in kinds)
    pack_or_core = {name for name, info in server["object_info"].items()
                    if info.get("python_module") in ("nodes", "comfy_extras") or name.startswith("ReadoutGuidance_")
                    or info.get("python_module", "").startswith("comfy_extras")}
    assert kinds - {"Note"} <= pack_or_core, f"nodes from elsewhere: {kinds - {'Note'} - pack_or_core}"


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


def test_workflows_appear_in_the_template_browser(server):
    listed = get_json(f"{server['url']}/workflow_templates")
    assert sorted(listed.get(PACK_FOLDER_NAME, [])) == sorted(APPLICATIONS)
    served = get_json(f"{server['url']}/api/workflow_templates/{PACK_FOLDER_NAME}/drag_real_image_sd15.json")
    assert served == json.loads((PACK_DIR / "example_workflows" / "drag_real_image_sd15.json").read_text())


def test_the_presets_route_serves_the_released_presets(server):
    PRESETS = node_module("presets").PRESETS

    assert get_json(f"{server['url']}/readout_guidance/presets") == json.loads(json.dumps(PRESETS))
