// The canvas and the presets script on nodes in every state of their life: cloned (copy, paste,
// duplicate, converting into a subgraph), configured before they join a graph, removed while an
// image loads, moved to another graph. The stand-in node throws NullGraphError from getInputNode
// without a graph, as frontend 1.53.6 and later do; web/ turns errors it contains into console
// warnings, so every test also asserts that none was written.
// Run: node --test tests/js/
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";

import { FakeGraph, NullGraphError, browser, frontend, loadPack, takeWarnings } from "./fake_frontend.mjs";

const modules = await loadPack();
const { serialize } = modules["drag_points_model.js"];
const { upstreamImage } = modules["node_lifecycle.js"];

const DRAG = "ReadoutGuidance_DragPoints";
const SAMPLER = "ReadoutGuidance_ReferenceSampler";
await frontend.defineNode(DRAG, { inputs: ["image"], widgets: [["points", ""]] });
await frontend.defineNode("LoadImage", { inputs: [], widgets: [["image", "example.png"]] });
await frontend.defineNode(SAMPLER, { inputs: [], widgets: [["preset", "custom"], ["steps", 20], ["cfg", 2]] });

const PRESETS = { "drag: real image (SD1.5)": { steps: 100, cfg: 3.5 } };
const fetched = [];
globalThis.fetch = async (url) => {
  fetched.push(url);
  return { ok: true, json: async () => PRESETS };
};

const ARROW = { handle: [10, 20], target: [30, 40] };
const POINTS = serialize([ARROW], 512, 384);

afterEach(() => {
  browser.flushFrames();
  assert.deepEqual(takeWarnings(), []);
});

/** A Load Image node showing a loaded `width`×`height` picture, connected to a new Drag Points node. */
function loadImageFeedingDragPoints(graph, width = 640, height = 480) {
  const source = graph.add(frontend.createNode("LoadImage"));
  const picture = new Image();
  picture.finish(width, height);
  source.imgs = [picture];
  const drag = graph.add(frontend.createNode(DRAG));
  drag.configure({ ...drag.serialize(), widgets_values: [POINTS] });
  graph.connect(source, drag, "image");
  return { source, drag, picture };
}

function drawnImages(canvas) {
  return canvas.canvas.drawCalls.filter((call) => call.name === "drawImage").map((call) => call.args[0]);
}

test("the upstream image is null without a graph, a link or a loaded picture", () => {
  const graph = new FakeGraph();
  const { drag, picture } = loadImageFeedingDragPoints(graph);
  assert.equal(upstreamImage(drag, "image"), picture);
  assert.equal(upstreamImage(drag, "mask"), null);
  const lone = frontend.createNode(DRAG);
  assert.throws(() => lone.getInputNode(0), NullGraphError);  // what the frontend does without a graph
  assert.equal(upstreamImage(lone, "image"), null);
  graph.add(lone);
  assert.equal(upstreamImage(lone, "image"), null);  // in a graph, nothing connected
  picture.complete = false;
  assert.equal(upstreamImage(drag, "image"), null);  // still loading
});

test("copying a connected node: the clone is configured without a graph, then pasted", () => {
  const graph = new FakeGraph();
  const { source, drag, picture } = loadImageFeedingDragPoints(graph);
  const copy = drag.clone();  // the frontend's copy, duplicate and convert-to-subgraph all start here
  assert.equal(copy.graph, null);
  assert.deepEqual(copy.readoutDragCanvas.history.pairs, [ARROW]);
  browser.flushFrames();
  browser.resize(copy.readoutDragCanvas.canvas, 400, 300);  // drawn while still outside any graph
  assert.deepEqual(drawnImages(copy.readoutDragCanvas), []);
  assert.match(copy.readoutDragCanvas.status.textContent, /^1 pair · image 512×384 px$/);

  // Converting into a subgraph also configures graph-less nodes from data that still holds its links.
  const linked = frontend.createNode(DRAG);
  linked.configure(drag.serialize());
  assert.equal(linked.graph, null);
  assert.notEqual(linked.inputs[0].link, null);
  browser.resize(linked.readoutDragCanvas.canvas, 400, 300);
  assert.deepEqual(linked.readoutDragCanvas.history.pairs, [ARROW]);
  assert.deepEqual(drawnImages(linked.readoutDragCanvas), []);

  graph.add(copy);  // paste
  graph.connect(source, copy, "image");
  browser.resize(copy.readoutDragCanvas.canvas, 400, 301);
  assert.deepEqual(drawnImages(copy.readoutDragCanvas), [picture]);
  assert.deepEqual(copy.readoutDragCanvas.size(), [640, 480]);
});

test("typing points and editing with the mouse on a node that has no graph", () => {
  const node = frontend.createNode(DRAG);
  const canvas = node.readoutDragCanvas;
  const points = node.widgets.find((w) => w.name === "points");
  points.value = POINTS;
  points.callback(points.value);  // the text box changed
  assert.deepEqual(canvas.history.pairs, [ARROW]);
  browser.resize(canvas.canvas, 512, 384);  // one canvas pixel per image pixel
  canvas.canvas.dispatch("pointerdown", { clientX: 100, clientY: 100 });
  canvas.canvas.dispatch("pointermove", { clientX: 200, clientY: 150 });
  canvas.canvas.dispatch("pointerup", { clientX: 200, clientY: 150 });
  assert.deepEqual(JSON.parse(points.value).pairs, [ARROW, { handle: [100, 100], target: [200, 150] }]);
  const clear = canvas.element.children.at(-1).children.at(-1);
  clear.dispatch("click");
  assert.deepEqual(JSON.parse(points.value), { width: 512, height: 384, pairs: [] });
});

