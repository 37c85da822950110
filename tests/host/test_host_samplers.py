"""Apply Readout Guidance with the host's own sampler nodes, CFG on and off, and batches."""

from __future__ import annotations

import pytest
import torch

from host_support import require_host

HOST = require_host()

import comfy.sample  # noqa: E402
import comfy.samplers  # noqa: E402
import comfy_extras.nodes_custom_sampler as custom  # noqa: E402
import nodes  # noqa: E402
from tiny_host import run_node, spatial_world  # noqa: E402

from readout_core import ReadoutError  # noqa: E402


@pytest.fixture(scope="module")
def setup(pack):
    image = torch.zeros(1, 128, 128, 3)
    image[:, :, :64] = 1.0  # left half white: a depth-like target image at 8x the latent size
    world = spatial_world(pack, model_seed=4, head_seed=2, image=image)
    with torch.inference_mode():
        (world["guided"],) = run_node(pack["ReadoutGuidance_Apply"], model=world["model"], terms=world["terms"],
                                      update_rule="official", weight=0.05, start_percent=0.0, end_percent=0.8,
                                      recurrent_steps=1)
    return world


def latent(batch=1):
    return {"samples": torch.zeros(batch, 4, 16, 16)}


def ksampler(model, s, cfg=3.0, batch=1):
    return run_node(nodes.KSampler, model=model, seed=11, steps=6, cfg=cfg, sampler_name="euler", scheduler="normal",
                    positive=s["positive"], negative=s["negative"], latent_image=latent(batch), denoise=1.0)[0]["samples"]


def ksampler_advanced(model, s):
    return run_node(nodes.KSamplerAdvanced, model=model, add_noise="enable", noise_seed=11, steps=6, cfg=3.0,
                    sampler_name="euler", scheduler="normal", positive=s["positive"], negative=s["negative"],
                    latent_image=latent(), start_at_step=0, end_at_step=10000,
                    return_with_leftover_noise="disable")[0]["samples"]


def sampler_custom(model, s):
    (sampler,) = run_node(custom.KSamplerSelect, sampler_name="euler")
    (sigmas,) = run_node(custom.BasicScheduler, model=model, scheduler="normal", steps=6, denoise=1.0)
    return run_node(custom.SamplerCustom, model=model, add_noise=True, noise_seed=11, cfg=3.0, positive=s["positive"],
                    negative=s["negative"], sampler=sampler, sigmas=sigmas, latent_image=latent())[0]["samples"]


def sampler_custom_advanced(model, s):
    (noise,) = run_node(custom.RandomNoise, noise_seed=11)
    (guider,) = run_node(custom.CFGGuider, model=model, positive=s["positive"], negative=s["negative"], cfg=3.0)
    (sampler,) = run_node(custom.KSamplerSelect, sampler_name="euler")
    (sigmas,) = run_node(custom.BasicScheduler, model=model, scheduler="normal", steps=6, denoise=1.0)
    return run_node(custom.SamplerCustomAdvanced, noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                    latent_image=latent())[0]["samples"]


@pytest.mark.parametrize("run", [ksampler, ksampler_advanced, sampler_custom, sampler_custom_advanced],
                         ids=["KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"])
def test_guidance_acts_through_every_sampler_node(setup, run):
    with torch.inference_mode():
        plain = run(setup["model"], setup)
        guided = run(setup["guided"], setup)
        again = run(setup["guided"], setup)
    assert torch.isfinite(guided).all()
    change = ((guided - plain).norm() / plain.norm()).item()
    assert change > 1e-3, f"guidance changed the result by only {change:.2e}"
    assert torch.equal(guided, again)  # deterministic, nothing carried over between runs


def test_all_four_sampler_nodes_give_the_same_guided_result(setup):
    with torch.inference_mode():
        results = [run(setup["guided"], setup) for run in (ksampler, ksampler_advanced, sampler_custom,
                                                          sampler_custom_advanced)]
    for other in results[1:]:
        assert torch.allclose(results[0], other, atol=1e-5)


def test_cfg_1_guides_the_conditional_branch(setup):
    with torch.inference_mode():
        plain = ksampler(setup["model"], setup, cfg=1.0)
        guided = ksampler(setup["guided"], setup, cfg=1.0)
    assert ((guided - plain).norm() / plain.norm()).item() > 1e-3


