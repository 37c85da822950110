// The pack's web/ extensions under Node: a stand-in for the browser objects they use (elements,
// a 2D context that records its calls, Image, ResizeObserver, animation frames) and for the parts
// of the ComfyUI frontend they touch (app.registerExtension, api.apiURL, LiteGraph nodes and graphs).
// The node stand-in copies what the newest frontend (1.58) does where it matters: a node is created
// and configured before it has a graph (clone, paste, converting into a subgraph), and
// getInputNode throws NullGraphError on a node without one. The extension files are copied into a
// folder laid out as ComfyUI serves them (extensions/<pack>/ beside scripts/app.js), so their
// imports of "../../scripts/app.js" resolve to the stand-ins.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const WEB_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "web");

// -- the browser -----------------------------------------------------------------------------

/** A 2D context that records the names of the drawing calls made on it. */
function recordingContext(calls) {
  return new Proxy({}, {
    get: (target, name) => (name in target ? target[name] : (...args) => calls.push({ name, args })),
    set: (target, name, value) => { target[name] = value; return true; },
  });
}

class FakeElement {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.style = {};
    this.dataset = {};
    this.attributes = {};
    this.children = [];
    this.listeners = {};
    this.textContent = "";
    this.clientWidth = 0;
    this.clientHeight = 0;
    this.width = 0;
    this.height = 0;
    this.drawCalls = [];
  }

  append(...children) { this.children.push(...children); }
  replaceChildren(...children) { this.children = [...children]; }
  setAttribute(name, value) { this.attributes[name] = String(value); }
  addEventListener(type, listener) { (this.listeners[type] ??= []).push(listener); }
  focus() {}
  setPointerCapture() {}
  getBoundingClientRect() { return { left: 0, top: 0, x: 0, y: 0, width: this.clientWidth, height: this.clientHeight }; }
  getContext() { return recordingContext(this.drawCalls); }

  /** Fire a DOM event of `type` with the given fields; returns the event. */
  dispatch(type, fields = {}) {
    const event = { type, pointerId: 1, defaultPrevented: false, preventDefault() { this.defaultPrevented = true; },
      stopPropagation() {}, ...fields };
    for (const listener of this.listeners[type] ?? []) listener(event);
    return event;
  }
}

class FakeImage {
  static started = [];
  constructor() { this.complete = false; this.naturalWidth = 0; this.naturalHeight = 0; this.onload = null; }
  set src(url) { this.url = url; FakeImage.started.push(this); }
  get src() { return this.url; }
  /** The picture arrived: `width`×`height` pixels. */
  finish(width, height) {
    Object.assign(this, { complete: true, naturalWidth: width, naturalHeight: height });
    this.onload?.();
  }
}

class FakeResizeObserver {
  static all = new Set();
  constructor(callback) { this.callback = callback; this.targets = new Set(); FakeResizeObserver.all.add(this); }
  observe(element) { this.targets.add(element); }
  disconnect() { this.targets.clear(); }
}

const frames = [];

export const browser = {
  /** Give `element` a laid-out size and tell its resize observers, as the browser does. */
  resize(element, width, height) {
    Object.assign(element, { clientWidth: width, clientHeight: height });
    for (const observer of FakeResizeObserver.all) if (observer.targets.has(element)) observer.callback([]);
  },
  /** Run the pending animation frames. */
  flushFrames() {
    for (const frame of frames.splice(0)) frame(0);
  },
  /** Images started since the last call. */
  takeImages() {
    return FakeImage.started.splice(0);
  },
};

/** Console warnings since the last call (web/ reports errors it contains as warnings). */
const warnings = [];
export function takeWarnings() {
  return warnings.splice(0);
}

function installBrowser() {
  globalThis.document = { createElement: (tag) => new FakeElement(tag) };
  globalThis.window = { devicePixelRatio: 1 };
  globalThis.Image = FakeImage;
  globalThis.ResizeObserver = FakeResizeObserver;
  globalThis.requestAnimationFrame = (frame) => frames.push(frame);
  console.warn = (...args) => warnings.push(args.map(String).join(" "));
}

// -- LiteGraph and the ComfyUI app -------------------------------------------------------------

export class NullGraphError extends Error {
  constructor() {
    super("Attempted to access LGraph reference that was null or undefined.");
    this.name = "NullGraphError";
  }
}

/** A node as the frontend builds one: widgets and inputs from its definition, no graph yet. */
export class FakeNode {
  static definition = { inputs: [], widgets: [] };