test("an executed node without a graph shows its own image", () => {
  const node = frontend.createNode(DRAG);
  browser.takeImages();
  node.onExecuted({ drag_image: [{ filename: "drag 1.png", subfolder: "", type: "temp" }] });
  const [image] = browser.takeImages();
  assert.equal(image.src, "/api/view?filename=drag+1.png&type=temp&subfolder=");
  browser.resize(node.readoutDragCanvas.canvas, 300, 300);
  image.finish(768, 512);
  assert.deepEqual(node.readoutDragCanvas.size(), [768, 512]);
  assert.deepEqual(drawnImages(node.readoutDragCanvas), [image]);
});

test("a node removed while its image loads stays quiet", () => {
  const graph = new FakeGraph();
  const { drag } = loadImageFeedingDragPoints(graph);
  const canvas = drag.readoutDragCanvas;
  browser.takeImages();
  drag.onExecuted({ drag_image: [{ filename: "a.png" }] });
  const [image] = browser.takeImages();
  graph.remove(drag);
  image.finish(64, 64);
  browser.resize(canvas.canvas, 300, 300);
  browser.flushFrames();
  assert.equal(canvas.image, null);
  assert.deepEqual(canvas.canvas.drawCalls, []);
  drag.onExecuted({ drag_image: [{ filename: "b.png" }] });  // a late message for the removed node
  assert.deepEqual(browser.takeImages(), []);
});

test("a node moved to another graph draws again there", () => {
  const first = new FakeGraph();
  const { drag } = loadImageFeedingDragPoints(first);
  first.remove(drag);
  const second = new FakeGraph();
  second.add(drag);
  browser.resize(drag.readoutDragCanvas.canvas, 200, 200);
  assert.match(drag.readoutDragCanvas.status.textContent, /^1 pair · image 512×384 px$/);
  assert.ok(drag.readoutDragCanvas.canvas.drawCalls.some((call) => call.name === "arc"));  // the arrow's handle
});

test("a preset fills the sampler in a graph, and not one removed or outside a graph", async () => {
  const graph = new FakeGraph();
  const [kept, removed] = [graph.add(frontend.createNode(SAMPLER)), graph.add(frontend.createNode(SAMPLER))];
  const outside = frontend.createNode(SAMPLER);
  const choose = (node) => {
    const preset = node.widgets.find((w) => w.name === "preset");
    preset.value = "drag: real image (SD1.5)";
    preset.callback(preset.value);
  };
  for (const node of [kept, removed, outside]) choose(node);
  graph.remove(removed);  // before the list arrives
  await new Promise((resolve) => setTimeout(resolve, 0));
  const values = (node) => node.widgets.slice(1).map((w) => w.value);
  assert.deepEqual(values(kept), [100, 3.5]);
  assert.deepEqual(values(removed), [20, 2]);
  assert.deepEqual(values(outside), [20, 2]);
  assert.deepEqual(fetched, ["/readout_guidance/presets"]);  // fetched once for all nodes
  assert.deepEqual(graph.dirty, [kept.id]);
});

test("a hook keeps the frontend's own result and errors; the pack's error becomes a warning", () => {
  const { runAfter } = modules["node_lifecycle.js"];
  const owner = { hook: (x) => x * 2, failing: () => { throw new RangeError("frontend"); } };
  const seen = [];
  runAfter(owner, "hook", (x) => { seen.push(x); throw new Error("pack"); });
  runAfter(owner, "failing", () => seen.push("never"));
  assert.equal(owner.hook(21), 42);
  assert.throws(() => owner.failing(), RangeError);
  assert.deepEqual(seen, [21]);
  const [warning, ...more] = takeWarnings();
  assert.match(warning, /^Readout Guidance: .* Error: pack$/);
  assert.deepEqual(more, []);
});

test("drawing the graph shows a Load Image picture that arrived later, and needs no graph", () => {
  const graph = new FakeGraph();
  const source = graph.add(frontend.createNode("LoadImage"));
  const drag = graph.add(frontend.createNode(DRAG));
  graph.connect(source, drag, "image");
  browser.resize(drag.readoutDragCanvas.canvas, 300, 300);
  drag.onDrawForeground();
  assert.deepEqual(drawnImages(drag.readoutDragCanvas), []);
  const picture = new Image();
  picture.finish(640, 480);
  source.imgs = [picture];  // Load Image shows its picture once it has loaded
  drag.onDrawForeground();
  assert.deepEqual(drawnImages(drag.readoutDragCanvas), [picture]);
  const lone = frontend.createNode(DRAG);
  lone.onDrawForeground();
  assert.equal(lone.readoutDragCanvas.image, null);
});
