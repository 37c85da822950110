"""The reference processes for the guidance benchmark: drag, real-image drag, variations.

Each runs the pack's Readout Reference Sampler path (`sample_with_reference`) on a
full-size host U-Net with random weights and heads of the published shapes:

- ``drag``: correspondence + appearance heads, batch ``[reference, edit]``, 4 drag pairs,
  CFG 7.5 on both;
- ``drag-real``: the same with per-sample CFG (reference 1.0, edit 3.5) from an inverted
  latent (a stand-in: random noise carrying an inversion record; a step's cost does not
  depend on the values);
- ``variations``: an appearance head, ``[reference, 4 variations]`` from new noise.

The unguided step is the same batch through the same path with guidance never active.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Iterator

import torch

from full_size_unets import host_conds, host_model
from measuring import DTYPES, Measurement, MemoryProbe, sync

MODES = ("drag", "drag-real", "variations")
EDIT_STEPS, EDIT_WINDOW = 50, 0.5
"""A whole edit as released: 50 DDIM steps, guidance over the first half of the schedule."""
DRAG_PAIRS = 4


def whole_edit_seconds(guided_step: float, unguided_step: float, guide_every: int = 1) -> float:
    """Extrapolated time of a whole edit: the guided steps of the window, the rest unguided."""
    window = round(EDIT_STEPS * EDIT_WINDOW)
    guided = -(-window // guide_every)
    return guided * guided_step + (EDIT_STEPS - guided) * unguided_step


def published_shape_head(kind: str, layout, device: torch.device):
    """A head of ``kind`` (appearance / correspondence) with the published architecture, random weights."""
    from readout_core import HeadInfo, ReadoutHead

    torch.manual_seed(0)
    info = HeadInfo(kind=kind, family=layout.family, dims=layout.dims, projection_dim=384, emb_dim=1280)
    return ReadoutHead(info).to(device).eval().requires_grad_(False)


class ReferenceBench:
    """Steps of the reference sampler for one mode, unguided and guided."""

    def __init__(self, args) -> None:
        import comfy.model_management  # noqa: F401  (the host picks its device on import)
        import comfy.utils

        comfy.utils.PROGRESS_BAR_ENABLED = False  # the table is the output

        from readout_core.host_adapter import host_decoder_layout

        self.args, self.device = args, torch.device(args.device)
        self.model = host_model(args.layout, self.device, DTYPES[args.dtype])
        layout = host_decoder_layout(self.model.model.diffusion_model)
        self.appearance = published_shape_head("appearance", layout, self.device)
        self.correspondence = published_shape_head("correspondence", layout, self.device)
        self.positive, self.negative = host_conds(args.layout, 1, args.latent * 8)
        self.edits = 4 if args.mode == "variations" else 1
        # drag-real: the released real-image drag's per-sample CFG; the others: --cfg on every row
        self.reference_cfg, self.edit_cfg = (1.0, 3.5) if args.mode == "drag-real" else (args.cfg, args.cfg)

    def cfg_label(self) -> str:
        """The CFG scales as the table's heading states them."""
        if self.reference_cfg == self.edit_cfg:
            return f"CFG {self.edit_cfg}"
        return f"CFG {self.reference_cfg} reference / {self.edit_cfg} edits"

    def batch_rows(self) -> int:
        """Rows of the sampled batch: the reference and its edits."""
        return 1 + self.edits

    def _terms(self) -> list:
        from readout_core.drag_points import DragPoints
        from readout_core.guidance import AppearanceTerm, CorrespondenceTerm

        if self.args.mode == "variations":
            return [AppearanceTerm(self.appearance)]
        size = self.args.latent * 8
        handles = torch.tensor([(size * (0.2 + 0.15 * i), size * 0.4) for i in range(DRAG_PAIRS)])
        points = DragPoints(handles=handles, targets=handles + torch.tensor([size / 8, 0.0]), image_size=(size, size))
        return [CorrespondenceTerm(self.correspondence, points), AppearanceTerm(self.appearance)]

    def _latent(self, steps: int) -> dict:
        latent = torch.zeros(1, 4, self.args.latent, self.args.latent)
        if self.args.mode != "drag-real":
            return {"samples": latent}
        import comfy.samplers

        from readout_core.host_adapter.inversion import INVERSION_KEY

        sigmas = comfy.samplers.calculate_sigmas(self.model.get_model_object("model_sampling"), "ddim_uniform",
                                                 steps).float().cpu()
        noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0)) * sigmas[0]
        record = {"sigmas": sigmas, "steps": steps, "scheduler": "ddim_uniform", "cfg": 1.0, "refine": 0,
                  "source": latent}
        return {"samples": noise, INVERSION_KEY: record}

    def run(self, rule: str | None, checkpointing: bool):
        from readout_core.guidance import GuidanceSettings, reference_layout
        from readout_core.host_adapter import reference_sampling
        from readout_core.host_adapter.guided_sampling import HostGuidance
        from readout_core.host_adapter.reference_sampling import ReferenceRun, sample_with_reference

        steps = self.args.warmup + self.args.repeats
        run = ReferenceRun(seed=0, steps=steps, cfg=self.edit_cfg, reference_cfg=self.reference_cfg, sampler_name="ddim",
                           scheduler="ddim_uniform", edits_from_reference=self.args.mode != "variations",
                           edits=self.edits)
        settings = GuidanceSettings(rule=rule or "official", weight=0.02, start_percent=0.0, end_percent=1.0,
                                    gradient_checkpointing=checkpointing, terms=self._terms(),
                                    reference_of=reference_layout(self.edits))
        stamps: list[float] = []

        def callback(*_args) -> None:
            sync(self.device)
            stamps.append(time.perf_counter())

        probe = MemoryProbe(self.device)
        with _patched(reference_sampling, "_preview_callback", lambda *_a: callback), \
                _patched(HostGuidance, "_active", (lambda *_a: False) if rule is None else HostGuidance._active):
            with torch.inference_mode(), probe.measure():
                sync(self.device)
                stamps.append(time.perf_counter())
                sample_with_reference(self.model, settings, run, self.positive, self.negative, self._latent(steps))
        durations = [b - a for a, b in zip(stamps, stamps[1:])][self.args.warmup:]
        return Measurement(statistics.median(durations), probe.peak)


@contextmanager
def _patched(owner, name: str, value) -> Iterator[None]:
    """``owner.name`` set to ``value`` inside the block (benchmark instrumentation only)."""
    previous = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, previous)