@pytest.mark.parametrize("rule", ["gradient", "official"])
def test_a_batch_is_guided_as_its_images_would_be_alone(pack, setup, rule):
    noise = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    positive = [[setup["positive"][0][0].expand(2, -1, -1), {}]]
    negative = [[setup["negative"][0][0].expand(2, -1, -1), {}]]
    with torch.inference_mode():
        (model,) = run_node(pack["ReadoutGuidance_Apply"], model=setup["model"], terms=setup["terms"],
                            update_rule=rule, weight=0.05 if rule == "official" else 5.0, start_percent=0.0,
                            end_percent=0.8, recurrent_steps=1)

    def sample(x, pos, neg):
        with torch.inference_mode():
            return comfy.sample.sample(model, x, 6, 3.0, "euler", "normal", pos, neg,
                                       torch.zeros_like(x), seed=0, disable_pbar=True)

    together = sample(noise, positive, negative)
    alone = torch.cat([sample(noise[i:i + 1], setup["positive"], setup["negative"]) for i in range(2)])
    if rule == "gradient":
        assert (together - alone).abs().max() <= 1e-5 * together.abs().max()
    else:
        # The sign step is discontinuous where a gradient entry is ~0, so batched float noise
        # may flip a handful of entries; everything else must agree.
        differing = ((together - alone).abs() > 1e-3 * together.abs().max()).float().mean().item()
        assert differing < 0.01


def test_target_batch_that_does_not_match_is_a_clear_error(pack, setup):
    images = torch.zeros(3, 64, 64, 3)
    with torch.inference_mode():
        (terms,) = run_node(pack["ReadoutGuidance_SpatialTarget"], head=setup["head"], image=images, weight=0.5)
        (guided,) = run_node(pack["ReadoutGuidance_Apply"], model=setup["model"], terms=terms, update_rule="gradient",
                             weight=1.0, start_percent=0.0, end_percent=1.0, recurrent_steps=1)
        with pytest.raises(ReadoutError, match="target has 3 images but the latent batch has 2"):
            ksampler(guided, setup, batch=2)


ALL_SAMPLERS = list(comfy.samplers.KSampler.SAMPLERS)
ALL_SCHEDULERS = list(comfy.samplers.KSampler.SCHEDULERS)


@pytest.mark.parametrize("sampler_name", ALL_SAMPLERS)
def test_every_builtin_sampler_runs_guided(setup, sampler_name):
    common = dict(seed=2, steps=4, cfg=3.0, sampler_name=sampler_name, scheduler="normal",
                  positive=setup["positive"], negative=setup["negative"], latent_image=latent(), denoise=1.0)
    with torch.inference_mode():
        plain = run_node(nodes.KSampler, model=setup["model"], **common)[0]["samples"]
        guided = run_node(nodes.KSampler, model=setup["guided"], **common)[0]["samples"]
    assert torch.isfinite(guided).all()
    assert not torch.equal(plain, guided), f"{sampler_name}: guidance had no effect"


@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
def test_every_builtin_scheduler_runs_guided(setup, scheduler):
    common = dict(seed=2, steps=4, cfg=3.0, sampler_name="euler", scheduler=scheduler,
                  positive=setup["positive"], negative=setup["negative"], latent_image=latent(), denoise=1.0)
    with torch.inference_mode():
        plain = run_node(nodes.KSampler, model=setup["model"], **common)[0]["samples"]
        guided = run_node(nodes.KSampler, model=setup["guided"], **common)[0]["samples"]
    assert torch.isfinite(guided).all() and not torch.equal(plain, guided)


def test_host_memory_planning_counts_the_backward_pass(setup, monkeypatch):
    import comfy.model_management

    planned = []
    original = comfy.model_management.load_models_gpu

    def recording(models, memory_required=0, *args, **kwargs):
        planned.append(memory_required)
        return original(models, memory_required, *args, **kwargs)

    monkeypatch.setattr(comfy.model_management, "load_models_gpu", recording)
    ksampler(setup["model"], setup)
    ksampler(setup["guided"], setup)
    unguided, guided = planned
    assert guided == pytest.approx(3 * unguided, rel=1e-6)


