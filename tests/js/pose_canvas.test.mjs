// The pose canvas on Pose Keypoints nodes in every state of their life, with the stand-in
// frontend of fake_frontend.mjs: the input pose from an upstream node's run or the node's own,
// dragging, hiding and restoring joints, undo, typing, clone / paste / configure without a graph,
// removal while the image loads. Every test also asserts that no error was contained (web/
// reports those as console warnings). Run: node --test tests/js/
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";

import { FakeGraph, browser, frontend, loadPack, takeWarnings } from "./fake_frontend.mjs";

const modules = await loadPack();
const { JOINT_NAMES, readPose } = modules["pose_model.js"];

const POSE = "ReadoutGuidance_PoseKeypoints";
const READER = "ReadoutGuidance_ReadoutPose";
await frontend.defineNode(POSE, { inputs: ["head", "pose_keypoint", "terms", "image"], widgets: [["weight", 1], ["pose_text", ""]] });
await frontend.defineNode(READER, { inputs: ["model", "head", "latent"], widgets: [["threshold", 0.1]], outputs: ["POSE_KEYPOINT", "IMAGE"] });
await frontend.defineNode("LoadImage", { inputs: [], widgets: [["image", "example.png"]], outputs: ["IMAGE", "MASK"] });

const joints = (placed) => JOINT_NAMES.flatMap((_, j) => (j in placed ? [...placed[j], 1] : [0, 0, 0]));
const READ = [{ people: [{ pose_keypoints_2d: joints({ 0: [300, 100], 1: [300, 160], 3: [230, 240] }) }], canvas_width: 600, canvas_height: 400 }];
const READ_TEXT = JSON.stringify(READ, null, 4);

afterEach(() => {
  browser.flushFrames();
  assert.deepEqual(takeWarnings(), []);
});

/** A Readout Pose node that has run, feeding a new Pose Keypoints node; the canvas at one pixel per image pixel. */
function readerFeedingPose(graph) {
  const reader = graph.add(frontend.createNode(READER));
  reader.onExecuted({ images: [{ filename: "skeleton.png" }], openpose_json: [READ_TEXT] });
  const pose = graph.add(frontend.createNode(POSE));
  graph.connect(reader, pose, "pose_keypoint");
  browser.resize(pose.readoutPoseCanvas.canvas, 600, 400);
  return { reader, pose, canvas: pose.readoutPoseCanvas, text: pose.widgets.find((w) => w.name === "pose_text") };
}

const press = (canvas, x, y) => canvas.canvas.dispatch("pointerdown", { clientX: x, clientY: y });
const moveTo = (canvas, x, y) => canvas.canvas.dispatch("pointermove", { clientX: x, clientY: y });
const release = (canvas, x, y) => canvas.canvas.dispatch("pointerup", { clientX: x, clientY: y });
const bodyOf = (text) => readPose(text).pose.people[0];
const arcs = (canvas) => canvas.canvas.drawCalls.filter((call) => call.name === "arc").length;

test("the upstream node's read pose is shown; dragging a joint writes it into pose_text; undo empties it", () => {
  const graph = new FakeGraph();
  const { pose, canvas, text } = readerFeedingPose(graph);
  pose.onDrawForeground();
  assert.match(canvas.status.textContent, /^1 person · 3 joints · input pose · image 600×400 px$/);
  assert.equal(arcs(canvas), 3);
  press(canvas, 232, 238);  // on the right elbow
  release(canvas, 232, 238);
  assert.equal(text.value, "");  // selecting changes nothing
  assert.equal(canvas.jointList.value, "0:3");
  press(canvas, 231, 241);
  moveTo(canvas, 260, 300);
  moveTo(canvas, 280, 320);
  release(canvas, 280, 320);
  assert.deepEqual(bodyOf(text.value)[3], [280, 320, 1]);
  assert.deepEqual(bodyOf(text.value)[0], [300, 100, 1]);
  assert.match(canvas.status.textContent, /· edited · right elbow/);
  canvas.keys.dispatch("keydown", { key: "z", ctrlKey: true });
  assert.equal(text.value, "");
  assert.match(canvas.status.textContent, /input pose/);
});

test("Delete hides the selected joint in place; the list restores it; a never-placed joint comes back by its neighbour", () => {
  const graph = new FakeGraph();
  const { canvas, text } = readerFeedingPose(graph);
  press(canvas, 300, 160);
  release(canvas, 300, 160);
  const key = canvas.keys.dispatch("keydown", { key: "Delete" });
  assert.ok(key.defaultPrevented);  // the graph does not delete the node
  assert.deepEqual(bodyOf(text.value)[1], [300, 160, 0]);
  assert.match(canvas.jointList.children[1].textContent, /^neck · hidden$/);
  canvas.jointList.value = "0:1";
  canvas.jointList.dispatch("change");
  canvas.toggleButton.dispatch("click");
  assert.deepEqual(bodyOf(text.value)[1], [300, 160, 1]);
  canvas.jointList.value = "0:4";  // right wrist: missing in the read pose
  canvas.jointList.dispatch("change");
  canvas.toggleButton.dispatch("click");
  assert.deepEqual(bodyOf(text.value)[4], [230, 264, 1]);
});

