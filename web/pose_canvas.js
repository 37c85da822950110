// The Pose Keypoints canvas: the body pose as an OpenPose skeleton over its image; drag a joint
// to move it, select one (click it, or pick it in the list) and press Delete or "Hide / restore"
// to leave it out of the target or bring it back; Ctrl+Z undoes; "Use input" drops the edits.
// With pose_text empty the canvas shows the input pose: the last pose the node feeding
// pose_keypoint showed (DWPose Estimator, OpenPose Pose, Readout Pose), else the one this node
// last ran with. The first edit copies it into pose_text (OpenPose JSON, image pixels), which is
// what the workflow stores and what the node then uses; without the canvas that text still works.
import { app } from "../../scripts/app.js";
import { imageToCanvas } from "./drag_points_model.js";
import { ImageCanvas, attachCanvas } from "./image_canvas.js";
import { runAfter, upstreamNode } from "./node_lifecycle.js";
import { COLOURS, JOINT_NAMES, LIMBS, PoseHistory, hasPlace, hitJoint, isPresent, readPose, writePose } from "./pose_model.js";

const NODE_ID = "ReadoutGuidance_PoseKeypoints";
const POSE_OUTPUT = "POSE_KEYPOINT";
const HIT_RADIUS_PX = 10;
const CANVAS_MIN_HEIGHT = 300;
const LIMB_SHADE = 0.6;  // OpenPose draws limbs at 60 % of their colour

const rgb = ([r, g, b], shade = 1) => `rgb(${Math.round(r * shade)}, ${Math.round(g * shade)}, ${Math.round(b * shade)})`;

class PoseCanvas extends ImageCanvas {
  constructor(node, textWidget) {
    super(node, textWidget, {
      testId: "readout-pose-canvas",
      keysLabel: "Pose keyboard: Delete hides or restores the selected joint, Ctrl+Z undoes",
      placeholder: () => (this.current() ? "" : "Queue once (or connect a pose) to see the pose"),
    });
    this.history = new PoseHistory();
    this.textError = null;
    this.written = null;  // the text this canvas wrote last
    this.lastRun = null;  // the pose JSON of this node's last run
    this.source = { text: null, pose: null };  // the input pose, read once per text
    this.drawnSource = null;
    this.selected = null;  // { person, joint }
    this.jointList = document.createElement("select");
    this.jointList.title = "The joint to hide or restore (or click a joint on the canvas)";
    this.jointList.setAttribute("aria-label", "Joint");
    this.jointList.style.maxWidth = "9em";
    this.listen(this.jointList, "change", () => {
      this.pick(this.jointList.value);
      this.keys.focus({ preventScroll: true });
    });
    this.bar.append(this.jointList);
    this.toggleButton = this.addButton("Hide / restore", "Leave the selected joint out of the target, or bring it back (Delete)",
      () => this.toggleSelected());
    this.addButton("Use input", "Drop the edits: use the pose from pose_keypoint or the last run (Ctrl+Z brings them back)", () => {
      if (this.history.useInput()) this.commit();
    });
    this.reload();
  }

  // -- state in and out ---------------------------------------------------------------------

  /** Re-read pose_text (workflow load, paste, graph undo, typing in the text box). */
  reload() {
    const text = this.textWidget.value ?? "";
    if (text === this.written) return;
    this.written = null;
    const { pose, error } = text.trim() ? readPose(text) : { pose: null };
    this.history.reset(pose);
    this.textError = pose || !text.trim() ? null : error;
    this.selected = null;
    this.refreshList();
    this.draw();
  }

  commit() {
    const text = this.history.pose ? writePose(this.history.pose) : "";
    this.written = text;
    this.textError = null;
    this.refreshList();
    this.store(text);
  }

  /** The input pose: the last one the node feeding pose_keypoint showed, else this node's last run. */
  inputPose() {
    const text = upstreamNode(this.node, "pose_keypoint")?.readoutPoseJson ?? this.lastRun;
    if (text !== this.source.text) this.source = { text, pose: text ? readPose(text).pose : null };
    return this.source.pose;
  }

  /** The pose shown and edited: pose_text's, or the input pose while pose_text is empty. */
  current() {
    if (this.history.pose) return this.history.pose;
    return (this.textWidget.value ?? "").trim() ? null : this.inputPose();
  }

  /** This node ran: the pose it used (pose_text's or its input's). */
  executed(message) {
    const text = message?.openpose_json?.[0];
    if (typeof text !== "string") return;
    this.lastRun = text;
    this.refreshList();
    this.draw();
  }

  upstreamChanged() {
    return super.upstreamChanged() || (upstreamNode(this.node, "pose_keypoint")?.readoutPoseJson ?? this.lastRun) !== this.drawnSource;
  }

  size() {
    const pose = this.current();
    return pose ? [pose.width, pose.height] : super.size();
  }

  // -- selection ----------------------------------------------------------------------------