  constructor() {
    const { inputs, widgets } = this.constructor.definition;
    this.type = this.constructor.type;
    this.comfyClass = this.constructor.type;
    this.graph = null;
    this.inputs = inputs.map((name) => ({ name, link: null }));
    this.widgets = widgets.map(([name, value]) => ({ name, value }));
    this.size = [200, 100];
    this.domWidgets = [];
  }

  addDOMWidget(name, type, element, options) {
    const widget = { name, type, element, options };
    this.domWidgets.push(widget);
    return widget;
  }

  setSize(size) { this.size = size; }
  setDirtyCanvas() { this.graph?.dirty.push(this.id); }

  getInputNode(slot) {  // as LGraphNode.getInputNode in frontend 1.58
    if (slot >= this.inputs.length || !this.inputs[slot]) return null;
    if (!this.graph) throw new NullGraphError();
    const link = this.graph.links.get(this.inputs[slot].link);
    return link ? this.graph.getNodeById(link.origin) : null;
  }

  serialize() {
    return { id: this.id, type: this.type, inputs: structuredClone(this.inputs), widgets_values: this.widgets.map((w) => w.value) };
  }

  configure(data) {
    this.id = data.id;
    if (data.inputs) this.inputs = structuredClone(data.inputs);
    data.widgets_values?.forEach((value, index) => { if (this.widgets[index]) this.widgets[index].value = value; });
    this.onConfigure?.(data);
  }

  /** A copy made as LGraphNode.clone does: created, then configured without links and without a graph. */
  clone() {
    const data = this.serialize();
    for (const input of data.inputs) input.link = null;
    const copy = frontend.createNode(this.type);
    copy.configure(data);
    return copy;
  }
}

export class FakeGraph {
  constructor() { this.nodes = []; this.links = new Map(); this.dirty = []; this.lastId = 0; }

  add(node) {
    node.id ??= ++this.lastId;
    node.graph = this;
    this.nodes.push(node);
    node.onAdded?.(this);
    return node;
  }

  remove(node) {  // as LGraph.remove: links go, then onRemoved, then the graph reference
    for (const input of node.inputs) { this.links.delete(input.link); input.link = null; }
    this.nodes.splice(this.nodes.indexOf(node), 1);
    node.onRemoved?.();
    node.graph = null;
  }

  connect(origin, target, inputName) {
    const input = target.inputs.find((i) => i.name === inputName);
    input.link = this.links.size + 1;
    this.links.set(input.link, { origin: origin.id });
  }

  getNodeById(id) { return this.nodes.find((node) => node.id === id) ?? null; }
}

const extensions = [];
const nodeTypes = new Map();

export const frontend = {
  app: { registerExtension: (extension) => extensions.push(extension) },
  api: { apiURL: (route) => `/api${route}` },

  /** Register a node type with the pack's extensions (as the app does for each definition). */
  async defineNode(type, definition) {
    const nodeType = class extends FakeNode {};
    nodeType.type = type;
    nodeType.definition = definition;
    const nodeData = { name: type, output: definition.outputs ?? [] };
    for (const extension of extensions) await extension.beforeRegisterNodeDef?.(nodeType, nodeData);
    nodeTypes.set(type, nodeType);
    return nodeType;
  },

  /** A new node of `type`, created as LiteGraph.createNode does: no graph, then onNodeCreated. */
  createNode(type) {
    const node = new (nodeTypes.get(type))();
    node.onNodeCreated?.();
    for (const extension of extensions) extension.nodeCreated?.(node);
    return node;
  },
};

/** Install the stand-ins, load every module of web/ as ComfyUI serves it; returns the exports by file. */
export async function loadPack() {
  installBrowser();
  globalThis.fakeFrontend = frontend;
  const root = mkdtempSync(join(tmpdir(), "readout-web-"));
  process.on("exit", () => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, "scripts"));
  writeFileSync(join(root, "scripts", "app.js"), "export const app = globalThis.fakeFrontend.app;\n");
  writeFileSync(join(root, "scripts", "api.js"), "export const api = globalThis.fakeFrontend.api;\n");
  const pack = join(root, "extensions", "readout");
  mkdirSync(pack, { recursive: true });
  const modules = {};
  const files = readdirSync(WEB_DIR).filter((name) => name.endsWith(".js"));
  for (const name of files) copyFileSync(join(WEB_DIR, name), join(pack, name));
  for (const name of files) modules[name] = await import(pathToFileURL(join(pack, name)).href);
  return modules;
}
