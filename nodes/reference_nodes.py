"""Drag Points, Drag Guidance, Appearance Reference and Identity Reference: the guidance
terms that compare a generation with a reference sampled side by side."""

from __future__ import annotations

import logging

from comfy_api.latest import io, ui

from readout_core.crop_boxes import box_from_mask, parse_box
from readout_core.drag_points import PointsError, parse_drag_points, read_point_pairs
from readout_core.errors import ReadoutError
from readout_core.guidance import AppearanceTerm, CorrespondenceTerm
from readout_core.host_adapter import show_text_under_node

from .input_checks import parse_problem
from .io_types import DragPointsType, GuidanceTermsType, ReadoutHeadType
from .shared_inputs import earlier_terms_input

LOG = logging.getLogger("readout_guidance")
POINTS_EXAMPLE = '{"pairs": [{"handle": [180, 200], "target": [260, 200]}]}'


class DragPoints(io.ComfyNode):
    """The image to edit and the handle → target pairs drawn on it."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_DragPoints",
            display_name="Drag Points",
            category="Readout Guidance",
            description="Handle → target point pairs on the image to edit, in image pixels. Drag on the canvas, "
            "or give JSON (also KJNodes Points Editor output: points paired in order).",
            inputs=[
                io.Image.Input("image", tooltip="The image to edit (the generation, or the real image you invert)."),
                io.String.Input("points", multiline=True, default="",
                                tooltip="JSON handle → target pairs in image pixels, e.g. " + POINTS_EXAMPLE +
                                " or [[[hx, hy], [tx, ty]], ...] or KJNodes [{\"x\":..,\"y\":..}, ...] "
                                "(handle, target, handle, target, ...)."),
            ],
            outputs=[DragPointsType.Output(display_name="points", tooltip="The pairs, for Drag Guidance.")],
        )

    @classmethod
    def validate_inputs(cls, points: str | None = None, **_unused) -> bool | str:
        return parse_problem(read_point_pairs, points)

    @classmethod
    def execute(cls, image, points: str) -> io.NodeOutput:
        if image.ndim != 4 or image.shape[0] == 0:
            raise ReadoutError(f"Drag Points needs an IMAGE [B, H, W, C], got shape {tuple(image.shape)}.")
        if image.shape[0] > 1:
            LOG.warning("Drag Points: the image batch has %d images; the points belong to the first.", image.shape[0])
        height, width = int(image.shape[1]), int(image.shape[2])
        parsed = parse_drag_points(points, (width, height))
        if parsed.dropped:
            note = "Drag Points: left out " + "; ".join(parsed.dropped) + "."
            LOG.warning(note)
            show_text_under_node(note)
        if len(parsed) == 0:
            raise PointsError(f"All drag points are outside the {width}×{height} image; draw them on this image.")
        # The image goes to the canvas under its own key, so the node shows no extra preview.
        shown = ui.PreviewImage(image[:1], cls=cls).as_dict()["images"]
        return io.NodeOutput(parsed, ui={"drag_image": shown})


class DragGuidance(io.ComfyNode):
    """Appearance + correspondence guidance that drags the handle content to the targets."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_DragGuidance",
            display_name="Drag Guidance",
            category="Readout Guidance",
            description="Moves the content under each handle to its target while keeping the image's look "
            "(correspondence + appearance heads, as released). Sample with Readout Reference Sampler.",
            inputs=[
                ReadoutHeadType.Input("correspondence_head", tooltip="A correspondence head for this base model."),
                ReadoutHeadType.Input("appearance_head", tooltip="An appearance head for this base model."),
                DragPointsType.Input("points", tooltip="Handle → target pairs from Drag Points."),
                io.Float.Input("correspondence_weight", default=1.0, min=0.0, max=100.0, step=0.05,
                               tooltip="How strongly the content moves (released: 1)."),
                io.Float.Input("appearance_weight", default=1.0, min=0.0, max=100.0, step=0.05,
                               tooltip="How strongly the look is kept (released: 1)."),
                earlier_terms_input(),
            ],
            outputs=[GuidanceTermsType.Output(display_name="terms", tooltip="Guidance terms for the reference sampler.")],
        )

    @classmethod
    def execute(cls, correspondence_head, appearance_head, points, correspondence_weight: float,
                appearance_weight: float, terms=None) -> io.NodeOutput:
        new = [CorrespondenceTerm(head=correspondence_head, points=points, weight=correspondence_weight),
               AppearanceTerm(head=appearance_head, weight=appearance_weight)]
        return io.NodeOutput(list(terms or []) + new)


class AppearanceReference(io.ComfyNode):
    """Keep the reference's appearance in new generations."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_AppearanceReference",
            display_name="Appearance Reference",
            category="Readout Guidance",
            description="New samples keep the look of the reference (a generation, or a real image through Invert "
            "Image). Low weight shares colours and texture; high weight shares the object itself.",
            inputs=[
                ReadoutHeadType.Input("head", tooltip="An appearance head for this base model."),
                io.Float.Input("weight", default=1.0, min=0.0, max=100.0, step=0.05,
                               tooltip="0.2–0.5: shared colours and texture; 1–3: the same object (paper Fig. 6)."),
                earlier_terms_input(),
            ],
            outputs=[GuidanceTermsType.Output(display_name="terms", tooltip="Guidance terms for the reference sampler.")],
        )

    @classmethod
    def execute(cls, head, weight: float, terms=None) -> io.NodeOutput:
        return io.NodeOutput(list(terms or []) + [AppearanceTerm(head=head, weight=weight)])


class IdentityReference(io.ComfyNode):
    """Keep a person's identity: appearance guidance on the face crop."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ReadoutGuidance_IdentityReference",
            display_name="Identity Reference",
            category="Readout Guidance",
            description="New samples keep the reference person's identity. Uses an identity head (train one with "
            "the pack's trainer; the authors released none) or falls back to an appearance head. A face box or "
            "mask crops both feature maps to the face.",
            inputs=[
                ReadoutHeadType.Input("head", tooltip="An identity head (or an appearance head as a fallback)."),
                io.Float.Input("weight", default=1.0, min=0.0, max=100.0, step=0.05,
                               tooltip="How strongly the identity is kept."),
                io.String.Input("face_box", default="", optional=True,
                                tooltip="x0, y0, x1, y1 of the face in image pixels (empty: whole image). "
                                "Used for the reference and the new samples."),
                io.Mask.Input("face_mask", optional=True, tooltip="A mask of the face; its bounding box is used "
                              "instead of face_box."),
                earlier_terms_input(),
            ],
            outputs=[GuidanceTermsType.Output(display_name="terms", tooltip="Guidance terms for the reference sampler.")],
        )

    @classmethod
    def validate_inputs(cls, face_box: str | None = None, **_unused) -> bool | str:
        return parse_problem(parse_box, face_box)

    @classmethod
    def execute(cls, head, weight: float, face_box: str = "", face_mask=None, terms=None) -> io.NodeOutput:
        box = box_from_mask(face_mask) if face_mask is not None else parse_box(face_box)
        if head.info.kind == "appearance":
            note = ("Identity Reference: no identity head given, using the appearance head (keeps the look; "
                    "identity is kept less reliably). Train an identity head on face crops for best results.")
            LOG.warning(note)
            show_text_under_node(note)
        elif head.info.kind != "identity":
            raise ReadoutError(f"Identity Reference needs an identity or appearance head; this is a {head.info.kind} head.")
        term = AppearanceTerm(head=head, weight=weight, reference_box=box, generated_box=box)
        return io.NodeOutput(list(terms or []) + [term])
