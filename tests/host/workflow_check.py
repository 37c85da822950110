"""Checking a UI workflow (the JSON the ComfyUI frontend saves) against the node
definitions a running host reports at ``/object_info``."""

from __future__ import annotations

import json
from pathlib import Path

FRONTEND_ONLY_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
USER_FILE_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".png", ".jpg", ".jpeg", ".webp")
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
EXTERNAL_NODES = json.loads((Path(__file__).with_name("external_nodes.json")).read_text())["nodes"]
"""Other packs' nodes the example workflows use (DWPose Estimator), as a host with them installed reports them."""


def with_external_nodes(object_info: dict) -> dict:
    """``object_info`` plus the recorded definitions of `EXTERNAL_NODES` the host does not have itself."""
    return {**EXTERNAL_NODES, **object_info}


def input_specs(info: dict) -> list[tuple[str, object, dict]]:
    """(name, type, options) of a node's inputs, required then optional, in the host's order."""
    specs = []
    for section in ("required", "optional"):
        entries = info["input"].get(section, {})
        order = info.get("input_order", {}).get(section, list(entries))
        for name in order:
            spec = entries[name]
            specs.append((name, spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}))
    return specs


def is_widget(kind: object) -> bool:
    return isinstance(kind, list) or kind in WIDGET_TYPES


def widget_slots(info: dict) -> list[tuple[str, object, dict, bool]]:
    """(name, type, options, is_control_value) per entry of a node's ``widgets_values``.

    A seed-like input with ``control_after_generate`` is followed by the control's value.
    """
    slots = []
    for name, kind, options in input_specs(info):
        if not is_widget(kind):
            continue
        slots.append((name, kind, options, False))
        if options.get("control_after_generate"):
            slots.append((name + " control", "COMBO", {"options": ["fixed", "increment", "decrement", "randomize"]},
                          True))
    return slots


def combo_options(kind: object, options: dict) -> list:
    return list(kind) if isinstance(kind, list) else list(options.get("options", []))


def widget_problem(name: str, kind: object, options: dict, value: object) -> str | None:
    """Why ``value`` is not valid for the widget, or None."""
    if isinstance(kind, list) or kind == "COMBO":
        choices = combo_options(kind, options)
        if value in choices:
            return None
        if isinstance(value, str) and value.lower().endswith(USER_FILE_EXTENSIONS):
            return None  # a model or image file the user provides (named in the note)
        return f"{name}: {value!r} is not one of {choices[:8]}"
    if kind == "INT" and (not isinstance(value, int) or isinstance(value, bool)):
        return f"{name}: {value!r} is not an integer"
    if kind == "FLOAT" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        return f"{name}: {value!r} is not a number"
    if kind == "STRING" and not isinstance(value, str):
        return f"{name}: {value!r} is not text"
    if kind == "BOOLEAN" and not isinstance(value, bool):
        return f"{name}: {value!r} is not true / false"
    if kind in ("INT", "FLOAT"):
        low, high = options.get("min", float("-inf")), options.get("max", float("inf"))
        if not low <= value <= high:
            return f"{name}: {value} is outside {low}..{high}"
    return None


def workflow_problems(workflow: dict, object_info: dict) -> list[str]:
    """Everything in ``workflow`` that the host would not accept (empty: valid)."""
    problems: list[str] = []
    nodes = {node["id"]: node for node in workflow["nodes"]}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in FRONTEND_ONLY_NODES:
            continue
        if kind not in object_info:
            problems.append(f"node {node['id']}: type {kind} does not exist on this host")
            continue
        info = object_info[kind]
        slots = widget_slots(info)
        values = node.get("widgets_values", [])
        if len(values) != len(slots):
            problems.append(f"node {node['id']} ({kind}): {len(values)} widget values for {len(slots)} widgets")
        for (name, widget_kind, options, _), value in zip(slots, values):
            problem = widget_problem(name, widget_kind, options, value)
            if problem:
                problems.append(f"node {node['id']} ({kind}) {problem}")
        specs = {name: (spec_kind, options) for name, spec_kind, options in input_specs(info)}
        for socket in node.get("inputs", []):
            if socket["name"] not in specs:
                problems.append(f"node {node['id']} ({kind}): no input named {socket['name']}")
            elif socket.get("link") is None and not is_widget(specs[socket["name"]][0]) and \
                    socket["name"] in info["input"].get("required", {}):
                problems.append(f"node {node['id']} ({kind}): required input {socket['name']} is not connected")
    for link_id, source, source_slot, target, target_slot, link_type in workflow["links"]:
        if source not in nodes or target not in nodes:
            problems.append(f"link {link_id}: joins a node that is not in the workflow")
            continue
        target_node = nodes[target]
        if target_node["type"] not in object_info:
            continue  # reported above: the node type does not exist
        source_type = object_info.get(nodes[source]["type"], {}).get("output", [])
        produced = source_type[source_slot] if source_slot < len(source_type) else None
        socket = target_node["inputs"][target_slot] if target_slot < len(target_node.get("inputs", [])) else None
        if socket is None or socket.get("link") != link_id:
            problems.append(f"link {link_id}: target slot {target_slot} of node {target} does not point back to it")
            continue
        expected = dict((n, k) for n, k, _ in input_specs(object_info[target_node["type"]])).get(socket["name"])
        if produced != link_type or expected != link_type:
            problems.append(f"link {link_id}: {nodes[source]['type']} gives {produced}, {target_node['type']}."
                            f"{socket['name']} takes {expected}, link says {link_type}")
    return problems
