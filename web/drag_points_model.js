// The drag canvas's state, free of the DOM and the ComfyUI frontend: handle → target pairs in
// image pixels, mapping between the canvas and the image, hit-testing, the stored JSON and undo.
// Tested with Node's built-in test runner (tests/js/).

/** Where an image of `imageWidth`×`imageHeight` sits when fitted (letterboxed) into a box. */
export function fitRect(imageWidth, imageHeight, boxWidth, boxHeight) {
  if (!(imageWidth > 0 && imageHeight > 0 && boxWidth > 0 && boxHeight > 0)) {
    return { x: 0, y: 0, width: 0, height: 0, scale: 0 };
  }
  const scale = Math.min(boxWidth / imageWidth, boxHeight / imageHeight);
  const width = imageWidth * scale;
  const height = imageHeight * scale;
  return { x: (boxWidth - width) / 2, y: (boxHeight - height) / 2, width, height, scale };
}

/** Canvas point → image pixel (x, y), or null outside the image. */
export function canvasToImage(rect, canvasX, canvasY, imageWidth, imageHeight) {
  if (!rect.scale) return null;
  const x = (canvasX - rect.x) / rect.scale;
  const y = (canvasY - rect.y) / rect.scale;
  if (x < 0 || y < 0 || x >= imageWidth || y >= imageHeight) return null;
  return [Math.round(x * 10) / 10, Math.round(y * 10) / 10];
}

/** Image pixel → canvas point. */
export function imageToCanvas(rect, imageX, imageY) {
  return [rect.x + imageX * rect.scale, rect.y + imageY * rect.scale];
}

/** Squared distance from p to the segment a–b. */
function segmentDistance2(p, a, b) {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const length2 = dx * dx + dy * dy;
  const t = length2 ? Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2)) : 0;
  const x = a[0] + t * dx - p[0];
  const y = a[1] + t * dy - p[1];
  return x * x + y * y;
}

/**
 * What lies under image point `p` within `radius` image pixels: an end of a pair
 * ({ index, end: "handle" | "target" }), else an arrow body ({ index, end: null }), else null.
 * Ends win over bodies; the most recently drawn pair wins ties.
 */
export function hitTest(pairs, p, radius) {
  const r2 = radius * radius;
  let best = null;
  for (let index = pairs.length - 1; index >= 0; index--) {
    for (const end of ["target", "handle"]) {
      const q = pairs[index][end];
      const d2 = (q[0] - p[0]) ** 2 + (q[1] - p[1]) ** 2;
      if (d2 <= r2 && (!best || d2 < best.d2)) best = { index, end, d2 };
    }
  }
  if (best) return { index: best.index, end: best.end };
  for (let index = pairs.length - 1; index >= 0; index--) {
    if (segmentDistance2(p, pairs[index].handle, pairs[index].target) <= r2) return { index, end: null };
  }
  return null;
}

/** The stored JSON (the Drag Points node's `points` text) for `pairs` on an image of this size. */
export function serialize(pairs, width, height) {
  return JSON.stringify({
    width,
    height,
    pairs: pairs.map((p) => ({ handle: [...p.handle], target: [...p.target] })),
  });
}

/**
 * Pairs from the stored text, in the canvas format or a list of pairs; [] for empty or
 * unreadable text (the node's own validation explains what is wrong with it).
 */
export function deserialize(text) {
  if (!text || !text.trim()) return { pairs: [], width: null, height: null };
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    return { pairs: [], width: null, height: null, error: "not valid JSON" };
  }
  const isPoint = (p) => Array.isArray(p) && p.length === 2 && p.every(Number.isFinite);
  let pairs = [];
  if (data && Array.isArray(data.pairs)) {
    pairs = data.pairs.filter((p) => p && isPoint(p.handle) && isPoint(p.target));
  } else if (Array.isArray(data)) {
    pairs = data.filter((p) => Array.isArray(p) && isPoint(p[0]) && isPoint(p[1]))
      .map((p) => ({ handle: p[0], target: p[1] }));
  }
  return {
    pairs: pairs.map((p) => ({ handle: [...p.handle], target: [...p.target] })),
    width: Number.isFinite(data?.width) ? data.width : null,
    height: Number.isFinite(data?.height) ? data.height : null,
  };
}

/** Pair state with undo: every change is a new snapshot. */
export class PairHistory {
  constructor(pairs = [], limit = 100) {
    this.pairs = clonePairs(pairs);
    this.undoStack = [];
    this.limit = limit;
  }

  #record() {
    this.undoStack.push(clonePairs(this.pairs));
    if (this.undoStack.length > this.limit) this.undoStack.shift();
  }

  add(handle, target) {
    this.#record();
    this.pairs.push({ handle: [...handle], target: [...target] });
    return this.pairs.length - 1;
  }

  /** Start moving an end (records one undo step for the whole drag). */
  beginMove() {
    this.#record();
  }

  moveEnd(index, end, point) {
    if (!this.pairs[index]) return;
    if (end === null) return;
    this.pairs[index][end] = [...point];
  }

  /** Move a whole arrow by (dx, dy) image pixels. */
  shift(index, from, dx, dy) {
    if (!this.pairs[index]) return;
    this.pairs[index] = {
      handle: [from.handle[0] + dx, from.handle[1] + dy],
      target: [from.target[0] + dx, from.target[1] + dy],
    };
  }

  remove(index) {
    if (!this.pairs[index]) return false;
    this.#record();
    this.pairs.splice(index, 1);
    return true;
  }

  clear() {
    if (!this.pairs.length) return false;
    this.#record();
    this.pairs = [];
    return true;
  }

  /** Replace the pairs from outside (workflow load, graph undo) without an undo step. */
  reset(pairs) {
    this.pairs = clonePairs(pairs);
    this.undoStack = [];
  }

  undo() {
    if (!this.undoStack.length) return false;
    this.pairs = this.undoStack.pop();
    return true;
  }
}

function clonePairs(pairs) {
  return pairs.map((p) => ({ handle: [...p.handle], target: [...p.target] }));
}

/** A distinct colour for pair `index` (golden-angle hues). */
export function pairColour(index) {
  return `hsl(${Math.round((index * 137.508) % 360)}, 85%, 55%)`;
}
