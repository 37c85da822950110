// The drag canvas's logic: coordinate mapping, hit-testing, stored JSON and undo.
// Run: node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  PairHistory, canvasToImage, deserialize, fitRect, hitTest, imageToCanvas, pairColour, serialize,
} from "../../web/drag_points_model.js";

test("a wide image is letterboxed into a square box", () => {
  const rect = fitRect(1024, 512, 400, 400);
  assert.deepEqual(rect, { x: 0, y: 100, width: 400, height: 200, scale: 400 / 1024 });
  assert.deepEqual(fitRect(0, 512, 400, 400).scale, 0);
});

test("canvas and image coordinates round-trip, outside the image is null", () => {
  const rect = fitRect(512, 512, 300, 200);  // scale 200/512, x offset 50
  assert.deepEqual(canvasToImage(rect, 50, 0, 512, 512), [0, 0]);
  assert.deepEqual(canvasToImage(rect, 150, 100, 512, 512), [256, 256]);
  assert.equal(canvasToImage(rect, 49, 100, 512, 512), null);
  assert.equal(canvasToImage(rect, 250, 100, 512, 512), null);  // x = 512 is outside
  const [cx, cy] = imageToCanvas(rect, 128, 384);
  assert.deepEqual(canvasToImage(rect, cx, cy, 512, 512), [128, 384]);
});

test("the mapping follows the node's size (resize keeps points on the image)", () => {
  const point = [300, 120];
  for (const [w, h] of [[200, 200], [640, 300], [333, 777]]) {
    const rect = fitRect(640, 480, w, h);
    const [cx, cy] = imageToCanvas(rect, ...point);
    const back = canvasToImage(rect, cx, cy, 640, 480);
    assert.ok(Math.abs(back[0] - point[0]) <= 0.1 && Math.abs(back[1] - point[1]) <= 0.1, `${w}x${h}`);
  }
});

test("hit-testing prefers ends, then arrow bodies, newest first", () => {
  const pairs = [{ handle: [10, 10], target: [100, 10] }, { handle: [12, 12], target: [12, 80] }];
  assert.deepEqual(hitTest(pairs, [10.5, 10], 5), { index: 0, end: "handle" }); // nearest end wins
  assert.deepEqual(hitTest(pairs, [11, 11], 5), { index: 1, end: "handle" }); // a tie goes to the newest pair
  assert.deepEqual(hitTest(pairs, [99, 12], 5), { index: 0, end: "target" });
  assert.deepEqual(hitTest(pairs, [50, 12], 5), { index: 0, end: null });
  assert.deepEqual(hitTest(pairs, [13, 50], 5), { index: 1, end: null });
  assert.equal(hitTest(pairs, [60, 60], 5), null);
});

test("serialisation writes the canvas format and reads every stored format", () => {
  const pairs = [{ handle: [1.5, 2], target: [30, 40] }];
  const text = serialize(pairs, 512, 384);
  assert.deepEqual(JSON.parse(text), { width: 512, height: 384, pairs: [{ handle: [1.5, 2], target: [30, 40] }] });
  assert.deepEqual(deserialize(text), { pairs, width: 512, height: 384 });
  assert.deepEqual(deserialize("[[[1, 2], [3, 4]]]").pairs, [{ handle: [1, 2], target: [3, 4] }]);
  assert.deepEqual(deserialize("").pairs, []);
  assert.equal(deserialize("{oops").error, "not valid JSON");
  assert.deepEqual(deserialize('{"pairs": [{"handle": [1, "x"], "target": [3, 4]}]}').pairs, []);
});

test("undo walks back adds, moves, deletes and clear", () => {
  const history = new PairHistory();
  history.add([1, 1], [5, 5]);
  history.add([2, 2], [6, 6]);
  history.beginMove();
  history.moveEnd(0, "target", [9, 9]);
  history.moveEnd(0, "target", [10, 10]);  // one drag = one undo step
  history.remove(1);
  history.clear();
  assert.deepEqual(history.pairs, []);
  assert.ok(history.undo());
  assert.deepEqual(history.pairs, [{ handle: [1, 1], target: [10, 10] }]);
  assert.ok(history.undo());
  assert.equal(history.pairs.length, 2);
  assert.ok(history.undo());
  assert.deepEqual(history.pairs[0].target, [5, 5]);
  assert.ok(history.undo() && history.undo());
  assert.deepEqual(history.pairs, []);
  assert.equal(history.undo(), false);
});

test("moving a whole arrow and resetting from outside", () => {
  const history = new PairHistory([{ handle: [1, 1], target: [5, 5] }]);
  const from = structuredClone(history.pairs[0]);
  history.beginMove();
  history.shift(0, from, 10, -1);
  assert.deepEqual(history.pairs[0], { handle: [11, 0], target: [15, 4] });
  history.reset([]);
  assert.equal(history.undo(), false);
});

test("pairs get distinct colours", () => {
  const colours = new Set(Array.from({ length: 12 }, (_, i) => pairColour(i)));
  assert.equal(colours.size, 12);
});
