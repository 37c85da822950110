// Safe ground for the pack's browser code on a node in any state of its life. The frontend runs
// our hooks on nodes that have no graph: a clone being configured (copy, paste, duplicate,
// converting into a subgraph and back), a node being created, and a node already removed.
// getInputNode throws NullGraphError on such a node: always from frontend 1.53.6 on, and before
// that when the node still holds links (converting into a subgraph configures such nodes). So
// every look at the graph around a node goes through `upstreamNode`, and every call from the
// frontend into the pack goes through `runAfter` or `contained`, which keep our errors out of it.

const WARNING = "Readout Guidance: an update of the canvas or the presets was skipped (the node's values still work).";

/** Run `action`; an error in it is reported as a console warning instead of reaching the caller. */
export function contained(action) {
  try {
    return action();
  } catch (error) {
    console.warn(WARNING, error);
    return undefined;
  }
}

/**
 * Wrap `owner[method]` (a node prototype's hook, a widget's callback) so that `after(...args)`
 * runs, contained, after the original; the original's result and errors pass through unchanged.
 */
export function runAfter(owner, method, after) {
  const original = owner[method];
  owner[method] = function (...args) {
    const result = original?.apply(this, args);
    contained(() => after.call(this, ...args));
    return result;
  };
}

/** Whether `node` is in a graph now (false while it is cloned, configured before adding, or removed). */
export function inGraph(node) {
  return Boolean(node?.graph);
}

/** The node feeding `node`'s input `inputName`, or null: no graph, no such input or no link. */
export function upstreamNode(node, inputName) {
  if (!inGraph(node)) return null;
  const slot = node.inputs?.findIndex((input) => input.name === inputName) ?? -1;
  if (slot < 0) return null;
  return node.getInputNode?.(slot) ?? null;  // null when nothing is connected
}

/**
 * The loaded picture that the node feeding `node`'s input `inputName` shows (a Load Image
 * preview), or null: no graph, no such input, no link, or nothing loaded yet.
 */
export function upstreamImage(node, inputName) {
  const source = upstreamNode(node, inputName);
  const image = source?.imgs?.[source.imageIndex ?? 0];
  return image?.complete && image.naturalWidth ? image : null;
}
