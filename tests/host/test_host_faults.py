"""Faults during guided sampling and isolation between prompts.

Each fault (an exception in the U-Net, a simulated out-of-memory error in the head, an
interrupt) must leave the shared model exactly as it was, keep no autograd state alive,
and let the next prompt give the same result as on a fresh model. Two guided prompts in
a row, and a guided prompt followed by an unguided one, must not leak into each other.
"""

from __future__ import annotations

import gc
import warnings

import pytest
import torch

from host_support import require_host

HOST = require_host()

import comfy.model_management  # noqa: E402
import comfy.patcher_extension  # noqa: E402
import comfy.sample  # noqa: E402
from tiny_host import conds, run_node, tiny_host_model, tiny_spatial_head  # noqa: E402

from readout_core.guidance import GuidanceSettings, GuidanceTerm  # noqa: E402
from readout_core.host_adapter import HostGuidance  # noqa: E402
from readout_core.host_adapter.guided_sampling import OUT_OF_MEMORY_ADVICE  # noqa: E402

FAULT_PATHS = ("unet_exception", "head_out_of_memory", "interrupt", "loss_exception")
"""The fault paths exercised (the README's reliability section counts them)."""


def sample(model, positive, negative, seed=0):
    latent = torch.zeros(1, 4, 16, 16)
    with torch.inference_mode():
        return comfy.sample.sample(model, comfy.sample.prepare_noise(latent, seed), 6, 3.0, "euler", "normal",
                                   positive, negative, latent, seed=seed, disable_pbar=True)


def guided(model, head, target):
    clone = model.clone()
    HostGuidance(GuidanceSettings(rule="official", weight=0.05, end_percent=1.0,
                                  terms=[GuidanceTerm(head=head, target=target, weight=0.5)])).install(clone)
    return clone


def grad_tensors() -> int:
    """Live tensors that belong to an autograd graph."""
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance() on some deprecated torch objects warns
        return sum(1 for obj in gc.get_objects()
                   if isinstance(obj, torch.Tensor) and (obj.requires_grad or obj.grad_fn is not None))


class _FailingHead(torch.nn.Module):
    """Wraps a head; raises ``error`` on the ``fail_at``-th call."""

    def __init__(self, head, error: BaseException, fail_at: int = 2):
        super().__init__()
        self.inner, self.info, self.error, self.fail_at, self.calls = head, head.info, error, fail_at, 0

    def forward(self, features, emb=None):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error
        return self.inner(features, emb)


def _fault(path: str, model, head, target):
    """A guided model that fails along ``path``; returns (model, expected exception type, message)."""
    if path == "head_out_of_memory":
        failing = _FailingHead(head, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
        return guided(model, failing, target), torch.OutOfMemoryError, "gradient_checkpointing"
    if path == "loss_exception":
        failing = _FailingHead(head, RuntimeError("head exploded"))
        return guided(model, failing, target), RuntimeError, "head exploded"
    clone = guided(model, head, target)
    if path == "unet_exception":
        calls = []

        def fail_third(executor, *args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("U-Net failed mid-step")
            return executor(*args, **kwargs)

        clone.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_fail", fail_third)
        return clone, RuntimeError, "U-Net failed mid-step"
    return clone, comfy.model_management.InterruptProcessingException, None


@pytest.mark.parametrize("path", FAULT_PATHS)
def test_a_fault_during_a_guided_step_leaves_the_model_as_it_was(path):
    used, fresh = tiny_host_model("sd15", seed=3), tiny_host_model("sd15", seed=3)
    positive, negative = conds("sd15")
    head, target = tiny_spatial_head(used), torch.zeros(1, 3, 16, 16)
    sample(guided(used, head, target), positive, negative)  # a normal guided prompt first
    before = grad_tensors()
    model, error_type, message = _fault(path, used, head, target)
    if path == "interrupt":
        comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(error_type, match=message) as raised:
            sample(model, positive, negative)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    if path == "head_out_of_memory":
        assert OUT_OF_MEMORY_ADVICE in str(raised.value)
    del raised, model
    assert grad_tensors() <= before, "autograd state survived the failed step"
    unet = used.model.diffusion_model
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in unet.modules())
    assert not used.wrappers and "patches" not in used.model_options.get("transformer_options", {})
    assert not any(p.requires_grad for p in unet.parameters())
    assert torch.equal(sample(used, positive, negative), sample(fresh, positive, negative))
    assert torch.equal(sample(guided(used, head, target), positive, negative),
                       sample(guided(fresh, head, target), positive, negative))


def test_prompts_in_a_row_do_not_leak_into_each_other(pack):
    positive, negative = conds("sd15")
    shared = tiny_host_model("sd15", seed=4)
    head_a, head_b = tiny_spatial_head(shared, seed=1), tiny_spatial_head(shared, seed=2, control_type="edge")
    image_a = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    image_b = torch.rand(1, 48, 80, 3, generator=torch.Generator().manual_seed(2))

    def through_nodes(model, head, image, weight):
        with torch.inference_mode():
            (terms,) = run_node(pack["ReadoutGuidance_SpatialTarget"], head=head, image=image, weight=0.5)
            (patched,) = run_node(pack["ReadoutGuidance_Apply"], model=model, terms=terms, update_rule="official",
                                  weight=weight, start_percent=0.0, end_percent=1.0, recurrent_steps=1)
        return sample(patched, positive, negative)

    in_a_row = [through_nodes(shared, head_a, image_a, 0.05), through_nodes(shared, head_b, image_b, 0.1),
                sample(shared, positive, negative)]
    alone = [through_nodes(tiny_host_model("sd15", seed=4), head_a, image_a, 0.05),
             through_nodes(tiny_host_model("sd15", seed=4), head_b, image_b, 0.1),
             sample(tiny_host_model("sd15", seed=4), positive, negative)]
    for mine, reference in zip(in_a_row, alone):
        assert torch.equal(mine, reference)
    assert not torch.equal(in_a_row[0], in_a_row[1]) and not torch.equal(in_a_row[0], in_a_row[2])
