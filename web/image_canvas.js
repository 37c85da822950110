// What the pack's node canvases share (Drag Points' arrows, Pose Keypoints' skeleton): a DOM
// widget holding a canvas over the node's image, a status line with buttons, keyboard focus on an
// invisible input, the image from the node's last run or from the Load Image feeding it, the
// mapping between mouse and image pixels, and the node hooks that keep it alive through clone,
// paste, configure, removal and moving between graphs. A subclass draws its own marks
// (drawMarks, summary), handles the pointer (onDown, dragTo, onUp) and the selection
// (hasSelection, removeSelected, undo), re-reads its text (reload) and names the size it edits
// at without an image (storedSize).
import { api } from "../../scripts/api.js";
import { canvasToImage, fitRect } from "./drag_points_model.js";
import { contained, runAfter, upstreamImage } from "./node_lifecycle.js";

/** The /view address of an image a node's run sent to the frontend. */
export function imageUrl(entry) {
  const params = new URLSearchParams({ filename: entry.filename, type: entry.type ?? "temp", subfolder: entry.subfolder ?? "" });
  return api.apiURL(`/view?${params}`);
}

export class ImageCanvas {
  /**
   * `node`'s canvas editing the text in `textWidget`; `testId` names the canvas element,
   * `keysLabel` says what the keys do, `placeholder` is shown until there is an image.
   */
  constructor(node, textWidget, { testId, keysLabel, placeholder }) {
    this.node = node;
    this.textWidget = textWidget;
    this.placeholder = placeholder;
    this.image = null;
    this.imageSize = null;
    this.pointer = null;
    this.gesture = null;  // what a drag holds, from onDown to onUp
    this.loading = null;  // the Image being fetched for setImage
    this.removed = false;

    this.element = document.createElement("div");
    Object.assign(this.element.style, { display: "flex", flexDirection: "column", gap: "4px", width: "100%", height: "100%" });
    this.canvas = document.createElement("canvas");
    this.canvas.dataset.testid = testId;
    // Keyboard focus goes to an invisible text input: the frontend leaves keys typed into inputs
    // alone, so Delete and Ctrl+Z act on the canvas, not on the graph.
    this.keys = document.createElement("input");
    this.keys.readOnly = true;
    this.keys.setAttribute("aria-label", keysLabel);
    Object.assign(this.keys.style, { position: "absolute", width: "1px", height: "1px", opacity: "0", pointerEvents: "none" });
    Object.assign(this.canvas.style, { flex: "1 1 auto", minHeight: "120px", width: "100%", background: "#222", borderRadius: "4px", cursor: "crosshair", outline: "none", touchAction: "none" });
    this.bar = document.createElement("div");
    Object.assign(this.bar.style, { display: "flex", gap: "6px", alignItems: "center", fontSize: "11px", color: "#bbb" });
    this.status = document.createElement("span");
    // One line however long the status grows: a wrapping line would resize the canvas mid-drag.
    Object.assign(this.status.style, { flex: "1", minWidth: "0", whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis" });
    this.bar.append(this.status);
    this.element.append(this.keys, this.canvas, this.bar);

    this.listen(this.canvas, "pointerdown", (e) => {
      this.keys.focus({ preventScroll: true });
      this.onDown(e);
    });
    // Keep keyboard focus on the canvas's input (a mousedown would move it); mouseup still fires.
    this.listen(this.canvas, "mousedown", (e) => e.preventDefault());
    this.listen(this.canvas, "pointermove", (e) => this.onMove(e));
    this.listen(this.canvas, "pointerup", (e) => this.onUp(e));
    this.listen(this.canvas, "pointerleave", () => { this.pointer = null; this.draw(); });
    this.listen(this.keys, "keydown", (e) => this.onKey(e));
    this.resizeObserver = new ResizeObserver(() => contained(() => this.draw()));
    this.resizeObserver.observe(this.canvas);
  }

  /** The pointer moved: follow it; during a gesture `dragTo(point)` moves what it holds. */
  onMove(event) {
    const point = this.toImage(event);
    this.pointer = point;
    if (this.gesture && point) {
      event.stopPropagation();
      this.dragTo(point);
    }
    this.draw();
  }

  /** Delete / Backspace → `removeSelected()` (with a selection), Ctrl+Z → `undo()`; kept from the graph. */
  onKey(event) {
    if ((event.key === "Delete" || event.key === "Backspace") && this.hasSelection()) {
      this.removeSelected();
    } else if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      this.undo();
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();
  }

  /** Call `handler(event)` for `type` events on `target`, its errors contained. */
  listen(target, type, handler) {
    target.addEventListener(type, (e) => contained(() => handler(e)));
  }

  /** A button at the end of the status line; returns it. */
  addButton(label, title, action) {
    const button = document.createElement("button");
    button.textContent = label;
    button.title = title;
    this.listen(button, "click", () => {
      action();
      this.keys.focus({ preventScroll: true });  // Delete and Ctrl+Z keep acting on the canvas
    });
    this.bar.append(button);
    return button;
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

  /** Write `text` into the node's text widget as the user's edit. */
  store(text) {
    this.textWidget.value = text;
    this.textWidget.callback?.(this.textWidget.value);
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

  /** The graph was drawn: redraw if what the canvas shows changed upstream since the last draw. */
  followUpstream() {
    if (!this.removed && this.upstreamChanged()) this.draw();
  }

  /** Whether something upstream arrived that the canvas does not show yet. */
  upstreamChanged() {
    return !this.image && Boolean(upstreamImage(this.node, "image"));
  }

  // -- geometry -----------------------------------------------------------------------------

  /** The image size the marks are in, without an image: null (a subclass may know one). */
  storedSize() {
    return null;
  }

  size() {
    return this.imageSize ?? this.storedSize() ?? [512, 512];
  }

  rect() {
    const [w, h] = this.size();
    return fitRect(w, h, this.canvas.clientWidth, this.canvas.clientHeight);
  }

  /** Image pixel under the pointer of `event`, or null outside the image. */
  toImage(event) {
    const bounds = this.canvas.getBoundingClientRect();
    const scaleX = this.canvas.clientWidth / (bounds.width || 1);
    const scaleY = this.canvas.clientHeight / (bounds.height || 1);
    const [w, h] = this.size();
    return canvasToImage(this.rect(), (event.clientX - bounds.left) * scaleX, (event.clientY - bounds.top) * scaleY, w, h);
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
      ctx.fillText(this.placeholder(), width / 2, height / 2);
    }
    this.drawMarks(ctx, rect);
    const [w, h] = this.size();
    const where = this.pointer ? ` · pointer (${Math.round(this.pointer[0])}, ${Math.round(this.pointer[1])})` : "";
    this.status.textContent = `${this.summary()} · image ${w}×${h} px${where}`;
    this.status.title = this.status.textContent;
  }
}

/**
 * Give every `nodeType` node a canvas made by `make(node, textWidget)` over its `textName`
 * widget, kept on the node as `node[property]`; `imageKey` names the node's run result that
 * carries its image; `onExecuted(canvas, message)` sees the rest of that result.
 */
export function attachCanvas(nodeType, { textName, widgetName, property, imageKey, minHeight, make, onExecuted }) {
  const hooks = nodeType.prototype;
  runAfter(hooks, "onNodeCreated", function () {
    const textWidget = this.widgets?.find((w) => w.name === textName);
    if (!textWidget || typeof this.addDOMWidget !== "function") return;  // the text box still works
    const canvas = make(this, textWidget);
    this[property] = canvas;
    this.addDOMWidget(widgetName, `readout_${widgetName}`, canvas.element, {
      serialize: false,
      hideOnZoom: false,
      getMinHeight: () => minHeight,
    });
    runAfter(textWidget, "callback", () => canvas.reload());
    const [w, h] = this.size ?? [0, 0];
    this.setSize?.([Math.max(w, 340), Math.max(h, minHeight + 180)]);
    requestAnimationFrame(() => contained(() => canvas.draw()));
  });
  runAfter(hooks, "onConfigure", function () {
    this[property]?.reload();
  });
  runAfter(hooks, "onExecuted", function (message) {
    const canvas = this[property];
    if (!canvas) return;
    onExecuted?.(canvas, message);
    const entry = message?.[imageKey]?.[0];
    if (entry) canvas.setImage(imageUrl(entry));
  });
  runAfter(hooks, "onDrawForeground", function () {
    this[property]?.followUpstream();
  });
  runAfter(hooks, "onRemoved", function () {
    this[property]?.dispose();
  });
  runAfter(hooks, "onAdded", function () {
    this[property]?.revive();
  });
}