  /** The joint list: every joint of every person of the shown pose, hidden ones marked. */
  refreshList() {
    const pose = this.current();
    const options = [];
    pose?.people.forEach((joints, person) => joints.forEach((joint, index) => {
      const option = document.createElement("option");
      option.value = `${person}:${index}`;
      const who = pose.people.length > 1 ? ` (person ${person + 1})` : "";
      option.textContent = `${JOINT_NAMES[index]}${who}${isPresent(joint) ? "" : " · hidden"}`;
      options.push(option);
    }));
    this.jointList.replaceChildren(...options);
    this.jointList.value = this.selected ? `${this.selected.person}:${this.selected.joint}` : (options[0]?.value ?? "");
  }

  pick(value) {
    const [person, joint] = String(value).split(":").map(Number);
    if (!this.current()?.people[person]?.[joint]) return;
    this.selected = { person, joint };
    this.draw();
  }

  toggleSelected() {
    if (!this.selected && this.jointList.value) this.pick(this.jointList.value);
    const pose = this.current();
    if (!this.selected || !pose) return;
    if (this.history.toggle(this.selected.person, this.selected.joint, pose)) this.commit();
  }

  // -- input --------------------------------------------------------------------------------

  onDown(event) {
    const point = this.toImage(event);
    const pose = this.current();
    if (!point || !pose) return;
    // No preventDefault: the mouseup that follows lets the frontend record the change for graph undo.
    event.stopPropagation();
    this.canvas.setPointerCapture?.(event.pointerId);
    const hit = hitJoint(pose.people, point, HIT_RADIUS_PX / (this.rect().scale || 1));
    this.selected = hit;
    if (hit) {
      this.history.begin(pose);
      this.gesture = hit;
    }
    this.refreshList();
    this.draw();
  }

  dragTo(point) {
    this.history.move(this.gesture.person, this.gesture.joint, point);
  }

  onUp(event) {
    const gesture = this.gesture;
    this.gesture = null;
    if (!gesture) return;
    event.stopPropagation();
    if (this.history.settle()) this.commit();
  }

  hasSelection() {
    return Boolean(this.selected);
  }

  removeSelected() {
    this.toggleSelected();
  }

  undo() {
    if (this.history.undo()) this.commit();
  }

  // -- drawing ------------------------------------------------------------------------------

  drawMarks(ctx, rect) {
    const pose = this.current();
    this.drawnSource = upstreamNode(this.node, "pose_keypoint")?.readoutPoseJson ?? this.lastRun;
    if (!pose) return;
    const at = (joint) => imageToCanvas(rect, joint[0], joint[1]);
    const stick = Math.max(2, 4 * rect.scale * Math.max(pose.width, pose.height) / 512);
    for (const joints of pose.people) {
      LIMBS.forEach(([a, b], limb) => {
        if (!isPresent(joints[a]) || !isPresent(joints[b])) return;
        ctx.strokeStyle = rgb(COLOURS[limb], LIMB_SHADE);
        ctx.lineWidth = stick;
        ctx.beginPath();
        ctx.moveTo(...at(joints[a]));
        ctx.lineTo(...at(joints[b]));
        ctx.stroke();
      });
    }
    pose.people.forEach((joints, person) => joints.forEach((joint, index) => {
      if (!hasPlace(joint)) return;
      const [x, y] = at(joint);
      const selected = this.selected?.person === person && this.selected?.joint === index;
      const present = isPresent(joint);
      ctx.beginPath();
      ctx.arc(x, y, (selected ? 7 : 5) + (present ? 0 : 1), 0, 2 * Math.PI);
      ctx.globalAlpha = present ? 1 : 0.35;  // a hidden joint: faint, in a dashed ring
      ctx.fillStyle = rgb(COLOURS[index]);
      ctx.fill();
      ctx.globalAlpha = 1;
      ctx.setLineDash?.(present ? [] : [3, 2]);
      ctx.strokeStyle = selected || !present ? "#fff" : "#000";
      ctx.lineWidth = selected || !present ? 2 : 1;
      ctx.stroke();
      ctx.setLineDash?.([]);
    }));
  }

  summary() {
    if (this.textError) return `pose_text: ${this.textError} (the node says what to change)`;
    const pose = this.current();
    if (!pose) return "no pose yet";
    const present = pose.people.reduce((sum, joints) => sum + joints.filter(isPresent).length, 0);
    const people = pose.people.length;
    const from = this.history.pose ? "edited" : "input pose";
    const picked = this.selected ? ` · ${JOINT_NAMES[this.selected.joint]}` : "";
    return `${people} ${people === 1 ? "person" : "people"} · ${present} joints · ${from}${picked}`;
  }
}

app.registerExtension({
  name: "readout_guidance.pose_canvas",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if ((nodeData?.output ?? []).includes(POSE_OUTPUT)) {
      // Any node giving POSE_KEYPOINT: keep the pose JSON its run showed, for the canvas downstream.
      runAfter(nodeType.prototype, "onExecuted", function (message) {
        const text = message?.openpose_json?.[0];
        if (typeof text === "string") this.readoutPoseJson = text;
      });
    }
    if (nodeData?.name !== NODE_ID) return;
    attachCanvas(nodeType, {
      textName: "pose_text",
      widgetName: "pose_canvas",
      property: "readoutPoseCanvas",
      imageKey: "pose_image",
      minHeight: CANVAS_MIN_HEIGHT,
      make: (node, widget) => new PoseCanvas(node, widget),
      onExecuted: (canvas, message) => canvas.executed(message),
    });
  },
});
