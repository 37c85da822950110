"""The drag canvas in a real browser: a real ComfyUI server with the pack and its own
frontend, headless Chromium driven by Playwright.

Loads the real-image drag workflow and works its Drag Points node as a user does: draws,
moves, deletes and undoes arrows with the mouse; saves and reloads; copies and pastes,
duplicates (Alt-drag), converts the node into a subgraph and back, deletes it while its
image loads; chooses a sampler preset; checks the points stored in the widget and in the
prompt sent to the server, and takes a screenshot. No test may leave an error in the page:
every uncaught error, every ``console.error`` and every warning the pack writes (web/ turns
errors it contains into ``Readout Guidance: ...`` warnings) fails the test it happened in.
The browser runs offline with a returning user's (empty) files, so a fresh frontend has
nothing to complain about; requests to other hosts get empty answers.

Needs a host, Playwright in the host's Python and a Chromium (``/usr/bin/chromium`` or
``CHROMIUM``); skips saying which is missing. Run it with each frontend of the matrix
(the frontend is the ``comfyui-frontend-package`` installed in the host's Python).
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
DRAG_NODE = "ReadoutGuidance_DragPoints"
POSE_WORKFLOW = PACK_DIR / "example_workflows" / "pose_edit_generated_image_sd15.json"
POSE_NODE = "ReadoutGuidance_PoseKeypoints"
SLOW_IMAGE = "drag_slow.png"  # served only when the test lets it through

# A returning user's files: without them a fresh frontend logs 404s while it starts.
USER_FILES = {"comfy.templates.json": "[]", "user.css": "", "workflows/.keep": "", "subgraphs/.keep": ""}

# What a frontend writes on its own, without the pack's part: while starting (checked with no custom
# node installed) and while working subgraphs (checked with a core node, VAE Decode). These are
# let through where they happen, nowhere else; nothing else is.
FRONTEND_STARTUP_MESSAGES = {
    "console.error: ComfyApp graph accessed before initialization",  # 1.49: a settings store reads the graph early
    "uncaught: Cannot read properties of undefined (reading 'id')",  # 1.27: a setting's onChange as settings register
}
FRONTEND_SUBGRAPH_MESSAGES = {
    "console.error: Attempted to cleanup event listeners for graph that was never set up",  # 1.35
}

# Helpers the tests call as window.readoutTest.*; installed once the frontend is up.
PAGE_HELPERS = """() => {
    const app = window.app;
    const graphNow = () => app.canvas.graph ?? app.graph;
    window.readoutTest = {
        dragNodes: (graph = graphNow()) => graph._nodes.filter((n) => n.type === "%(node)s"),
        state(node) {
            const canvas = node.readoutDragCanvas;
            return {id: node.id, points: node.widgets.find((w) => w.name === "points").value,
                    canvasPairs: canvas?.history.pairs.length ?? null, image: Boolean(canvas?.image),
                    status: canvas?.status.textContent ?? null};
        },
        states(graph = graphNow()) { return this.dragNodes(graph).map((n) => this.state(n)); },
        select(node) {
            app.canvas.deselectAll?.();
            app.canvas.selectNodes ? app.canvas.selectNodes([node]) : app.canvas.selectNode(node);
        },
        /** Page coordinates of a point on the node's title bar. */
        titlePoint(node) {
            const titleHeight = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
            const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + 60, node.pos[1] - titleHeight / 2]);
            const rect = app.canvas.canvas.getBoundingClientRect();
            return [rect.left + x, rect.top + y];
        },
        /** Show `node` alone, unscaled, at the top left of the graph view. */
        focus(node, size = [420, 560]) {
            for (const other of graphNow()._nodes) if (other !== node) other.pos = [3000 + other.id * 10, 3000];
            node.pos = [60, 60];
            node.setSize(size);
            app.canvas.ds.scale = 1;
            app.canvas.ds.offset = [40, 80];
            app.canvas.setDirty(true, true);
        },
        async load(workflow, focusType = "%(node)s") {
            // The test host has no checkpoints: skip the missing-models dialog.
            await app.loadGraphData(workflow, true, true, null,
                                    {showMissingModelsDialog: false, showMissingNodesDialog: false});
            this.focus(graphNow()._nodes.find((n) => n.type === focusType));
        },
        poseNodes: (graph = graphNow()) => graph._nodes.filter((n) => n.type === "%(pose)s"),
        poseState(node) {
            const canvas = node.readoutPoseCanvas;
            return {id: node.id, text: node.widgets.find((w) => w.name === "pose_text").value,
                    edited: Boolean(canvas?.history.pose), image: Boolean(canvas?.image),
                    size: canvas?.size() ?? null, status: canvas?.status.textContent ?? null};
        },
        poseStates(graph = graphNow()) { return this.poseNodes(graph).map((n) => this.poseState(n)); },
    };
}""" % {"node": DRAG_NODE, "pose": POSE_NODE}


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy-browser")
    (base / "input").mkdir()
    shutil.copy(HOST / "input" / "example.png", base / "input" / "example.png")  # the workflow's Load Image
    shutil.copy(HOST / "input" / "example.png", base / "input" / SLOW_IMAGE)
    for name, text in USER_FILES.items():
        path = base / "user" / "default" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    with running_server(HOST, base) as url:
        # A returning user: no first-run template browser over the canvas.
        request = urllib.request.Request(f"{url}/settings/Comfy.TutorialCompleted", data=b"true", method="POST")
        urllib.request.urlopen(request, timeout=30).close()
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
            page.on("console", lambda message: problems.append(f"console.{message.type}: {message.text}")
                    if message.type == "error" or message.text.startswith("Readout Guidance") else None)
            page.route(lambda address: not address.startswith(url),  # offline: other hosts answer empty
                       lambda route: route.fulfill(status=200, content_type="application/json", body="[]"))
            page.route("**/user.css", lambda route: route.fulfill(status=200, content_type="text/css", body=""))
            page.goto(url)
            page.wait_for_function("() => window.app && window.app.graph && window.app.canvas", timeout=120_000)
            page.wait_for_timeout(1500)  # let extensions finish registering
            page.evaluate(PAGE_HELPERS)
            version = page.evaluate("() => window.__COMFYUI_FRONTEND_VERSION__ ?? 'unknown'")
            yield {"page": page, "url": url, "problems": problems, "frontend": version}
            browser.close()


@pytest.fixture
def page(session):
    """The shared page, with the drag workflow loaded afresh; the test fails on any error in the page."""
    yield from loaded_page(session, WORKFLOW, DRAG_NODE)


@pytest.fixture
def pose_page(session):
    """The shared page, with the pose edit workflow loaded afresh and its Pose Keypoints node in view."""
    yield from loaded_page(session, POSE_WORKFLOW, POSE_NODE)


def loaded_page(session, workflow: Path, focus_type: str):
    page, problems = session["page"], session["problems"]
    close_dialogs(page)
    page.evaluate("async ([workflow, type]) => window.readoutTest.load(workflow, type)",
                  [json.loads(workflow.read_text()), focus_type])
    page.wait_for_timeout(300)
    problems.clear()  # what happened before (startup included) belongs to earlier tests
    session["frontend_own"] = set()  # a test names the frontend's own messages it provokes
    yield page
    page.wait_for_timeout(500)  # late errors: image loads, animation frames, resize observers
    ours = [problem for problem in problems if problem not in session["frontend_own"]]
    assert not ours, f"frontend {session['frontend']}: errors in the page: {ours}"


def test_the_page_starts_without_errors(session):
    ours = [problem for problem in session["problems"] if problem not in FRONTEND_STARTUP_MESSAGES]
    assert not ours, f"frontend {session['frontend']}: errors while starting: {ours}"


def close_dialogs(page) -> None:
    """Close dialogs over the graph (first-run templates, a refused prompt)."""
    for _ in range(4):
        if page.locator(".p-dialog-mask").count() == 0:
            return
        close = page.locator(".p-dialog-close-button")
        if close.count():
            close.first.click()
        else:
            page.keyboard.press("Escape")
        page.wait_for_timeout(300)


def drag_states(page) -> list[dict]:
    return page.evaluate("() => window.readoutTest.states()")


def drag_node_state(page) -> dict:
    (state,) = drag_states(page)
    return state


def canvas_mapping(page, canvas_js="window.readoutTest.dragNodes()[0].readoutDragCanvas"):
    """image pixel -> page coordinates for the Drag Points canvas (or the one `canvas_js` names); and the image size."""
    size = page.evaluate(f"() => {canvas_js}.size()")
    box = page.evaluate(f"""() => {{
        const r = {canvas_js}.canvas.getBoundingClientRect();
        return {{x: r.x, y: r.y, width: r.width, height: r.height}};
    }}""")
    scale = min(box["width"] / size[0], box["height"] / size[1])  # the image is letterboxed into the canvas
    left, top = box["x"] + (box["width"] - size[0] * scale) / 2, box["y"] + (box["height"] - size[1] * scale) / 2
    return (lambda x, y: (left + x * scale, top + y * scale)), size, box


def mouse_drag(page, start, end, steps=8):
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=steps)
    page.mouse.up()


def wait_for_upstream_image(page):
    page.wait_for_function("() => window.readoutTest.dragNodes()[0]?.readoutDragCanvas.image",
                           timeout=30_000)  # Load Image's picture reached the canvas


def test_draw_move_delete_and_undo_arrows_on_the_canvas(page):
    canvas = page.locator("[data-testid=readout-drag-canvas]")
    canvas.wait_for(state="visible", timeout=30_000)
    assert json.loads(drag_node_state(page)["points"])["pairs"]  # the workflow's example arrow is shown
    page.get_by_role("button", name="Clear", exact=True).click()
    assert json.loads(drag_node_state(page)["points"])["pairs"] == []

    wait_for_upstream_image(page)
    at, size, _ = canvas_mapping(page)
    drag = lambda start, end: mouse_drag(page, at(*start), at(*end))  # noqa: E731  (image pixels)

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
        const node = window.readoutTest.dragNodes()[0];
        node.setSize([520, 640]);
        window.app.canvas.ds.scale = 0.8;
        window.app.canvas.centerOnNode(node);
        window.app.canvas.setDirty(true, true);
    }""")
    page.wait_for_timeout(500)
    at, _, box = canvas_mapping(page)
    mouse_drag(page, at(50, 300), at(120, 330))
    zoomed = json.loads(drag_node_state(page)["points"])["pairs"][-1]
    assert all(abs(a - b) <= 3 for a, b in zip(zoomed["handle"] + zoomed["target"], [50, 300, 120, 330])), zoomed
    page.keyboard.press("Control+z")
    assert json.loads(drag_node_state(page)["points"]) == stored

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "drag_canvas.png"), clip={
        "x": max(box["x"] - 20, 0), "y": max(box["y"] - 120, 0), "width": box["width"] + 40, "height": box["height"] + 200})

    prompt = sent_prompt(page)
    assert json.loads(prompt[str(drag_node_state(page)["id"])]["inputs"]["points"]) == stored


