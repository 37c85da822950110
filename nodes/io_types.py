"""Custom socket types the pack's nodes pass between each other."""

from comfy_api.latest import io

ReadoutHeadType = io.Custom("READOUT_HEAD")
"""A loaded `readout_core.ReadoutHead` (its ``.info`` says kind, family and control)."""

GuidanceTermsType = io.Custom("READOUT_GUIDANCE_TERMS")
"""A list of guidance terms (`readout_core.guidance.AnyTerm`: head + target + weight), chained node to node."""

DragPointsType = io.Custom("READOUT_DRAG_POINTS")
"""`readout_core.drag_points.DragPoints`: handle → target pairs on the image to edit."""

PoseKeypointType = io.Custom("POSE_KEYPOINT")
"""comfyui_controlnet_aux's pose type: a list, one per image, of OpenPose dicts (see `readout_core.pose.keypoints`)."""
