// The pose canvas's state, free of the DOM and the ComfyUI frontend: OpenPose JSON (the
// POSE_KEYPOINT layout the Pose Keypoints node reads) in and out, hit-testing joints, hiding and
// restoring joints, and undo. Joints are edited in pixels of the pose's canvas; a hidden joint
// keeps its place with confidence 0 (`x, y, 0`), which the node reads as missing, like `0, 0, 0`.
// The joint names, limbs and colours are the node's (readout_core/pose/keypoints.py; a test
// checks they agree). Tested with Node's built-in test runner (tests/js/).

export const JOINT_NAMES = [
  "nose", "neck", "right shoulder", "right elbow", "right wrist", "left shoulder", "left elbow", "left wrist",
  "right hip", "right knee", "right ankle", "left hip", "left knee", "left ankle", "right eye", "left eye",
  "right ear", "left ear",
];
const JOINTS = JOINT_NAMES.length;

/** For each of the 18 joints, its index in CMU OpenPose's BODY_25. */
export const BODY25_TO_OPENPOSE18 = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18];

/** The skeleton's limbs as joint pairs, in OpenPose's colour order. */
export const LIMBS = [
  [1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10],
  [1, 11], [11, 12], [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17],
];

/** OpenPose's colours: joint j and limb j use colour j. */
export const COLOURS = [
  [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
  [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
  [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
];

/** Whether a joint `[x, y, c]` is there (confidence above 0). */
export function isPresent(joint) {
  return joint[2] > 0;
}

/** Whether a joint has a place to draw: present, or hidden with its place kept (not `0, 0, 0`). */
export function hasPlace(joint) {
  return isPresent(joint) || joint[0] !== 0 || joint[1] !== 0;
}

const isNumber = (value) => typeof value === "number" && Number.isFinite(value);

function readPerson(person, width, height) {
  let numbers = person?.pose_keypoints_2d;
  if (numbers === undefined || numbers === null || (Array.isArray(numbers) && numbers.length === 0)) {
    return Array.from({ length: JOINTS }, () => [0, 0, 0]);
  }
  if (!Array.isArray(numbers)) throw new Error("'pose_keypoints_2d' must be a list of numbers");
  if (numbers.every(Array.isArray)) numbers = numbers.flat();
  if (!numbers.every(isNumber)) throw new Error("'pose_keypoints_2d' must hold finite numbers only");
  if (numbers.length !== 3 * JOINTS && numbers.length !== 75) {
    throw new Error(`'pose_keypoints_2d' has ${numbers.length} numbers; it needs 18 joints × (x, y, confidence)`);
  }
  let joints = [];
  for (let i = 0; i < numbers.length; i += 3) joints.push(numbers.slice(i, i + 3));
  if (joints.length !== JOINTS) joints = BODY25_TO_OPENPOSE18.map((index) => joints[index]);
  joints = joints.map(([x, y, c]) => [x, y, Math.min(Math.max(c, 0), 1)]);
  const present = joints.filter(isPresent);
  if (present.length && present.every(([x, y]) => Math.abs(x) <= 1 && Math.abs(y) <= 1)) {
    // 0..1 fractions of the canvas (the OpenPose preprocessor): edit in pixels like DWPose's
    joints = joints.map(([x, y, c]) => (hasPlace([x, y, c]) ? [x * width, y * height, c] : [0, 0, 0]));
  }
  return joints;
}

/**
 * The pose in `source` (OpenPose JSON text, a POSE_KEYPOINT list or one OpenPose dict) as
 * `{ pose }`, pose = { frames, width, height, people } with the first image's people as 18
 * `[x, y, c]` joints in pixels, or `{ pose: null, error }` saying what is wrong. Frames after the
 * first and keys other than the body joints (face, hands) are kept for writing back.
 */
export function readPose(source) {
  let value = source;
  if (typeof value === "string") {
    if (!value.trim()) return { pose: null, error: "empty" };
    try {
      value = JSON.parse(value);
    } catch {
      return { pose: null, error: "not valid JSON" };
    }
  }
  const frames = Array.isArray(value) ? value : [value];
  const first = frames[0];
  if (!first || typeof first !== "object" || !Array.isArray(first.people)) {
    return { pose: null, error: "no 'people' list (OpenPose JSON as DWPose outputs it)" };
  }
  const [width, height] = [first.canvas_width, first.canvas_height];
  if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0)) {
    return { pose: null, error: "needs canvas_width and canvas_height (the image size in pixels)" };
  }
  try {
    const people = first.people.map((person) => readPerson(person, width, height));
    return { pose: { frames: structuredClone(frames), width, height, people } };
  } catch (error) {
    return { pose: null, error: error.message };
  }
}

const round = (value) => Math.round(value * 100) / 100;

/** The pose as OpenPose JSON text (a POSE_KEYPOINT list, pixels), what the node's pose_text holds. */
export function writePose(pose) {
  const frames = structuredClone(pose.frames);
  const first = frames[0];
  first.canvas_width = pose.width;
  first.canvas_height = pose.height;
  first.people = pose.people.map((joints, index) => ({
    ...(first.people[index] ?? {}),
    pose_keypoints_2d: joints.flatMap(([x, y, c]) => [round(x), round(y), c]),
  }));
  return JSON.stringify(frames);
}

/**
 * The joint nearest to image point `p` within `radius` image pixels, as `{ person, joint }`,
 * or null; hidden joints that kept their place count, never-placed ones do not.
 */
export function hitJoint(people, p, radius) {
  let best = null;
  people.forEach((joints, person) => joints.forEach((joint, index) => {
    if (!hasPlace(joint)) return;
    const d2 = (joint[0] - p[0]) ** 2 + (joint[1] - p[1]) ** 2;
    if (d2 <= radius * radius && (!best || d2 < best.d2)) best = { person, joint: index, d2 };
  }));
  return best && { person: best.person, joint: best.joint };
}

/**
 * Where a restored joint without a kept place goes: a little below the mean of its placed,
 * present limb neighbours, else the middle of the person's present joints, else the canvas's.
 */
export function restorePlace(joints, joint, width, height) {
  const neighbours = LIMBS.filter((limb) => limb.includes(joint)).map(([a, b]) => joints[a === joint ? b : a])
    .filter(isPresent);
  const mean = (list) => [0, 1].map((axis) => list.reduce((sum, q) => sum + q[axis], 0) / list.length);
  if (neighbours.length) {
    const [x, y] = mean(neighbours);
    return [round(x), round(Math.min(y + 0.06 * Math.min(width, height), height - 1))];
  }
  const present = joints.filter(isPresent);
  return present.length ? mean(present).map(round) : [width / 2, height / 2];
}

/** The edited pose with undo. `pose` is null while the node uses its input pose (empty pose_text). */
export class PoseHistory {
  constructor(pose = null, limit = 100) {
    this.pose = structuredClone(pose);
    this.undoStack = [];
    this.source = null;
    this.limit = limit;
  }

  #record() {
    this.undoStack.push(structuredClone(this.pose));
    if (this.undoStack.length > this.limit) this.undoStack.shift();
  }

  /** Start an edit (one undo step); while nothing is edited yet, the edit starts from `source` (the input pose). */
  begin(source) {
    this.#record();
    this.source = source;
  }

  /** The pose being edited, copied from the source on the first change. */
  #edited() {
    if (!this.pose && this.source) this.pose = structuredClone(this.source);
    return this.pose;
  }

  /** End an edit; returns whether it changed anything (an edit that did not leaves no undo step). */
  settle() {
    const last = this.undoStack.at(-1);
    if (last === undefined || JSON.stringify(last) !== JSON.stringify(this.pose)) return true;
    this.undoStack.pop();
    return false;
  }

  move(person, joint, point) {
    const target = this.#edited()?.people[person]?.[joint];
    if (!target) return;
    target[0] = point[0];
    target[1] = point[1];
  }

  /** Hide a present joint or restore a hidden one (at its kept place, or `restorePlace`); one undo step. */
  toggle(person, joint, source) {
    this.begin(source);
    const joints = this.#edited()?.people[person];
    if (!joints?.[joint]) return this.settle();
    const [x, y, c] = joints[joint];
    if (c > 0) {
      joints[joint] = [x, y, 0];
    } else {
      const place = hasPlace(joints[joint]) ? [x, y] : restorePlace(joints, joint, this.pose.width, this.pose.height);
      joints[joint] = [...place, 1];
    }
    return true;
  }

  /** Drop the edits: the node uses its input pose again (one undo step). */
  useInput() {
    if (!this.pose) return false;
    this.#record();
    this.pose = null;
    return true;
  }

  /** Replace the pose from outside (workflow load, graph undo, typing) without an undo step. */
  reset(pose) {
    this.pose = structuredClone(pose);
    this.undoStack = [];
  }

  undo() {
    if (!this.undoStack.length) return false;
    this.pose = this.undoStack.pop();
    return true;
  }
}