def sent_prompt(page) -> dict:
    """Queue the workflow; the prompt the frontend sends. The test host has no checkpoint, so the
    server is not asked (it would refuse the prompt): the request is answered here."""
    accepted = json.dumps({"prompt_id": "browser-test", "number": 0, "node_errors": {}})
    page.route("**/prompt", lambda route: route.fulfill(status=200, content_type="application/json", body=accepted)
               if route.request.method == "POST" else route.continue_())
    try:
        with page.expect_request(lambda request: request.url.endswith("/prompt") and request.method == "POST") as sent:
            page.evaluate("() => window.app.queuePrompt(0, 1)")
    finally:
        page.unroute("**/prompt")
    return json.loads(sent.value.post_data)["prompt"]


def test_points_survive_save_and_reload_of_the_workflow(page):
    before = drag_node_state(page)["points"]
    page.evaluate("""async () => {
        const saved = JSON.parse(JSON.stringify(window.app.graph.serialize()));
        await window.app.loadGraphData(saved, true, true, null,
                                       {showMissingModelsDialog: false, showMissingNodesDialog: false});
    }""")
    assert drag_node_state(page)["points"] == before


def test_copy_and_paste_with_the_keyboard(page):
    wait_for_upstream_image(page)
    (original,) = drag_states(page)
    title = page.evaluate("() => window.readoutTest.titlePoint(window.readoutTest.dragNodes()[0])")
    page.mouse.click(*title)  # select the node
    page.keyboard.press("Control+c")
    page.mouse.move(title[0] + 500, title[1] + 100)  # paste lands at the mouse
    page.keyboard.press("Control+v")
    page.wait_for_function("() => window.readoutTest.dragNodes().length === 2", timeout=10_000)
    copy = next(state for state in drag_states(page) if state["id"] != original["id"])
    assert copy["points"] == original["points"]
    assert copy["canvasPairs"] == len(json.loads(original["points"])["pairs"]) == 1
    assert copy["status"].startswith("1 pair · image 512×512 px")


