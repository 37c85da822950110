// The Drag Points canvas: draw handle → target arrows on the image to edit.
// Press and drag on the image: a new arrow from the handle (where you pressed) to the target.
// Press on an end or an arrow to select it, drag to move it; Delete removes the selected arrow;
// Ctrl+Z undoes; Clear removes all. The arrows live in the node's `points` text (image pixels),
// which is what the workflow stores; if the canvas cannot load, that text still works.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import {
  PairHistory, canvasToImage, deserialize, fitRect, hitTest, imageToCanvas, pairColour, serialize,
} from "./drag_points_model.js";
import { contained, runAfter, upstreamImage } from "./node_lifecycle.js";

const NODE_ID = "ReadoutGuidance_DragPoints";
const HIT_RADIUS_PX = 9;
const CANVAS_MIN_HEIGHT = 280;

function imageUrl(entry) {
  const params = new URLSearchParams({ filename: entry.filename, type: entry.type ?? "temp", subfolder: entry.subfolder ?? "" });
  return api.apiURL(`/view?${params}`);
}

class DragCanvas {
  constructor(node, pointsWidget) {
    this.node = node;
    this.pointsWidget = pointsWidget;
    this.image = null;
    this.imageSize = null;
    this.selected = null;
    this.gesture = null;
    this.pointer = null;
    this.loading = null;  // the Image being fetched for setImage
    this.removed = false;
    const stored = deserialize(pointsWidget.value);
    this.history = new PairHistory(stored.pairs);
    this.storedSize = stored.width && stored.height ? [stored.width, stored.height] : null;

    this.element = document.createElement("div");
    this.element.className = "readout-drag-canvas";
    Object.assign(this.element.style, { display: "flex", flexDirection: "column", gap: "4px", width: "100%", height: "100%" });
    this.canvas = document.createElement("canvas");
    this.canvas.dataset.testid = "readout-drag-canvas";
    // Keyboard focus goes to an invisible text input: the frontend leaves keys typed into inputs
    // alone, so Delete and Ctrl+Z act on the arrows, not on the graph.
    this.keys = document.createElement("input");
    this.keys.readOnly = true;
    this.keys.setAttribute("aria-label", "Drag points keyboard: Delete removes the selected arrow, Ctrl+Z undoes");
    Object.assign(this.keys.style, { position: "absolute", width: "1px", height: "1px", opacity: "0", pointerEvents: "none" });
    Object.assign(this.canvas.style, { flex: "1 1 auto", minHeight: "120px", width: "100%", background: "#222", borderRadius: "4px", cursor: "crosshair", outline: "none", touchAction: "none" });
    const bar = document.createElement("div");
    Object.assign(bar.style, { display: "flex", gap: "6px", alignItems: "center", fontSize: "11px", color: "#bbb" });
    this.status = document.createElement("span");
    this.status.style.flex = "1";
    const clear = document.createElement("button");
    clear.textContent = "Clear";
    clear.title = "Remove every arrow (Ctrl+Z brings them back)";
    bar.append(this.status, clear);
    this.element.append(this.keys, this.canvas, bar);

    const listen = (target, type, handler) => target.addEventListener(type, (e) => contained(() => handler(e)));
    listen(clear, "click", () => { if (this.history.clear()) this.commit(); });
    listen(this.canvas, "pointerdown", (e) => this.onDown(e));
    // Keep keyboard focus on the arrows' input (a mousedown would move it); mouseup still fires.
    listen(this.canvas, "mousedown", (e) => e.preventDefault());
    listen(this.canvas, "pointermove", (e) => this.onMove(e));
    listen(this.canvas, "pointerup", (e) => this.onUp(e));
    listen(this.canvas, "pointerleave", () => { this.pointer = null; this.draw(); });
    listen(this.keys, "keydown", (e) => this.onKey(e));
    this.resizeObserver = new ResizeObserver(() => contained(() => this.draw()));
    this.resizeObserver.observe(this.canvas);
  }

  /** The node left the graph: stop watching its size and drop an image still loading. */
  dispose() {
    this.removed = true;
    this.resizeObserver.disconnect();
    if (this.loading) this.loading.onload = null;
    this.loading = null;
  }

  /** The node (re)joined a graph: a node moved between graphs is removed, then added again. */
  revive() {
    if (!this.removed) return;
    this.removed = false;
    this.resizeObserver.observe(this.canvas);
    this.draw();
  }

  // -- state in and out ---------------------------------------------------------------------

  /** Re-read the points text (workflow load, paste, graph undo, typing in the text box). */
  reload() {
    const stored = deserialize(this.pointsWidget.value);
    if (serialize(stored.pairs, 0, 0) === serialize(this.history.pairs, 0, 0)) return;
    this.history.reset(stored.pairs);
    this.storedSize = stored.width && stored.height ? [stored.width, stored.height] : null;
    this.selected = null;
    this.draw();
  }

  commit() {
    const [width, height] = this.imageSize ?? this.storedSize ?? [0, 0];
    this.pointsWidget.value = serialize(this.history.pairs, width, height);
    this.pointsWidget.callback?.(this.pointsWidget.value);
    this.node.setDirtyCanvas?.(true, true);
    this.draw();
  }

