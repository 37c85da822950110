// The Drag Points canvas: draw handle → target arrows on the image to edit.
// Press and drag on the image: a new arrow from the handle (where you pressed) to the target.
// Press on an end or an arrow to select it, drag to move it; Delete removes the selected arrow;
// Ctrl+Z undoes; Clear removes all. The arrows live in the node's `points` text (image pixels),
// which is what the workflow stores; if the canvas cannot load, that text still works.
import { app } from "../../scripts/app.js";
import { PairHistory, deserialize, hitTest, imageToCanvas, pairColour, serialize } from "./drag_points_model.js";
import { ImageCanvas, attachCanvas } from "./image_canvas.js";

const NODE_ID = "ReadoutGuidance_DragPoints";
const HIT_RADIUS_PX = 9;
const CANVAS_MIN_HEIGHT = 280;

class DragCanvas extends ImageCanvas {
  constructor(node, pointsWidget) {
    super(node, pointsWidget, {
      testId: "readout-drag-canvas",
      keysLabel: "Drag points keyboard: Delete removes the selected arrow, Ctrl+Z undoes",
      placeholder: () => "Queue once (or connect Load Image) to see the image",
    });
    this.selected = null;
    const stored = deserialize(pointsWidget.value);
    this.history = new PairHistory(stored.pairs);
    this.savedSize = stored.width && stored.height ? [stored.width, stored.height] : null;
    this.addButton("Clear", "Remove every arrow (Ctrl+Z brings them back)", () => {
      if (this.history.clear()) this.commit();
    });
  }

  // -- state in and out ---------------------------------------------------------------------

  /** Re-read the points text (workflow load, paste, graph undo, typing in the text box). */
  reload() {
    const stored = deserialize(this.textWidget.value);
    if (serialize(stored.pairs, 0, 0) === serialize(this.history.pairs, 0, 0)) return;
    this.history.reset(stored.pairs);
    this.savedSize = stored.width && stored.height ? [stored.width, stored.height] : null;
    this.selected = null;
    this.draw();
  }

  commit() {
    const [width, height] = this.imageSize ?? this.savedSize ?? [0, 0];
    this.store(serialize(this.history.pairs, width, height));
  }

  storedSize() {
    return this.savedSize;
  }

  // -- input --------------------------------------------------------------------------------

  onDown(event) {
    const point = this.toImage(event);
    if (!point) return;
    // No preventDefault: the mouseup that follows lets the frontend record the change for graph undo.
    event.stopPropagation();
    this.canvas.setPointerCapture?.(event.pointerId);
    const radius = HIT_RADIUS_PX / (this.rect().scale || 1);
    const hit = hitTest(this.history.pairs, point, radius);
    if (hit) {
      this.selected = hit.index;
      this.history.beginMove();
      this.gesture = { kind: "move", hit, start: point, from: structuredClone(this.history.pairs[hit.index]) };
    } else {
      this.gesture = { kind: "new", start: point, end: point };
    }
    this.draw();
  }

  dragTo(point) {
    if (this.gesture.kind === "new") {
      this.gesture.end = point;
    } else if (this.gesture.hit.end) {
      this.history.moveEnd(this.gesture.hit.index, this.gesture.hit.end, point);
    } else {
      const { start, from } = this.gesture;
      this.history.shift(this.gesture.hit.index, from, point[0] - start[0], point[1] - start[1]);
    }
  }

  onUp(event) {
    const gesture = this.gesture;
    this.gesture = null;
    if (!gesture) return;
    event.stopPropagation();
    if (gesture.kind === "new") {
      const [dx, dy] = [gesture.end[0] - gesture.start[0], gesture.end[1] - gesture.start[1]];
      if (Math.hypot(dx, dy) * (this.rect().scale || 1) >= 4) {
        this.selected = this.history.add(gesture.start, gesture.end);
      } else {
        this.selected = null;
      }
    }
    this.commit();
  }

  hasSelection() {
    return this.selected !== null;
  }

  removeSelected() {
    if (this.history.remove(this.selected)) this.selected = null;
    this.commit();
  }

  undo() {
    if (this.history.undo()) this.selected = null;
    this.commit();
  }

  // -- drawing ------------------------------------------------------------------------------

  drawMarks(ctx, rect) {
    const arrows = this.history.pairs.map((pair, index) => ({ ...pair, index }));
    if (this.gesture?.kind === "new") arrows.push({ handle: this.gesture.start, target: this.gesture.end, index: arrows.length });
    for (const arrow of arrows) this.drawArrow(ctx, rect, arrow);
  }

  summary() {
    const pairs = this.history.pairs.length;
    return `${pairs} pair${pairs === 1 ? "" : "s"}`;
  }

  drawArrow(ctx, rect, arrow) {
    const colour = pairColour(arrow.index);
    const [hx, hy] = imageToCanvas(rect, ...arrow.handle);
    const [tx, ty] = imageToCanvas(rect, ...arrow.target);
    const selected = arrow.index === this.selected;
    ctx.strokeStyle = colour;
    ctx.fillStyle = colour;
    ctx.lineWidth = selected ? 3 : 2;
    ctx.beginPath();
    ctx.moveTo(hx, hy);
    ctx.lineTo(tx, ty);
    ctx.stroke();
    const angle = Math.atan2(ty - hy, tx - hx);
    ctx.beginPath();
    ctx.moveTo(tx, ty);
    ctx.lineTo(tx - 10 * Math.cos(angle - 0.4), ty - 10 * Math.sin(angle - 0.4));
    ctx.lineTo(tx - 10 * Math.cos(angle + 0.4), ty - 10 * Math.sin(angle + 0.4));
    ctx.closePath();
    ctx.fill();
    ctx.beginPath();
    ctx.arc(hx, hy, selected ? 6 : 5, 0, 2 * Math.PI);
    ctx.fill();
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1;
    ctx.stroke();
    ctx.fillStyle = "#fff";
    ctx.font = "bold 11px sans-serif";
    ctx.textAlign = "left";
    ctx.fillText(String(arrow.index + 1), hx + 7, hy - 7);
  }
}

app.registerExtension({
  name: "readout_guidance.drag_canvas",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_ID) return;
    attachCanvas(nodeType, {
      textName: "points",
      widgetName: "drag_canvas",
      property: "readoutDragCanvas",
      imageKey: "drag_image",
      minHeight: CANVAS_MIN_HEIGHT,
      make: (node, widget) => new DragCanvas(node, widget),
    });
  },
});