def test_duplicate_by_alt_drag(page):
    (original,) = drag_states(page)
    title = page.evaluate("() => window.readoutTest.titlePoint(window.readoutTest.dragNodes()[0])")
    page.mouse.move(*title)
    page.keyboard.down("Alt")
    mouse_drag(page, title, (title[0] + 460, title[1] + 40), steps=10)
    page.keyboard.up("Alt")
    page.wait_for_function("() => window.readoutTest.dragNodes().length === 2", timeout=10_000)
    clone = next(state for state in drag_states(page) if state["id"] != original["id"])
    assert clone["points"] == original["points"] and clone["canvasPairs"] == 1


def test_convert_into_a_subgraph_and_back(page, session):
    session["frontend_own"] = FRONTEND_SUBGRAPH_MESSAGES
    commands = page.evaluate("() => (window.app.extensionManager?.command?.commands ?? []).map((c) => c.id)")
    missing = {"Comfy.Graph.ConvertToSubgraph", "Comfy.Graph.ExitSubgraph", "Comfy.Graph.UnpackSubgraph"} - set(commands)
    if missing:
        pytest.skip(f"this frontend has no subgraphs (no {', '.join(sorted(missing))} command)")
    wait_for_upstream_image(page)
    (original,) = drag_states(page)
    inside = page.evaluate("""async () => {
        const t = window.readoutTest, app = window.app;
        t.select(t.dragNodes()[0]);
        await app.extensionManager.command.execute("Comfy.Graph.ConvertToSubgraph");
        const wrapper = app.graph._nodes.find((n) => n.isSubgraphNode?.());
        const inner = t.dragNodes(wrapper.subgraph);
        app.canvas.openSubgraph(wrapper.subgraph, wrapper);  // look inside: the canvas draws there
        await new Promise((resolve) => setTimeout(resolve, 300));
        const shown = t.states();
        await app.extensionManager.command.execute("Comfy.Graph.ExitSubgraph");
        return {rootDragNodes: t.dragNodes(app.graph).length, inner: inner.map((n) => t.state(n)), shown};
    }""")
    assert inside["rootDragNodes"] == 0
    assert [state["points"] for state in inside["inner"]] == [original["points"]]
    assert inside["shown"][0]["canvasPairs"] == 1
    back = page.evaluate("""async () => {
        const t = window.readoutTest, app = window.app;
        t.select(app.graph._nodes.find((n) => n.isSubgraphNode?.()));
        await app.extensionManager.command.execute("Comfy.Graph.UnpackSubgraph");
        return t.states(app.graph);
    }""")
    assert [state["points"] for state in back] == [original["points"]]
    assert back[0]["canvasPairs"] == 1
    page.evaluate("() => window.readoutTest.focus(window.readoutTest.dragNodes()[0])")
    wait_for_upstream_image(page)  # connected to Load Image again, the canvas shows its picture


