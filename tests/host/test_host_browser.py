"""The drag canvas in a real browser: a real ComfyUI server with the pack and its own
frontend, headless Chromium driven by Playwright.

Loads the real-image drag workflow, clears its example arrow, draws two arrows with the
mouse, moves one end, deletes and undoes, and checks the points stored in the widget and
in the prompt sent to the server; takes a screenshot. Needs a host, Playwright in the
host's Python and a Chromium (``/usr/bin/chromium`` or ``CHROMIUM``); skips saying which
is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from host_support import PACK_DIR, require_host

HOST = require_host()

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed in the host's Python")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no Chromium found (install Debian's chromium or set CHROMIUM): browser test skipped",
                allow_module_level=True)

from host_server import running_server  # noqa: E402

WORKFLOW = PACK_DIR / "example_workflows" / "drag_real_image_sd15.json"
SCREENSHOT_DIR = Path(os.environ.get("READOUT_SCREENSHOT_DIR", PACK_DIR / ".screenshots"))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy-browser")
    (base / "input").mkdir()
    shutil.copy(HOST / "input" / "example.png", base / "input" / "example.png")  # the workflow's Load Image
    with running_server(HOST, base) as url:
        # A returning user: no first-run template browser over the canvas.
        request = urllib.request.Request(f"{url}/settings/Comfy.TutorialCompleted", data=b"true", method="POST")
        urllib.request.urlopen(request, timeout=30).close()
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            page.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=120_000)
            page.wait_for_timeout(1500)  # let extensions finish registering
            yield {"page": page, "url": url, "errors": errors}
            browser.close()


def close_dialogs(page) -> None:
    """Close dialogs over the graph (first-run templates, the test host's missing-model error)."""
    for _ in range(4):
        if page.locator(".p-dialog-mask").count() == 0:
            return
        close = page.locator(".p-dialog-close-button")
        if close.count():
            close.first.click()
        else:
            page.keyboard.press("Escape")
        page.wait_for_timeout(300)


def drag_node_state(page) -> dict:
    return page.evaluate("""() => {
        const node = window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_DragPoints");
        return {id: node.id, points: node.widgets.find((w) => w.name === "points").value};
    }""")


def test_draw_move_delete_and_undo_arrows_on_the_canvas(page):
    page, errors = page["page"], page["errors"]
    workflow = json.loads(WORKFLOW.read_text())
    page.evaluate("""async (workflow) => {
        // The test host has no checkpoints: skip the missing-models dialog.
        await window.app.loadGraphData(workflow, true, true, null,
                                       {showMissingModelsDialog: false, showMissingNodesDialog: false});
        const node = window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_DragPoints");
        for (const other of window.app.graph._nodes) if (other !== node) other.pos = [2000 + other.id * 10, 2000];
        node.pos = [60, 60];
        node.size = [420, 560];
        window.app.canvas.ds.scale = 1;
        window.app.canvas.centerOnNode(node);
        window.app.canvas.setDirty(true, true);
    }""", workflow)
    close_dialogs(page)
    canvas = page.locator("[data-testid=readout-drag-canvas]")
    canvas.wait_for(state="visible", timeout=30_000)
    page.wait_for_timeout(500)
    assert json.loads(drag_node_state(page)["points"])["pairs"]  # the workflow's example arrow is shown
    page.get_by_role("button", name="Clear", exact=True).click()
    assert json.loads(drag_node_state(page)["points"])["pairs"] == []

    page.wait_for_function("""() => window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_DragPoints")
        .readoutDragCanvas.image !== null""", timeout=30_000)  # Load Image's picture reached the canvas
    size = page.evaluate("""() => window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_DragPoints")
        .readoutDragCanvas.size()""")
    box = canvas.bounding_box()
    scale = min(box["width"] / size[0], box["height"] / size[1])  # the image is letterboxed into the canvas
    left, top = box["x"] + (box["width"] - size[0] * scale) / 2, box["y"] + (box["height"] - size[1] * scale) / 2

    def at(x, y):  # image pixel -> page coordinates
        return left + x * scale, top + y * scale

    def drag(start, end):
        page.mouse.move(*at(*start))
        page.mouse.down()
        page.mouse.move(*at(*end), steps=8)
        page.mouse.up()

    drag((100, 100), (200, 150))
    drag((300, 400), (350, 300))
    pairs = json.loads(drag_node_state(page)["points"])["pairs"]
    assert len(pairs) == 2
    for pair, (handle, target) in zip(pairs, [((100, 100), (200, 150)), ((300, 400), (350, 300))]):
        assert all(abs(a - b) <= 2 for a, b in zip(pair["handle"] + pair["target"], handle + target)), pair

    drag((350, 300), (380, 280))  # grab the second target and move it
    moved = json.loads(drag_node_state(page)["points"])["pairs"][1]
    assert abs(moved["target"][0] - 380) <= 2 and abs(moved["target"][1] - 280) <= 2
    page.keyboard.press("Delete")  # the selected (second) arrow
    assert len(json.loads(drag_node_state(page)["points"])["pairs"]) == 1
    page.keyboard.press("Control+z")  # the canvas's own undo, not the graph's
    stored = json.loads(drag_node_state(page)["points"])
    assert len(stored["pairs"]) == 2 and [stored["width"], stored["height"]] == size

    # Zoomed and resized, the canvas still maps the mouse onto the same image pixels.
    page.evaluate("""() => {
        const node = window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_DragPoints");
        node.setSize([520, 640]);
        window.app.canvas.ds.scale = 0.8;
        window.app.canvas.centerOnNode(node);
        window.app.canvas.setDirty(true, true);
    }""")
    page.wait_for_timeout(500)
    box = canvas.bounding_box()
    scale = min(box["width"] / size[0], box["height"] / size[1])
    left, top = box["x"] + (box["width"] - size[0] * scale) / 2, box["y"] + (box["height"] - size[1] * scale) / 2
    drag((50, 300), (120, 330))
    zoomed = json.loads(drag_node_state(page)["points"])["pairs"][-1]
    assert all(abs(a - b) <= 3 for a, b in zip(zoomed["handle"] + zoomed["target"], [50, 300, 120, 330])), zoomed
    page.keyboard.press("Control+z")
    assert json.loads(drag_node_state(page)["points"]) == stored

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "drag_canvas.png"), clip={
        "x": max(box["x"] - 20, 0), "y": max(box["y"] - 120, 0), "width": box["width"] + 40, "height": box["height"] + 200})

    with page.expect_request(lambda request: request.url.endswith("/prompt") and request.method == "POST") as sent:
        page.evaluate("() => window.app.queuePrompt(0, 1)")
    prompt = json.loads(sent.value.post_data)["prompt"]
    node_id = str(drag_node_state(page)["id"])
    assert json.loads(prompt[node_id]["inputs"]["points"]) == stored
    assert not [e for e in errors if "readout" in e.lower() or "drag_canvas" in e], errors
    page.wait_for_timeout(1000)
    close_dialogs(page)  # the server refuses the prompt: the test host has no checkpoint


