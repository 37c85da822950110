// Readout Reference Sampler presets: choosing one fills the node's widgets; every value stays editable.
import { app } from "../../scripts/app.js";
import { contained, inGraph, runAfter } from "./node_lifecycle.js";

const NODE_ID = "ReadoutGuidance_ReferenceSampler";
let presetsPromise = null;

function loadPresets() {
  presetsPromise ??= fetch("/readout_guidance/presets")
    .then((response) => (response.ok ? response.json() : {}))
    .catch(() => ({}));
  return presetsPromise;
}

/** Set the widgets named in `values` on `node`; returns the names that were set. */
export function applyPreset(node, values) {
  const applied = [];
  for (const [name, value] of Object.entries(values ?? {})) {
    const widget = node.widgets?.find((w) => w.name === name);
    if (!widget) continue;
    widget.value = value;
    widget.callback?.(value);
    applied.push(name);
  }
  node.setDirtyCanvas?.(true, true);
  return applied;
}

app.registerExtension({
  name: "readout_guidance.presets",
  nodeCreated(node) {
    if (node.comfyClass !== NODE_ID) return;
    const preset = node.widgets?.find((w) => w.name === "preset");
    if (!preset) return;
    runAfter(preset, "callback", (value) => loadPresets().then((presets) => contained(() => {
      // The list arrives later: the node may have been removed (or never added) meanwhile.
      if (presets[value] && inGraph(node)) applyPreset(node, presets[value]);
    })));
  },
});
