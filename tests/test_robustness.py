"""Property-based checks: random and malformed user inputs to the parsers and target
builders give the right result when they are valid and the pack's own clear error when
not, never another exception (each test states which inputs are valid)."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from readout_core import HeadInfo, ReadoutError
from readout_core.crop_boxes import box_from_mask, parse_box
from readout_core.targets import spatial_target_from_image

EXAMPLES = 200
"""Examples per property (the README's reliability section quotes these counts)."""

DEPTH = HeadInfo(kind="spatial", family="sd15", dims=(8, 8), projection_dim=32, emb_dim=8, output_channels=3,
                 num_groups=8, control_type="depth", control_range=(-1.0, 1.0))
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8, torch.int64, torch.bool]


@settings(max_examples=EXAMPLES, deadline=None)
@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=5), dtype=st.sampled_from(DTYPES),
       fill=st.sampled_from([0.0, 0.5, 1.0, 3.0, -2.0, float("nan"), float("inf")]))
def test_spatial_target_from_any_tensor(shape, dtype, fill):
    image = torch.full(shape, fill).to(dtype) if dtype.is_floating_point else torch.zeros(shape, dtype=dtype)
    usable = (len(shape) == 4 and shape[0] >= 1 and shape[-1] in (1, 3, 4) and dtype.is_floating_point
              and (image.numel() == 0 or math.isfinite(float(image.flatten()[0]))))
    if not usable:
        with pytest.raises(ReadoutError):
            spatial_target_from_image(image, DEPTH)
        return
    target = spatial_target_from_image(image, DEPTH)
    assert target.shape == (shape[0], 3, shape[1], shape[2])
    assert bool(((target >= -1) & (target <= 1)).all())


def test_empty_batches_and_integer_images_are_refused_clearly():
    with pytest.raises(ReadoutError, match=r"IMAGE \[B, H, W, 3\]"):
        spatial_target_from_image(torch.zeros(0, 64, 64, 3), DEPTH)
    with pytest.raises(ReadoutError, match="float IMAGE"):
        spatial_target_from_image(torch.zeros(1, 64, 64, 3, dtype=torch.uint8), DEPTH)
    with pytest.raises(ReadoutError, match="NaN or infinite"):
        spatial_target_from_image(torch.full((1, 8, 8, 3), float("nan")), DEPTH)


@settings(max_examples=EXAMPLES, deadline=None)
@given(text=st.text(max_size=30) | st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6).map(
    lambda values: ", ".join(str(v) for v in values)))
def test_box_text(text):
    numbers = [p for p in re.split(r"[,\s]+", text.strip().strip("[]()")) if p]
    try:
        values = [float(n) for n in numbers]
    except ValueError:
        values = []
    valid = (len(values) == 4 and all(math.isfinite(v) for v in values)
             and 0 <= values[0] < values[2] and 0 <= values[1] < values[3])
    if not text.strip():
        assert parse_box(text) is None
    elif valid:
        assert parse_box(text) == tuple(values)
    else:
        with pytest.raises(ReadoutError, match="box"):
            parse_box(text)


@settings(max_examples=EXAMPLES, deadline=None)
@given(shape=st.lists(st.integers(0, 12), min_size=0, max_size=4), fill=st.floats(-1, 2))
def test_box_from_any_mask(shape, fill):
    mask = torch.full(shape, fill)
    plane = mask[0] if mask.ndim == 3 and shape[0] > 0 else mask
    if plane.ndim != 2 or plane.numel() == 0 or fill <= 0.5:
        with pytest.raises(ReadoutError, match="face mask"):
            box_from_mask(mask)
        return
    assert box_from_mask(mask) == (0.0, 0.0, float(plane.shape[1]), float(plane.shape[0]))  # a full mask
