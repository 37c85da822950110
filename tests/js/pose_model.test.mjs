// The pose canvas's logic: reading and writing OpenPose JSON, hit-testing joints, hiding and
// restoring joints, undo. Run: node --test tests/js/
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  BODY25_TO_OPENPOSE18, JOINT_NAMES, PoseHistory, hasPlace, hitJoint, readPose, restorePlace, writePose,
} from "../../web/pose_model.js";

/** 18 joints, `placed` ({ joint: [x, y] }) present, the others 0, 0, 0, flat as DWPose writes them. */
function body(placed) {
  return JOINT_NAMES.flatMap((_, joint) => (joint in placed ? [...placed[joint], 1] : [0, 0, 0]));
}

const PLACED = { 0: [300, 100], 1: [300, 160], 2: [250, 160], 3: [230, 240], 5: [350, 160] };
const DWPOSE = [{
  people: [{ pose_keypoints_2d: body(PLACED), face_keypoints_2d: [1, 2, 1], hand_left_keypoints_2d: null }],
  canvas_width: 600, canvas_height: 400,
}, { people: [], canvas_width: 600, canvas_height: 400 }];

test("DWPose output reads as pixel joints; writing keeps the other frames and the face and hand keys", () => {
  const { pose } = readPose(JSON.stringify(DWPOSE, null, 4));
  assert.equal(pose.width, 600);
  assert.equal(pose.people.length, 1);
  assert.deepEqual(pose.people[0][3], [230, 240, 1]);
  assert.deepEqual(pose.people[0][4], [0, 0, 0]);
  const written = JSON.parse(writePose(pose));
  assert.deepEqual(written, DWPOSE);  // nothing edited: the same pose, frames and keys
});

test("fractions (the OpenPose preprocessor), triples and BODY_25 become pixels of 18 joints", () => {
  const fractions = body({ 0: [0.5, 0.25], 7: [0.1, 0.9] });
  const { pose } = readPose({ people: [{ pose_keypoints_2d: fractions }], canvas_width: 200, canvas_height: 100 });
  assert.deepEqual(pose.people[0][0], [100, 25, 1]);
  assert.deepEqual(pose.people[0][7].map(Math.round), [20, 90, 1]);
  const triples = JOINT_NAMES.map((_, j) => [j * 10 + 5, 50, 0.5]);
  assert.deepEqual(readPose({ people: [{ pose_keypoints_2d: triples }], canvas_width: 300, canvas_height: 100 })
    .pose.people[0][17], [175, 50, 0.5]);
  const body25 = Array.from({ length: 25 }, (_, j) => [j + 2, 3, 1]).flat();
  const read = readPose({ people: [{ pose_keypoints_2d: body25 }], canvas_width: 64, canvas_height: 64 }).pose;
  assert.deepEqual(read.people[0].map(([x]) => x), BODY25_TO_OPENPOSE18.map((j) => j + 2));
});

test("bad text says what is wrong and reads no pose", () => {
  const cases = [
    ["", "empty"],
    ["{oops", "not valid JSON"],
    ['{"animals": []}', "no 'people' list"],
    ['{"people": [], "canvas_width": 0, "canvas_height": 5}', "canvas_width"],
    ['{"people": [{"pose_keypoints_2d": [1, 2]}], "canvas_width": 9, "canvas_height": 9}', "has 2 numbers"],
    ['{"people": [{"pose_keypoints_2d": "x"}], "canvas_width": 9, "canvas_height": 9}', "list of numbers"],
  ];
  for (const [text, error] of cases) {
    const result = readPose(text);
    assert.equal(result.pose, null, text);
    assert.ok(result.error.includes(error), `${text}: ${result.error}`);
  }
});

