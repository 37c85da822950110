"""Custom socket types the pack's nodes pass between each other."""

from comfy_api.latest import io

ReadoutHeadType = io.Custom("READOUT_HEAD")
"""A loaded `readout_core.ReadoutHead` (its ``.info`` says kind, family and control)."""

GuidanceTermsType = io.Custom("READOUT_GUIDANCE_TERMS")
"""A list of `readout_core.guidance.GuidanceTerm` (head + target + weight), chained node to node."""

DragPointsType = io.Custom("READOUT_DRAG_POINTS")
"""`readout_core.drag_points.DragPoints`: handle → target pairs on the image to edit."""
