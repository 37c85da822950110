"""Pose Keypoints (a body pose as the target of a keypoint head) and Readout Pose (a keypoint
head as a pose reader of latents)."""

from __future__ import annotations

from comfy_api.latest import io, ui

from readout_core.guidance import KeypointTerm
from readout_core.host_adapter import readout_of_latent, show_text_under_node
from readout_core.latent_scale import PIXELS_PER_LATENT
from readout_core.pose.drawing import draw_poses
from readout_core.pose.heatmaps import RELEASED_THRESHOLD, read_pose
from readout_core.pose.keypoints import (
    PoseKeypointError,
    load_json_text,
    pose_from_inputs,
    pose_keypoint_text,
    pose_keypoint_value,
)

from .input_checks import parse_problem
from .io_types import GuidanceTermsType, PoseKeypointType, ReadoutHeadType
from .shared_inputs import earlier_terms_input, readout_pass_inputs

POSE_TEXT_EXAMPLE = '{"people": [{"pose_keypoints_2d": [x, y, c, ...18 joints]}], "canvas_width": W, "canvas_height": H}'


class PoseKeypointsTarget(io.ComfyNode):
    """A body pose (POSE_KEYPOINT or OpenPose JSON) as a guidance term for a keypoint head."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_PoseKeypoints",
            display_name="Pose Keypoints",
            category="Readout Guidance",
            description="Makes a body pose the target of a pose keypoint head (readout_sdv15 / sdxl_pose_keypoint): "
            "the generation is steered so the head finds the joints there. Joints missing from the pose are left free. "
            "Edit the pose on the node's canvas: drag joints, hide or restore them (the edit goes into pose_text).",
            inputs=[
                ReadoutHeadType.Input("head", tooltip="A pose keypoint head (18 joints) from Load Readout Head."),
                io.Float.Input("weight", default=1.0, min=0.0, max=100.0, step=0.01,
                               tooltip="This term's share of the guidance loss (relative to the other terms)."),
                PoseKeypointType.Input("pose_keypoint", optional=True,
                                       tooltip="POSE_KEYPOINT from DWPose Estimator, OpenPose Pose or Readout Pose: "
                                       "one pose for all latents, or one per latent."),
                io.String.Input("pose_text", multiline=True, default="", optional=True,
                                tooltip="OpenPose JSON, e.g. " + POSE_TEXT_EXAMPLE + " (pixels or 0..1 fractions). "
                                "When not empty it is used instead of pose_keypoint (an edited pose; the canvas writes it)."),
                earlier_terms_input(),
                io.Image.Input("image", optional=True, tooltip="The image the pose belongs to, shown under the pose "
                               "canvas (not used for guidance)."),
            ],
            outputs=[GuidanceTermsType.Output(display_name="terms", tooltip="Guidance terms for Apply Readout Guidance, "
                                              "the Readout Guided KSampler or the Readout Reference Sampler.")],
        )

    @classmethod
    def validate_inputs(cls, pose_text: str | None = None, **_unused) -> bool | str:
        return parse_problem(_pose_text_problem, pose_text)

    @classmethod
    def execute(cls, head, weight: float, pose_keypoint=None, pose_text: str = "", terms=None,
                image=None) -> io.NodeOutput:
        poses = pose_from_inputs(pose_keypoint, pose_text)
        term = KeypointTerm(head=head, poses=tuple(poses), weight=weight)
        # For the pose canvas: the pose used (the input's, while pose_text is empty) and its image.
        shown = {"openpose_json": [pose_keypoint_text(poses)]}
        if image is not None and image.ndim == 4 and image.shape[0] > 0:
            shown["pose_image"] = ui.PreviewImage(image[:1], cls=cls).as_dict()["images"]
        return io.NodeOutput(list(terms or []) + [term], ui=shown)


class ReadoutPose(io.ComfyNode):
    """What pose a keypoint head reads from a latent: POSE_KEYPOINT and an OpenPose skeleton."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_ReadoutPose",
            display_name="Readout Pose",
            category="Readout Guidance",
            description="Reads the body pose of a latent with a pose keypoint head: POSE_KEYPOINT (as DWPose outputs "
            "it, pixels of the image) and the OpenPose skeleton. One person per image. The pose's JSON shows under "
            "the node: copy it into Pose Keypoints' pose_text to edit it.",
            inputs=[
                *readout_pass_inputs("A pose keypoint head (18 joints)."),
                io.Float.Input("threshold", default=RELEASED_THRESHOLD, min=0.0, max=1.0, step=0.01,
                               tooltip="A joint counts when its heatmap reaches this (released: 0.1)."),
                io.Float.Input("percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Noise level to read at, as a percent of the schedule (1.0 = clean; the "
                               "keypoint heads were trained on clean images)."),
            ],
            outputs=[
                PoseKeypointType.Output(display_name="pose_keypoint", tooltip="The pose, one entry per image."),
                io.Image.Output(display_name="skeleton", tooltip="The pose as an OpenPose skeleton, image-sized."),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, head, latent, conditioning, threshold: float, percent: float) -> io.NodeOutput:
        if head.info.kind != "keypoint":
            raise PoseKeypointError(f"Readout Pose needs a pose keypoint head; this is a {head.info.kind} head. "
                                    "Use Readout Preview to see what other heads read.")
        heatmaps = readout_of_latent(model, head, latent, conditioning, percent)
        size = (heatmaps.shape[-1] * PIXELS_PER_LATENT, heatmaps.shape[-2] * PIXELS_PER_LATENT)
        frames = read_pose(heatmaps, size, threshold)
        skeleton = draw_poses(frames)
        text = pose_keypoint_text(frames)
        show_text_under_node(text)
        shown = {**ui.PreviewImage(skeleton, cls=cls).as_dict(), "openpose_json": [text]}  # as DWPose shows its pose
        return io.NodeOutput(pose_keypoint_value(frames), skeleton, ui=shown)


def _pose_text_problem(pose_text: str) -> None:
    """Empty text means the upstream POSE_KEYPOINT is used (checked when the node runs)."""
    if pose_text.strip():
        load_json_text(pose_text, "pose_text")