def test_delete_the_node_while_its_image_loads(page):
    held = []
    page.route(f"**/view?*{SLOW_IMAGE}*", lambda route: held.append(route))  # the image stays on its way until released
    try:
        page.evaluate("""(filename) => window.readoutTest.dragNodes()[0].onExecuted(
            {drag_image: [{filename, subfolder: "", type: "input"}]})""", SLOW_IMAGE)
        for _ in range(50):
            if held:
                break
            page.wait_for_timeout(100)
        assert held, "the canvas did not ask for the executed node's image"
        title = page.evaluate("() => window.readoutTest.titlePoint(window.readoutTest.dragNodes()[0])")
        page.mouse.click(*title)
        page.keyboard.press("Delete")
        page.wait_for_function("() => window.readoutTest.dragNodes().length === 0", timeout=10_000)
        held[0].continue_()
        page.wait_for_timeout(800)  # the image arrives for a node that is gone
    finally:
        page.unroute(f"**/view?*{SLOW_IMAGE}*")


def test_choosing_a_preset_fills_the_sampler_and_numbers_stay_editable(page):
    page.evaluate("""() => {
        const node = window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_ReferenceSampler");
        const widget = (name) => node.widgets.find((w) => w.name === name);
        widget("cfg").value = 2.0;
        widget("preset").value = "drag: generated image (SDXL)";
        widget("preset").callback(widget("preset").value);  // as the frontend calls it on a choice
    }""")
    page.wait_for_function("""() => window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_ReferenceSampler")
        .widgets.find((w) => w.name === "cfg").value === 7.5""", timeout=10_000)
    values = page.evaluate("""() => {
        const node = window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_ReferenceSampler");
        const widget = (name) => node.widgets.find((w) => w.name === name);
        const filled = Object.fromEntries(["steps", "cfg", "reference_cfg", "sampler_name", "scheduler",
                                           "end_percent", "edit_start"].map((n) => [n, widget(n).value]));
        widget("cfg").value = 5.0;  // still editable after a preset
        return {filled, edited: widget("cfg").value, preset: widget("preset").value};
    }""")
    assert values["filled"] == {"steps": 100, "cfg": 7.5, "reference_cfg": 7.5, "sampler_name": "ddim",
                                "scheduler": "ddim_uniform", "end_percent": 0.5, "edit_start": "reference noise (drag)"}
    assert values["edited"] == 5.0 and values["preset"] == "drag: generated image (SDXL)"