test("the nearest placed joint within the radius is hit; never-placed joints are not", () => {
  const { pose } = readPose(DWPOSE);
  assert.deepEqual(hitJoint(pose.people, [303, 104], 8), { person: 0, joint: 0 });
  assert.deepEqual(hitJoint(pose.people, [300, 150], 12), { person: 0, joint: 1 });  // 10 from the neck, 50 from the nose
  assert.equal(hitJoint(pose.people, [0, 0], 8), null);  // the missing joints sit at 0, 0 but are not there
  pose.people[0][1] = [300, 160, 0];  // hidden, its place kept
  assert.ok(hasPlace(pose.people[0][1]));
  assert.deepEqual(hitJoint(pose.people, [300, 158], 8), { person: 0, joint: 1 });
});

test("dragging a joint from the input pose, then undo back to the input pose", () => {
  const { pose: input } = readPose(DWPOSE);
  const history = new PoseHistory();
  history.begin(input);
  assert.equal(history.settle(), false);  // a click without a move changes nothing and leaves no step
  assert.equal(history.pose, null);
  assert.equal(history.undo(), false);
  history.begin(input);
  history.move(0, 3, [200.5, 260]);
  history.move(0, 3, [210, 270.5]);
  assert.equal(history.settle(), true);
  assert.deepEqual(history.pose.people[0][3], [210, 270.5, 1]);
  assert.deepEqual(input.people[0][3], [230, 240, 1]);  // the input itself is untouched
  const stored = readPose(writePose(history.pose)).pose;
  assert.deepEqual(stored.people[0][3], [210, 270.5, 1]);
  assert.ok(history.undo());
  assert.equal(history.pose, null);  // back to using the input pose (empty pose_text)
});

test("hide keeps the joint's place with confidence 0; restore brings it back there", () => {
  const history = new PoseHistory(readPose(DWPOSE).pose);
  assert.ok(history.toggle(0, 2));
  assert.deepEqual(history.pose.people[0][2], [250, 160, 0]);
  const text = writePose(history.pose);
  assert.deepEqual(JSON.parse(text)[0].people[0].pose_keypoints_2d.slice(6, 9), [250, 160, 0]);
  assert.deepEqual(readPose(text).pose.people[0][2], [250, 160, 0]);  // read back, still hidden in place
  assert.ok(history.toggle(0, 2));
  assert.deepEqual(history.pose.people[0][2], [250, 160, 1]);
  history.undo();
  history.undo();
  assert.deepEqual(history.pose.people[0][2], [250, 160, 1]);
  assert.equal(history.toggle(3, 0), false);  // no such person: nothing changes
  assert.equal(history.undoStack.length, 0);
});

test("a joint that was never placed is restored next to its limb neighbours", () => {
  const { pose } = readPose(DWPOSE);
  // right wrist (4): its only limb neighbour is the right elbow at (230, 240); placed below it
  assert.deepEqual(restorePlace(pose.people[0], 4, 600, 400), [230, 264]);
  // left hip (11): neighbours neck (1) and left knee (12, missing) -> below the neck
  assert.deepEqual(restorePlace(pose.people[0], 11, 600, 400), [300, 184]);
  const lonely = JOINT_NAMES.map(() => [0, 0, 0]);
  lonely[0] = [10, 20, 1];
  lonely[9] = [30, 40, 1];
  assert.deepEqual(restorePlace(lonely, 16, 100, 100), [20, 30]);  // right ear: no neighbour, the middle
  assert.deepEqual(restorePlace(JOINT_NAMES.map(() => [0, 0, 0]), 5, 100, 80), [50, 40]);
  const history = new PoseHistory(pose);
  history.toggle(0, 4);
  assert.deepEqual(history.pose.people[0][4], [230, 264, 1]);
});

test("Use input drops the edits in one undoable step", () => {
  const history = new PoseHistory(readPose(DWPOSE).pose);
  assert.ok(history.useInput());
  assert.equal(history.pose, null);
  assert.equal(history.useInput(), false);
  assert.ok(history.undo());
  assert.equal(history.pose.width, 600);
});