test("typed text is shown; bad text is reported in the status and is never overwritten by a drag", () => {
  const graph = new FakeGraph();
  const { canvas, text } = readerFeedingPose(graph);
  const typed = [{ people: [{ pose_keypoints_2d: joints({ 5: [100, 100] }) }], canvas_width: 300, canvas_height: 200 }];
  text.value = JSON.stringify(typed);
  text.callback(text.value);
  assert.deepEqual(canvas.size(), [300, 200]);
  text.value = "{oops";
  text.callback(text.value);
  assert.match(canvas.status.textContent, /^pose_text: not valid JSON/);
  press(canvas, 300, 100);
  moveTo(canvas, 320, 120);
  release(canvas, 320, 120);
  assert.equal(text.value, "{oops");
  canvas.element.children.at(-1).children.at(-1).dispatch("click");  // Use input
  assert.equal(text.value, "{oops");  // nothing edited on the canvas to drop
});

test("a clone is configured without a graph, drawn there, then pasted and connected", () => {
  const graph = new FakeGraph();
  const { reader, pose, canvas, text } = readerFeedingPose(graph);
  press(canvas, 300, 100);
  moveTo(canvas, 310, 90);
  release(canvas, 310, 90);
  const copy = pose.clone();
  assert.equal(copy.graph, null);
  const copied = copy.readoutPoseCanvas;
  browser.resize(copied.canvas, 600, 400);
  copy.onDrawForeground();
  assert.deepEqual(copied.history.pose.people[0][0], [310, 90, 1]);
  assert.match(copied.status.textContent, /edited/);
  const linked = frontend.createNode(POSE);  // converting into a subgraph: configured with its links, no graph
  linked.configure(pose.serialize());
  browser.resize(linked.readoutPoseCanvas.canvas, 300, 200);
  linked.onDrawForeground();
  assert.equal(linked.readoutPoseCanvas.history.pose.width, 600);
  graph.add(copy);
  graph.connect(reader, copy, "pose_keypoint");
  copy.widgets.find((w) => w.name === "pose_text").value = "";
  copy.onConfigure({});  // graph undo back to the empty text: the input pose again
  assert.match(copied.status.textContent, /input pose/);
  assert.deepEqual(bodyOf(text.value)[0], [310, 90, 1]);  // the original keeps its edit
});

test("the node's own run shows its pose and image; removed while the image loads, it stays quiet", () => {
  const graph = new FakeGraph();
  const lone = graph.add(frontend.createNode(POSE));
  const canvas = lone.readoutPoseCanvas;
  browser.resize(canvas.canvas, 300, 300);
  assert.match(canvas.status.textContent, /^no pose yet · image 512×512 px$/);
  browser.takeImages();
  lone.onExecuted({ openpose_json: [READ_TEXT], pose_image: [{ filename: "photo.png", type: "temp" }] });
  const [image] = browser.takeImages();
  assert.equal(image.src, "/api/view?filename=photo.png&type=temp&subfolder=");
  image.finish(1200, 800);
  assert.deepEqual(canvas.size(), [600, 400]);  // the pose's canvas: the image is drawn under it
  assert.equal(canvas.canvas.drawCalls.filter((call) => call.name === "drawImage").length > 0, true);
  lone.onExecuted({ openpose_json: [READ_TEXT], pose_image: [{ filename: "late.png" }] });
  const [late] = browser.takeImages();
  graph.remove(lone);
  late.finish(64, 64);
  browser.resize(canvas.canvas, 200, 200);
  lone.onExecuted({ openpose_json: [READ_TEXT], pose_image: [{ filename: "gone.png" }] });
  assert.deepEqual(browser.takeImages(), []);
  assert.equal(canvas.image, image);
});

test("only nodes that output POSE_KEYPOINT keep the pose their run showed", () => {
  const graph = new FakeGraph();
  const loader = graph.add(frontend.createNode("LoadImage"));
  loader.onExecuted?.({ openpose_json: [READ_TEXT] });
  assert.equal(loader.readoutPoseJson, undefined);
  const { reader } = readerFeedingPose(graph);
  assert.equal(reader.readoutPoseJson, READ_TEXT);
  reader.onExecuted({ images: [] });  // a run without a pose keeps the last one
  assert.equal(reader.readoutPoseJson, READ_TEXT);
});