def test_graph_undo_steps_back_through_canvas_edits(page):
    wait_for_upstream_image(page)
    at, _, _ = canvas_mapping(page)
    before = drag_node_state(page)["points"]
    page.mouse.click(5, 450)  # start from the graph, as a user would
    page.wait_for_timeout(300)
    mouse_drag(page, at(100, 400), at(200, 450), steps=6)
    after = drag_node_state(page)["points"]
    assert len(json.loads(after)["pairs"]) == len(json.loads(before)["pairs"]) + 1
    page.mouse.click(5, 450)  # the empty graph: keyboard focus leaves the canvas
    page.keyboard.press("Control+z")  # the frontend's graph undo
    page.wait_for_timeout(800)
    assert drag_node_state(page)["points"] == before


# The pose Readout Pose "read" (a 512×512 image): joint -> (x, y); the others missing (0, 0, 0).
READ_JOINTS = {0: (256, 100), 1: (256, 160), 2: (206, 160), 3: (190, 240), 4: (180, 310), 5: (306, 160),
               6: (322, 240), 8: (226, 300), 11: (286, 300)}
READ_POSE = [{"people": [{"pose_keypoints_2d": [v for j in range(18) for v in
                                                 ([*READ_JOINTS[j], 1.0] if j in READ_JOINTS else [0, 0, 0])]}],
              "canvas_width": 512, "canvas_height": 512}]
POSE_CANVAS = "window.readoutTest.poseNodes()[0].readoutPoseCanvas"


def pose_state(page) -> dict:
    (state,) = page.evaluate("() => window.readoutTest.poseStates()")
    return state


def pose_state_of(page, node_id) -> dict:
    return page.evaluate("(id) => window.readoutTest.poseState(window.readoutTest.poseNodes().find((n) => n.id === id))",
                         node_id)


def joint_of(text: str, joint: int) -> list[float]:
    return json.loads(text)[0]["people"][0]["pose_keypoints_2d"][3 * joint:3 * joint + 3]


