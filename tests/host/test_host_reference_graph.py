"""Reference edits carry a graph through the edit rows only.

In a ``[reference, edits...]`` batch no loss reaches the reference's input, so its rows
run without autograd (once per evaluation) and only the edit rows are recorded. These
tests compare that split with the whole batch run with one graph (as before the split):
the results must agree, and the U-Net must really have run fewer rows, fewer with a graph.

The U-Net runs in float64 here. With random ReLU heads the guidance gradient of some steps
is ill-conditioned: in float32 a 1e-6 relative change of the latent already moves a row's
output by up to 1e-3, and regrouping the batch changes float32 results by about that much;
in float64 the two paths agree to far below the 1e-5 this asserts (but for a rare rounding
in the float32 heads: `assert_paths_agree`).
"""

from __future__ import annotations

import pytest
import torch

from host_support import require_host

HOST = require_host()

from test_host_reference import drag_terms, reference_sampler  # noqa: E402
from tiny_host import conds, make_gaussian_denoiser, random_head, run_node, tiny_host_model  # noqa: E402

from readout_core.host_adapter import HostGuidance, host_decoder_layout  # noqa: E402

STEPS, STEPS_GUIDED = 20, 10  # DDIM, end_percent 0.5
RULE_WEIGHTS = {"official": 0.3, "gradient": 3.0}


@pytest.fixture(scope="module")
def world(pack):
    """The reference tests' world (a tiny SD1.5-layout denoiser, random heads) with a float64 U-Net."""
    model = tiny_host_model("sd15", seed=0, dtype=torch.float64)
    make_gaussian_denoiser(model, unet_share=0.1)
    layout = host_decoder_layout(model.model.diffusion_model)
    positive, negative = conds("sd15")
    return {"pack": pack, "model": model, "positive": positive, "negative": negative,
            "correspondence": random_head(layout, "correspondence", 1), "appearance": random_head(layout, "appearance", 2)}


def process_inputs(world, process: str) -> tuple[dict, list]:
    """Drag from the reference's noise with per-sample CFG (1.0 / 3.5, as for a real image), or
    two appearance variations from new noise sharing one reference (CFG 3 on both)."""
    if process == "drag":
        return dict(cfg=3.5, reference_cfg=1.0), drag_terms(world, "[[[40, 48], [88, 48]]]")
    with torch.inference_mode():
        (terms,) = run_node(world["pack"]["ReadoutGuidance_AppearanceReference"], head=world["appearance"], weight=1.0)
    return dict(cfg=3.0, reference_cfg=3.0, edit_start="new noise (variations)", variations=2, variation_seed=3), terms


class UNetRows:
    """Counts the rows the U-Net runs, with and without autograd (a pre-hook on its first layer)."""

    def __init__(self, world) -> None:
        self.graph = self.plain = 0
        self.graph_calls: list[int] = []  # rows of each call with autograd
        first = world["model"].model.diffusion_model.input_blocks[0][0]  # the first convolution
        self._handle = first.register_forward_pre_hook(self._count)

    def _count(self, _module, inputs) -> None:
        if torch.is_grad_enabled():
            self.graph += inputs[0].shape[0]
            self.graph_calls.append(inputs[0].shape[0])
        else:
            self.plain += inputs[0].shape[0]

    def close(self) -> None:
        self._handle.remove()


class LockStep:
    """At every guided evaluation, runs the update rule on the whole batch with one graph (as
    before the split) from a copy of the sampler's latent, then the edit-only path on the latent
    itself, and keeps both results: (moved latents, outputs) of each evaluation."""

    def __init__(self, monkeypatch) -> None:
        self.evaluations: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for name in ("_official_step", "_gradient_step"):
            monkeypatch.setattr(HostGuidance, name, self._wrap(getattr(HostGuidance, name)))

    def _wrap(self, step):
        def both(guidance, executor, x, sigma, model_options, seed, model):
            start, whole_x = x.clone(), x.clone()
            guidance._row_plan = lambda chunks, rows: None  # the whole batch, one graph
            try:
                whole = step(guidance, executor, whole_x, sigma, model_options, seed, model)
            finally:
                del guidance._row_plan
            out = step(guidance, executor, x, sigma, model_options, seed, model)
            self.evaluations.append((start, x.clone(), whole_x, out, whole))
            return out

        return both