@pytest.mark.parametrize("rule, weight", [("gradient", 5.0), ("official", 0.05)])
def test_gradient_checkpointing_gives_the_same_guidance_and_leaves_no_trace(pack, setup, monkeypatch, rule, weight):
    import torch.utils.checkpoint as torch_checkpoint

    calls = []
    original = torch_checkpoint.checkpoint
    monkeypatch.setattr(torch_checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    results = []
    for checkpointing in (False, True):
        with torch.inference_mode():
            (model,) = run_node(pack["ReadoutGuidance_Apply"], model=setup["model"], terms=setup["terms"],
                                update_rule=rule, weight=weight, start_percent=0.0, end_percent=0.8,
                                recurrent_steps=1, gradient_checkpointing=checkpointing)
        results.append(ksampler(model, setup))
    assert calls, "no layer was checkpointed"
    plain, checkpointed = results
    if rule == "gradient":
        assert (plain - checkpointed).abs().max() <= 1e-5 * plain.abs().max()
    else:  # sign steps may flip where a gradient entry is ~0
        assert ((plain - checkpointed).abs() > 1e-3 * plain.abs().max()).float().mean() < 0.01
    unet = setup["model"].model.diffusion_model
    assert not any("forward" in m.__dict__ for m in unet.modules())


def test_gradient_rule_runs_only_the_guided_chunk_with_a_graph(pack, setup, monkeypatch):
    """The CFG batch is split so the conditional chunk runs without gradients; the result is
    the one a whole-batch graph gives."""
    from readout_core.host_adapter import HostGuidance

    grad_calls = []
    original = HostGuidance._captured

    def counting(self, executor, chunks, args, options, kwargs):
        grad_calls.append((list(chunks), args[0].shape[0], torch.is_grad_enabled()))
        return original(self, executor, chunks, args, options, kwargs)

    def guided():
        with torch.inference_mode():
            (model,) = run_node(pack["ReadoutGuidance_Apply"], model=setup["model"], terms=setup["terms"],
                                update_rule="gradient", weight=5.0, start_percent=0.0, end_percent=0.8,
                                recurrent_steps=1)
        return ksampler(model, setup, batch=2)

    monkeypatch.setattr(HostGuidance, "_captured", counting)
    split = guided()
    assert grad_calls and all(chunks == [1] and size == 2 and grad for chunks, size, grad in grad_calls)
    monkeypatch.setattr(HostGuidance, "_row_plan", lambda self, chunks, rows: None)  # the whole batch, one graph
    whole = guided()
    unguided = ksampler(setup["model"], setup, batch=2)
    difference = ((split - whole).norm() / whole.norm()).item()
    moved = ((whole - unguided).norm() / whole.norm()).item()
    print(f"split vs whole-batch graph: {difference:.1e} relative (guidance moved the result by {moved:.1e})")
    assert difference < 1e-4 and moved > 100 * difference


@pytest.mark.parametrize("sampler_name, every, expected", [("euler", 1, [0, 1, 2, 3, 4]), ("euler", 2, [0, 2, 4]),
                                                           ("heun", 3, [0, 3, 3])])
def test_guide_every_kth_step(pack, setup, monkeypatch, sampler_name, every, expected):
    """Guidance acts at every k-th noise level of the schedule inside the window. Heun evaluates
    at each step's start and end: the end is the next schedule level, so it counts with the
    next step (step 0's start, step 2's end and step 3's start are level 0 and 3)."""
    from readout_core.host_adapter import HostGuidance
    from readout_core.host_adapter.guided_sampling import _step_index

    guided_steps = []
    original = HostGuidance._loss_gradient

    def counting(self, executor, x, sigma, model_options, *rest):
        guided_steps.append(_step_index(float(sigma.reshape(-1)[0]), model_options))
        return original(self, executor, x, sigma, model_options, *rest)

    monkeypatch.setattr(HostGuidance, "_loss_gradient", counting)
    with torch.inference_mode():
        (model,) = run_node(pack["ReadoutGuidance_Apply"], model=setup["model"], terms=setup["terms"],
                            update_rule="gradient", weight=5.0, start_percent=0.0, end_percent=0.8,
                            recurrent_steps=1, guide_every=every)
        run_node(nodes.KSampler, model=model, seed=11, steps=6, cfg=3.0, sampler_name=sampler_name,
                 scheduler="normal", positive=setup["positive"], negative=setup["negative"], latent_image=latent(),
                 denoise=1.0)
    assert guided_steps == expected