def test_edit_a_read_pose_on_the_pose_canvas(pose_page):
    page = pose_page
    from readout_core.pose.keypoints import parse_pose_keypoint

    page.locator("[data-testid=readout-pose-canvas]").wait_for(state="visible", timeout=30_000)
    assert pose_state(page)["status"].startswith("no pose yet")
    # What a run delivers: Readout Pose's skeleton and pose, then Pose Keypoints' pose and image.
    page.evaluate("""([pose, image]) => {
        const reader = window.app.graph._nodes.find((n) => n.type === "ReadoutGuidance_ReadoutPose");
        reader.onExecuted({images: [image], openpose_json: [pose]});
        window.readoutTest.poseNodes()[0].onExecuted({openpose_json: [pose], pose_image: [image]});
        window.app.canvas.setDirty(true, true);
    }""", [json.dumps(READ_POSE, indent=4), {"filename": "example.png", "subfolder": "", "type": "input"}])
    page.wait_for_function(f"() => {POSE_CANVAS}.image", timeout=30_000)
    state = pose_state(page)
    assert state["text"] == "" and state["size"] == [512, 512]
    assert state["status"].startswith("1 person · 9 joints · input pose")

    at, _, box = canvas_mapping(page, POSE_CANVAS)
    mouse_drag(page, at(190, 240), at(150, 200))  # the right elbow
    text = pose_state(page)["text"]
    x, y, confidence = joint_of(text, 3)
    assert abs(x - 150) <= 2 and abs(y - 200) <= 2 and confidence == 1
    assert [joint_of(text, j) for j in (0, 4, 7)] == [[256, 100, 1], [180, 310, 1], [0, 0, 0]]

    page.mouse.click(*at(256, 160))  # select the neck
    page.keyboard.press("Delete")  # hidden: kept in place with confidence 0
    assert joint_of(pose_state(page)["text"], 1) == [256, 160, 0]
    page.locator("[data-testid=readout-pose-canvas] ~ div select").select_option("0:7")  # left wrist (missing)
    page.get_by_role("button", name="Hide / restore", exact=True).click()
    x, y, confidence = joint_of(pose_state(page)["text"], 7)
    assert (x, confidence) == (322, 1) and abs(y - 270.72) < 0.01  # under the left elbow
    edited = pose_state(page)["text"]
    frames = parse_pose_keypoint(edited)  # what the node reads from it
    assert frames[0].present()[0].tolist() == [j in READ_JOINTS and j != 1 or j == 7 for j in range(18)]

    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    assert joint_of(pose_state(page)["text"], 7) == [0, 0, 0] and joint_of(pose_state(page)["text"], 1)[2] == 1
    page.get_by_role("button", name="Hide / restore", exact=True).click()  # the left wrist is still selected
    page.mouse.click(*at(256, 160))
    page.keyboard.press("Delete")
    assert pose_state(page)["text"] == edited

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "pose_canvas.png"), clip={
        "x": max(box["x"] - 20, 0), "y": max(box["y"] - 120, 0), "width": box["width"] + 40, "height": box["height"] + 200})
    prompt = sent_prompt(page)
    assert prompt[str(pose_state(page)["id"])]["inputs"]["pose_text"] == edited

    # Saved and loaded again, copied and pasted: the pose stays in pose_text and on the canvas.
    page.evaluate("""async () => {
        const saved = JSON.parse(JSON.stringify(window.app.graph.serialize()));
        await window.app.loadGraphData(saved, true, true, null,
                                       {showMissingModelsDialog: false, showMissingNodesDialog: false});
        window.readoutTest.focus(window.readoutTest.poseNodes()[0]);
    }""")
    page.wait_for_timeout(300)
    assert pose_state(page)["text"] == edited and pose_state(page)["edited"]
    title = page.evaluate("() => window.readoutTest.titlePoint(window.readoutTest.poseNodes()[0])")
    page.mouse.click(*title)
    page.keyboard.press("Control+c")
    page.mouse.move(title[0] + 500, title[1] + 100)
    page.keyboard.press("Control+v")
    page.wait_for_function("() => window.readoutTest.poseNodes().length === 2", timeout=10_000)
    states = page.evaluate("() => window.readoutTest.poseStates()")
    assert [s["text"] for s in states] == [edited, edited] and all(s["edited"] for s in states)

    page.evaluate("() => window.readoutTest.focus(window.readoutTest.poseNodes()[0])")
    page.wait_for_timeout(300)
    button = page.evaluate(f"""() => {{
        const button = [...{POSE_CANVAS}.bar.children].find((child) => child.textContent === "Use input");
        const r = button.getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2];
    }}""")
    first = page.evaluate("() => window.readoutTest.poseNodes()[0].id")
    page.mouse.click(*button)  # the first node's own button (the pasted copy has one too)
    states = {state["id"]: state for state in page.evaluate("() => window.readoutTest.poseStates()")}
    # the reloaded graph has not run: there is no input pose to show until it does
    assert states.pop(first)["text"] == "" and pose_state_of(page, first)["status"].startswith("no pose yet")
    assert [state["text"] for state in states.values()] == [edited]  # the copy keeps its own pose
