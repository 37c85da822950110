"""The released presets: the sampler settings the authors published for drag editing and variations."""

from __future__ import annotations

from pack_modules import node_module

presets = node_module("presets")
CUSTOM, EDIT_STARTS, PRESET_NAMES, PRESETS = presets.CUSTOM, presets.EDIT_STARTS, presets.PRESET_NAMES, presets.PRESETS


def test_released_drag_presets():
    generated = PRESETS["drag: generated image (SDXL)"]
    real = PRESETS["drag: real image (SD1.5)"]
    for preset in (generated, real):
        assert preset["steps"] == 100 and preset["guidance_weight"] == 0.02
        assert (preset["start_percent"], preset["end_percent"]) == (0.0, 0.5)
        assert preset["update_rule"] == "official" and preset["edit_start"] == EDIT_STARTS[0]
        assert (preset["sampler_name"], preset["scheduler"]) == ("ddim", "ddim_uniform")  # DDIM, η = 0, leading
    assert (generated["cfg"], generated["reference_cfg"]) == (7.5, 7.5)
    assert (real["cfg"], real["reference_cfg"]) == (3.5, 1.0)


def test_presets_are_offered_after_custom():
    assert PRESET_NAMES[0] == CUSTOM and set(PRESET_NAMES[1:]) == set(PRESETS)
    assert PRESETS["appearance variations"]["edit_start"] == EDIT_STARTS[1]