  setImage(url) {
    if (this.removed) return;
    if (this.loading) this.loading.onload = null;
    const image = new Image();
    this.loading = image;
    image.onload = () => contained(() => {
      this.loading = null;
      this.image = image;
      this.imageSize = [image.naturalWidth, image.naturalHeight];
      this.draw();
    });
    image.src = url;
  }

  /** The image of the node feeding `image` (Load Image shows one), if we have none of our own. */
  adoptUpstreamImage() {
    if (this.image) return;
    const img = upstreamImage(this.node, "image");
    if (img) {
      this.image = img;
      this.imageSize = [img.naturalWidth, img.naturalHeight];
    }
  }

  /** The graph was drawn: show the upstream picture if it arrived since the last draw. */
  followUpstream() {
    if (!this.image && !this.removed && upstreamImage(this.node, "image")) this.draw();
  }

  // -- geometry -----------------------------------------------------------------------------

  size() {
    return this.imageSize ?? this.storedSize ?? [512, 512];
  }

  rect() {
    const [w, h] = this.size();
    return fitRect(w, h, this.canvas.clientWidth, this.canvas.clientHeight);
  }

  toImage(event) {
    const bounds = this.canvas.getBoundingClientRect();
    const scaleX = this.canvas.clientWidth / (bounds.width || 1);
    const scaleY = this.canvas.clientHeight / (bounds.height || 1);
    const [w, h] = this.size();
    return canvasToImage(this.rect(), (event.clientX - bounds.left) * scaleX, (event.clientY - bounds.top) * scaleY, w, h);
  }

  // -- input --------------------------------------------------------------------------------

  onDown(event) {
    this.keys.focus({ preventScroll: true });
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

  onMove(event) {
    const point = this.toImage(event);
    this.pointer = point;
    if (this.gesture && point) {
      event.stopPropagation();
      if (this.gesture.kind === "new") {
        this.gesture.end = point;
      } else if (this.gesture.hit.end) {
        this.history.moveEnd(this.gesture.hit.index, this.gesture.hit.end, point);
      } else {
        const { start, from } = this.gesture;
        this.history.shift(this.gesture.hit.index, from, point[0] - start[0], point[1] - start[1]);
      }
    }
    this.draw();
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

  onKey(event) {
    if ((event.key === "Delete" || event.key === "Backspace") && this.selected !== null) {
      if (this.history.remove(this.selected)) this.selected = null;
      this.commit();
    } else if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      if (this.history.undo()) this.selected = null;
      this.commit();
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
  }

  // -- drawing ------------------------------------------------------------------------------

  draw() {
    if (this.removed) return;
    this.adoptUpstreamImage();
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const rect = this.rect();
    if (this.image) {
      ctx.drawImage(this.image, rect.x, rect.y, rect.width, rect.height);
    } else {
      ctx.fillStyle = "#333";
      ctx.fillRect(rect.x, rect.y, rect.width, rect.height);
      ctx.fillStyle = "#999";
      ctx.font = "12px sans-serif";
      ctx.textAlign = "center";
      ctx.fillText("Queue once (or connect Load Image) to see the image", width / 2, height / 2);
    }
    const arrows = this.history.pairs.map((pair, index) => ({ ...pair, index }));
    if (this.gesture?.kind === "new") arrows.push({ handle: this.gesture.start, target: this.gesture.end, index: arrows.length });
    for (const arrow of arrows) this.drawArrow(ctx, rect, arrow);
    const [w, h] = this.size();
    const where = this.pointer ? ` · pointer (${Math.round(this.pointer[0])}, ${Math.round(this.pointer[1])})` : "";
    const pairs = this.history.pairs.length;
    this.status.textContent = `${pairs} pair${pairs === 1 ? "" : "s"} · image ${w}×${h} px${where}`;
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
    const hooks = nodeType.prototype;
    runAfter(hooks, "onNodeCreated", function () {
      const pointsWidget = this.widgets?.find((w) => w.name === "points");
      if (!pointsWidget || typeof this.addDOMWidget !== "function") return;  // the text box still works
      const drag = new DragCanvas(this, pointsWidget);
      this.readoutDragCanvas = drag;
      this.addDOMWidget("drag_canvas", "readout_drag_canvas", drag.element, {
        serialize: false,
        hideOnZoom: false,
        getMinHeight: () => CANVAS_MIN_HEIGHT,
      });
      runAfter(pointsWidget, "callback", () => drag.reload());
      const [w, h] = this.size ?? [0, 0];
      this.setSize?.([Math.max(w, 340), Math.max(h, CANVAS_MIN_HEIGHT + 180)]);
      requestAnimationFrame(() => contained(() => drag.draw()));
    });
    runAfter(hooks, "onConfigure", function () {
      this.readoutDragCanvas?.reload();
    });
    runAfter(hooks, "onExecuted", function (message) {
      const entry = message?.drag_image?.[0];
      if (entry) this.readoutDragCanvas?.setImage(imageUrl(entry));
    });
    runAfter(hooks, "onDrawForeground", function () {
      this.readoutDragCanvas?.followUpstream();
    });
    runAfter(hooks, "onRemoved", function () {
      this.readoutDragCanvas?.dispose();
    });
    runAfter(hooks, "onAdded", function () {
      this.readoutDragCanvas?.revive();
    });
  },
});