def sample(world, process, rule, monkeypatch, **overrides):
    """(edited, U-Net row counts, graph rows HostGuidance counted) of one reference run."""
    guidance = []
    install = HostGuidance.install
    monkeypatch.setattr(HostGuidance, "install", lambda self, patcher: guidance.append(self) or install(self, patcher))
    inputs, terms = process_inputs(world, process)
    rows = UNetRows(world)
    try:
        edited, _reference = reference_sampler(world, {"samples": torch.zeros(1, 4, 16, 16)}, terms, update_rule=rule,
                                               **{**inputs, "guidance_weight": RULE_WEIGHTS[rule], **overrides})
    finally:
        rows.close()
    return edited["samples"], rows, guidance[0].graph_rows


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def assert_paths_agree(lock: LockStep) -> tuple[float, float]:
    """Every evaluation's moved latent and output agree to 1e-5 relative, but for at most one
    below 1e-3: the float64 paths differ by about 1e-16, and now and then that rounds a
    feature to the other float32 neighbour inside the float32 head, on the other side of a
    ReLU kink (seen once in ten evaluations on one thread). Returns the worst of each."""
    for name, values in (("moved latent", [relative(x, whole_x) for _, x, whole_x, _, _ in lock.evaluations]),
                         ("output", [relative(out, whole) for *_, out, whole in lock.evaluations])):
        ordered = sorted(values)
        assert ordered[-2] < 1e-5 and ordered[-1] < 1e-3, f"{name}: edit-only vs whole batch {ordered}"
    return (max(relative(x, whole_x) for _, x, whole_x, _, _ in lock.evaluations),
            max(relative(out, whole) for *_, out, whole in lock.evaluations))


@pytest.mark.parametrize("rule", ["official", "gradient"])
@pytest.mark.parametrize("process", ["drag", "variations"])
def test_edit_only_graph_gives_the_whole_batch_result(world, monkeypatch, process, rule):
    """Evaluation by evaluation (a run amplifies float noise: official steps are sign steps)."""
    lock = LockStep(monkeypatch)
    _, rows, graph_rows = sample(world, process, rule, monkeypatch)
    assert len(lock.evaluations) == STEPS_GUIDED
    moved = max(relative(x, start) for start, x, *_ in lock.evaluations)
    latents, outputs = assert_paths_agree(lock)
    print(f"{process} {rule}: edit-only vs whole-batch graph, worst evaluation: moved latent {latents:.1e}, "
          f"output {outputs:.1e} relative; U-Net rows with a graph {rows.graph}, without {rows.plain}")
    if rule == "official":
        assert moved > 1e-3
    else:
        monkeypatch.undo()
        unguided, _, _ = sample(world, process, rule, monkeypatch, guidance_weight=0.0)
        guided, _, _ = sample(world, process, rule, monkeypatch)
        assert relative(guided, unguided) > 1e-3
    edits = 1 if process == "drag" else 2
    passes = 3 if rule == "official" else 1  # recurrent_steps 3 under the official rule
    branches = 2 if rule == "official" else 1  # the gradient rule differentiates the unconditional branch only
    assert graph_rows == STEPS_GUIDED * passes * branches * edits
    assert rows.graph == graph_rows + STEPS_GUIDED * passes * 2 * (1 + edits)  # + the whole-batch passes
    # Without a graph: the unguided steps' CFG batch; per guided evaluation, the whole-batch final pass
    # (official), and in the split the reference once per CFG chunk (the recurrent passes and the final
    # pass reuse it) and the rows no loss differentiates: the official final pass over the edits, or the
    # gradient rule's conditional edits.
    per_evaluation = 2 * (1 + edits) + 2 + 2 * edits if rule == "official" else 2 + edits
    assert rows.plain == 2 * (1 + edits) * (STEPS - STEPS_GUIDED) + STEPS_GUIDED * per_evaluation


@pytest.mark.parametrize("rule", ["official", "gradient"])
def test_edit_only_graph_keeps_working_with_checkpointing(world, monkeypatch, rule):
    """Checkpointed, every graph row runs as its own call (so the backward holds one row's
    recomputed activations at a time), and each evaluation gives the whole batch's result."""
    import torch.utils.checkpoint as torch_checkpoint

    _, plain_rows, _ = sample(world, "variations", rule, monkeypatch)
    calls = []
    original = torch_checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch_checkpoint, "checkpoint", counting)
    lock = LockStep(monkeypatch)
    _, rows, graph_rows = sample(world, "variations", rule, monkeypatch, gradient_checkpointing=True)
    assert calls, "no layer was checkpointed"
    assert len(lock.evaluations) == STEPS_GUIDED
    assert_paths_agree(lock)
    passes, branches = (3, 2) if rule == "official" else (1, 1)
    assert graph_rows == STEPS_GUIDED * passes * branches * 2
    assert max(plain_rows.graph_calls) == 2 * branches  # not checkpointed: a pass's edit rows in one call
    assert rows.graph_calls.count(1) == graph_rows  # checkpointed: one row per call
    assert set(rows.graph_calls) == {1, 2 * 3}  # 6: the lock-step's whole-batch pass