def test_points_survive_save_and_reload_of_the_workflow(page):
    page = page["page"]
    before = drag_node_state(page)["points"]
    page.evaluate("""async () => {
        const saved = JSON.parse(JSON.stringify(window.app.graph.serialize()));
        await window.app.loadGraphData(saved, true, true, null,
                                       {showMissingModelsDialog: false, showMissingNodesDialog: false});
    }""")
    assert drag_node_state(page)["points"] == before


def test_copied_and_pasted_node_keeps_its_points(page):
    page = page["page"]
    pasted = page.evaluate("""() => {
        const canvas = window.app.canvas;
        const node = window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_DragPoints");
        canvas.selectNodes ? canvas.selectNodes([node]) : canvas.selectNode(node);
        canvas.copyToClipboard();
        canvas.pasteFromClipboard();
        const copies = window.app.graph._nodes.filter((n) => n.type === "ReadoutGuidance_DragPoints");
        const copy = copies.find((n) => n.id !== node.id);
        return {
            original: node.widgets.find((w) => w.name === "points").value,
            copy: copy?.widgets.find((w) => w.name === "points").value,
            canvasPairs: copy?.readoutDragCanvas?.history.pairs.length,
        };
    }""")
    assert pasted["copy"] == pasted["original"]
    assert pasted["canvasPairs"] == len(json.loads(pasted["original"])["pairs"])


def test_choosing_a_preset_fills_the_sampler_and_numbers_stay_editable(page):
    page = page["page"]
    values = page.evaluate("""async () => {
        const node = window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_ReferenceSampler");
        const widget = (name) => node.widgets.find((w) => w.name === name);
        widget("cfg").value = 2.0;
        widget("preset").value = "drag: generated image (SDXL)";
        await widget("preset").callback(widget("preset").value);
        const filled = Object.fromEntries(["steps", "cfg", "reference_cfg", "sampler_name", "scheduler",
                                           "end_percent", "edit_start"].map((n) => [n, widget(n).value]));
        widget("cfg").value = 5.0;  // still editable after a preset
        return {filled, edited: widget("cfg").value, preset: widget("preset").value};
    }""")
    assert values["filled"] == {"steps": 100, "cfg": 7.5, "reference_cfg": 7.5, "sampler_name": "ddim",
                                "scheduler": "ddim_uniform", "end_percent": 0.5, "edit_start": "reference noise (drag)"}
    assert values["edited"] == 5.0 and values["preset"] == "drag: generated image (SDXL)"


def test_graph_undo_steps_back_through_canvas_edits(page):
    page = page["page"]
    geometry = page.evaluate("""() => {
        const [node, ...copies] = window.app.graph._nodes.filter((n) => n.type === "ReadoutGuidance_DragPoints");
        for (const copy of copies) window.app.graph.remove(copy);  // the pasted node may lie on top
        window.app.canvas.ds.scale = 1;
        window.app.canvas.centerOnNode(node);
        window.app.canvas.setDirty(true, true);
        return node.readoutDragCanvas.size();
    }""")
    page.wait_for_timeout(500)
    box = page.evaluate("""() => {
        const node = window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_DragPoints");
        const r = node.readoutDragCanvas.canvas.getBoundingClientRect();
        return {x: r.x, y: r.y, width: r.width, height: r.height};
    }""")
    scale = min(box["width"] / geometry[0], box["height"] / geometry[1])
    left = box["x"] + (box["width"] - geometry[0] * scale) / 2
    top = box["y"] + (box["height"] - geometry[1] * scale) / 2
    before = drag_node_state(page)["points"]
    page.mouse.move(left + 500 * scale, top + 600 * scale)
    page.mouse.down()
    page.mouse.move(left + 600 * scale, top + 650 * scale, steps=6)
    page.mouse.up()
    after = drag_node_state(page)["points"]
    assert len(json.loads(after)["pairs"]) == len(json.loads(before)["pairs"]) + 1
    page.mouse.click(5, 450)  # the empty graph: keyboard focus leaves the canvas
    page.keyboard.press("Control+z")  # the frontend's graph undo
    page.wait_for_timeout(800)
    assert drag_node_state(page)["points"] == before
