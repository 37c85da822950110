"""HOST ADAPTER — the one module of `readout_core` that knows ComfyUI.

Nothing else in the core imports this module; the node wrappers in ``nodes/`` do.
It maps the host's ``UNetModel`` (``comfy.ldm.modules.diffusionmodules.openaimodel``)
onto the core's decoder layout: which modules produce the published "hidden"
features and how the head's timestep embedding is computed.

In the host's ``ResBlock`` the residual branch is ``h = out_layers(...)`` and the
block returns ``skip_connection(x) + h``, so the output of ``out_layers`` of
``output_blocks[k][0]`` is the feature of decoder layer k.
"""

from __future__ import annotations

import copy
import logging
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .errors import FeatureError, ReadoutError
from .features import DecoderFeatureCapture, DecoderLayout, decoder_layout, sinusoidal_timestep_embedding
from .guidance import AdamState, GuidanceSettings, adam_update, guidance_loss

LOG = logging.getLogger("readout_guidance")
WRAPPER_KEY = "readout_guidance"
COND, UNCOND = 0, 1
BACKWARD_MEMORY_FACTOR = 3
"""The host sizes its free-memory reserve for a CFG batch; a guided step also keeps the
forward's activations for the backward pass, so the pack asks for this many times more."""

_FAMILY_BY_LEVELS = {4: "sd15", 3: "sdxl"}


def find_diffusion_model(model: Any) -> nn.Module:
    """The ``UNetModel`` inside a host MODEL (a ``ModelPatcher``), a ``BaseModel`` or the U-Net itself.

    Raises `FeatureError` with advice for models without a U-Net decoder (DiT, Flux, ...).
    """
    candidate = getattr(model, "model", model)
    candidate = getattr(candidate, "diffusion_model", candidate)
    if not hasattr(candidate, "output_blocks") or not hasattr(candidate, "time_embed"):
        name = type(candidate).__name__
        raise FeatureError(
            f"Readout Guidance reads the decoder of a Stable Diffusion U-Net (SD1.5 or SDXL), but this model "
            f"is a {name} without one. Load an SD1.5 or SDXL checkpoint."
        )
    return candidate


def host_decoder_layout(unet: nn.Module) -> DecoderLayout:
    """The `DecoderLayout` of a host ``UNetModel``, read from its own attributes."""
    levels = len(unet.channel_mult)
    family = _FAMILY_BY_LEVELS.get(levels)
    per_level = set(unet.num_res_blocks)
    if family is None or len(per_level) != 1:
        raise FeatureError(
            f"Unsupported U-Net layout ({levels} levels, res blocks {list(unet.num_res_blocks)}); Readout "
            "Guidance supports the SD1.5 and SDXL U-Net layouts."
        )
    widths = tuple(unet.model_channels * mult for mult in unet.channel_mult)
    return decoder_layout(family, widths, layers_per_block=per_level.pop())


def host_feature_modules(unet: nn.Module, layout: DecoderLayout | None = None) -> list[nn.Module]:
    """``output_blocks[k][0].out_layers`` for every decoder layer, in reading order."""
    layout = layout or host_decoder_layout(unet)
    modules = []
    for layer, channels in enumerate(layout.dims):
        resblock = unet.output_blocks[layout.host_output_block(layer)][0]
        out_layers = getattr(resblock, "out_layers", None)
        if out_layers is None or resblock.out_channels != channels:
            raise FeatureError(
                f"Output block {layout.host_output_block(layer)} of this U-Net is not the expected ResBlock "
                f"with {channels} channels; the model's layout is not supported."
            )
        modules.append(out_layers)
    return modules


def host_head_embedding(unet: nn.Module, timesteps: torch.Tensor) -> torch.Tensor:
    """The head's timestep embedding: the U-Net's ``time_embed`` of the timestep sinusoid.

    ``timesteps`` are the discrete model timesteps (``model_sampling.timestep(sigma)``),
    one per batch element. SDXL's added label embedding is not included, as released.
    """
    weight = unet.time_embed[0].weight
    sinusoid = sinusoidal_timestep_embedding(timesteps.to(weight.device), unet.model_channels)
    return unet.time_embed(sinusoid.to(weight.dtype))


def check_head_fits(head: nn.Module, layout: DecoderLayout) -> None:
    """Raise `ReadoutError` unless ``head`` reads exactly the decoder layers of ``layout``."""
    info = head.info
    if tuple(info.dims) != tuple(layout.dims):
        raise ReadoutError(
            f"The {info.kind} head was trained for {info.family.upper()} (decoder layers {list(info.dims)}), "
            f"but this model is {layout.family.upper()}-like with layers {list(layout.dims)}. "
            f"Load a {layout.family.upper()} head, or a {info.family.upper()} checkpoint."
        )


def head_on(head: nn.Module, device: torch.device) -> nn.Module:
    """``head`` on ``device``: itself if already there, else a copy (the loader's output is never moved)."""
    if next(head.parameters()).device == device:
        return head
    return copy.deepcopy(head).to(device)


def make_autograd_safe(module: nn.Module) -> int:
    """Replace inference-mode parameters and buffers of ``module`` by ordinary clones.

    The host runs prompts under ``torch.inference_mode()``, so weights loaded there
    cannot be saved for backward. The clones hold the same values (outputs stay bit
    identical) and never require grad. Returns how many tensors were replaced.
    """
    replaced = 0
    with torch.inference_mode(False):
        for sub in module.modules():
            for name, param in list(sub._parameters.items()):
                if param is not None and param.is_inference():
                    sub._parameters[name] = nn.Parameter(param.clone(), requires_grad=False)
                    replaced += 1
            for name, buffer in list(sub._buffers.items()):
                if buffer is not None and buffer.is_inference():
                    sub._buffers[name] = buffer.clone()
                    replaced += 1
    return replaced


def control_modules(conds: dict[str, Any] | None) -> list[nn.Module]:
    """The modules of every ControlNet / T2I-Adapter attached to the guider's conds."""
    found: dict[int, nn.Module] = {}
    for cond_list in (conds or {}).values():
        for cond in cond_list or []:
            control = cond.get("control") if isinstance(cond, dict) else None
            while control is not None:
                for value in vars(control).values():
                    module = getattr(value, "model", value)
                    if isinstance(module, nn.Module):
                        found[id(module)] = module
                control = getattr(control, "previous_controlnet", None)
    return list(found.values())


@contextmanager
def checkpointed_layers(unet: nn.Module, enabled: bool) -> Iterator[None]:
    """Gradient checkpointing of the U-Net's ResBlocks and transformers for one pass.

    Each layer's activations are recomputed during the backward pass instead of kept,
    trading time for memory (SDXL at 1024 px). The layers get an instance ``forward``
    only inside the block; whatever was there before is put back on exit.
    """
    if not enabled:
        yield
        return
    from torch.utils.checkpoint import checkpoint

    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

    saved: list[tuple[nn.Module, object]] = []
    for block in [*unet.input_blocks, unet.middle_block, *unet.output_blocks]:
        for layer in block:
            if not isinstance(layer, (ResBlock, SpatialTransformer)):
                continue
            saved.append((layer, layer.__dict__.get("forward")))
            layer.forward = _checkpointed(layer.forward, checkpoint)
    try:
        yield
    finally:
        for layer, previous in saved:
            del layer.forward
            if previous is not None:
                layer.forward = previous


def _checkpointed(forward: Callable, checkpoint: Callable) -> Callable:
    def run(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        # transformer_options is mutated as the U-Net runs; the recomputation must see it
        # as it was for this layer.
        args = tuple(dict(a) if isinstance(a, dict) else a for a in args)
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def _clone_skip(h: torch.Tensor, _transformer_options: dict) -> torch.Tensor:
    """Input-block patch: the decoder adds ControlNet residuals to the skip tensors in
    place, which breaks autograd; the next block works on a copy instead."""
    return h.clone()


@dataclass
class _CapturedCall:
    cond_or_uncond: list[int]
    features: torch.Tensor
    timesteps: torch.Tensor


class HostGuidance:
    """Readout guidance installed on a cloned host ``ModelPatcher``.

    A PREDICT_NOISE wrapper runs at every sampler evaluation (any sampler, any
    guider); inside the guidance window it runs the model with gradients, with a
    DIFFUSION_MODEL wrapper capturing the decoder features of each CFG chunk only
    for that pass, and applies the update rule. Nothing is attached to the U-Net
    outside that pass.
    """

    def __init__(self, settings: GuidanceSettings) -> None:
        self.settings = settings
        self.layout: DecoderLayout | None = None
        self.last_losses: list[float] = []
        self._records: list[_CapturedCall] | None = None
        self._warned: set[str] = set()
        self._terms_by_device: dict[str, list] = {}

    def install(self, patcher: Any) -> None:
        """Check the model against the heads and add the wrappers to ``patcher`` (a clone)."""
        unet = find_diffusion_model(patcher)
        self.layout = host_decoder_layout(unet)
        for term in self.settings.terms:
            check_head_fits(term.head, self.layout)
        from comfy.patcher_extension import WrappersMP

        patcher.add_wrapper_with_key(WrappersMP.PREPARE_SAMPLING, WRAPPER_KEY, _reserve_backward_memory)
        patcher.add_wrapper_with_key(WrappersMP.PREDICT_NOISE, WRAPPER_KEY, self._predict_noise)
        patcher.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, self._diffusion_model)
        patcher.set_model_input_block_patch_after_skip(_clone_skip)

    # -- wrappers -----------------------------------------------------------------

    def _diffusion_model(self, executor: Callable, x, timesteps, context, y, control, transformer_options, **kwargs):
        if self._records is None:
            return executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        unet = executor.class_obj
        with DecoderFeatureCapture(host_feature_modules(unet, self.layout)) as capture:
            out = executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        chunks = list(transformer_options.get("cond_or_uncond") or [COND])
        self._records.append(_CapturedCall(chunks, capture.collected(tuple(x.shape[-2:])), timesteps))
        return out

    def _predict_noise(self, executor: Callable, x, sigma, model_options, seed):
        guider = executor.class_obj
        model = guider.inner_model
        if not self._active(model, sigma):
            return executor(x, sigma, model_options, seed)
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()
        make_autograd_safe(model.diffusion_model)
        for module in control_modules(getattr(guider, "conds", None)):
            make_autograd_safe(module)
        if self.settings.rule == "official":
            return self._official_step(executor, x, sigma, model_options, seed, model)
        return self._gradient_step(executor, x, sigma, model_options, seed, model)

    # -- update rules ---------------------------------------------------------------

    def _official_step(self, executor, x, sigma, model_options, seed, model):
        import comfy.model_management

        state = AdamState()
        moved = x
        scale = _vp_scale(model, sigma, x.ndim)
        for _ in range(self.settings.recurrent_steps):
            comfy.model_management.throw_exception_if_processing_interrupted()
            _denoised, grad_vp = self._loss_gradient(executor, moved, sigma, model_options, seed, model, "all")
            if grad_vp is None:
                break
            moved = moved + adam_update(grad_vp, state, self.settings.weight).to(x.dtype) * scale
        if _can_update_in_place(x):
            # Move the sampler's own latent (the tensor it passed in) and evaluate there: every
            # sampler, first-order or multistep, then steps from the moved latent, as released.
            x.copy_(moved)
            return executor(x, sigma, model_options, seed)
        # Otherwise shift the denoised estimate so that a first-order (Euler / DDIM) step
        # starts from the moved latent.
        denoised = executor(moved, sigma, model_options, seed)
        sigma_next = _next_sigma(sigma, model_options)
        ratio = (sigma_next / (sigma - sigma_next)).reshape(-1, *[1] * (x.ndim - 1))
        return denoised + (moved - x) * ratio.to(x.dtype)

    def _gradient_step(self, executor, x, sigma, model_options, seed, model):
        denoised, grad_vp = self._loss_gradient(executor, x, sigma, model_options, seed, model, "guided")
        if grad_vp is None:
            return denoised
        sigma_b = sigma.reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)
        return denoised - sigma_b * self.settings.weight * grad_vp.to(x.dtype)

    def _loss_gradient(self, executor, x, sigma, model_options, seed, model, branches: str):
        """Run the guider with gradients; return (denoised, ∂loss/∂x_vp or None if not finite)."""
        with torch.inference_mode(False), torch.enable_grad():
            x_in = x.detach().clone().requires_grad_(True)
            self._records = []
            try:
                with checkpointed_layers(model.diffusion_model, self.settings.gradient_checkpointing):
                    denoised = executor(x_in, sigma.clone(), model_options, seed)
                records = self._records
            finally:
                self._records = None
            features, emb = self._branch_features(records, branches, x.shape[0], model.diffusion_model)
            x_vp = model.model_sampling.calculate_input(sigma.clone(), x_in)
            total, per_sample = guidance_loss(self._terms_on(x.device), features, emb, x_vp)
            grad_x, = torch.autograd.grad(total, x_in)
        self.last_losses = per_sample.tolist()
        _report_progress(f"Readout guidance loss {sum(self.last_losses):.4g} at sigma {float(sigma.reshape(-1)[0]):.3g}")
        denoised = denoised.detach()
        if not torch.isfinite(grad_x).all() or not torch.isfinite(total):
            self._warn_once("nonfinite", "Readout guidance: non-finite loss or gradient; this step is left unguided.")
            return denoised, None
        return denoised, grad_x * _vp_scale(model, sigma, x.ndim)

    def _branch_features(self, records, branches, batch, unet):
        features, timesteps = [], None
        for record in records:
            chunks = record.features.chunk(len(record.cond_or_uncond))
            for label, chunk in zip(record.cond_or_uncond, chunks):
                if chunk.shape[0] != batch:
                    self._warn_once("area", "Readout guidance skips area / cropped conditioning chunks.")
                    continue
                features.append((label, chunk))
                timesteps = record.timesteps[:batch]
        if branches == "guided" and any(label == UNCOND for label, _ in features):
            features = [item for item in features if item[0] == UNCOND]
        elif branches == "guided":
            features = features[:1]
        if not features:
            raise ReadoutError("Readout guidance captured no decoder features: the model did not run its U-Net.")
        return [chunk for _, chunk in features], host_head_embedding(unet, timesteps)

    # -- helpers --------------------------------------------------------------------

    def _terms_on(self, device: torch.device) -> list:
        """The terms with heads on ``device`` (copies: the loader's head object is not moved)."""
        key = str(device)
        if key not in self._terms_by_device:
            self._terms_by_device[key] = [replace(t, head=head_on(t.head, device)) for t in self.settings.terms]
        return self._terms_by_device[key]

    def _active(self, model: Any, sigma: torch.Tensor) -> bool:
        sampling = model.model_sampling
        high = sampling.percent_to_sigma(self.settings.start_percent)
        low = sampling.percent_to_sigma(self.settings.end_percent)
        value = float(sigma.reshape(-1)[0])
        return low <= value <= high and value > 0

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            LOG.warning(message)


def _reserve_backward_memory(executor: Callable, model, noise_shape, conds, *args, **kwargs):
    """PREPARE_SAMPLING wrapper: let the host's own memory planning (how much to free, how
    much of the model to keep loaded) count the backward pass of guided steps, by sizing
    its estimate for a proportionally larger batch."""
    shape = [noise_shape[0] * BACKWARD_MEMORY_FACTOR, *noise_shape[1:]]
    return executor(model, shape, conds, *args, **kwargs)


def _can_update_in_place(x: torch.Tensor) -> bool:
    """Whether the sampler's latent may be changed in place here (inference tensors only inside inference mode)."""
    return not x.requires_grad and (torch.is_inference_mode_enabled() or not x.is_inference())


def _report_progress(text: str) -> None:
    """Show ``text`` under the running sampler node in the browser (and in the debug log)."""
    LOG.debug(text)
    server_module, utils_module = sys.modules.get("server"), sys.modules.get("comfy_execution.utils")
    server = getattr(getattr(server_module, "PromptServer", None), "instance", None)
    context = utils_module.get_executing_context() if utils_module is not None else None
    if server is not None and context is not None and hasattr(server, "send_progress_text"):
        server.send_progress_text(text, context.node_id)


def _vp_scale(model: Any, sigma: torch.Tensor, ndim: int) -> torch.Tensor:
    """d x / d x_vp = sqrt(σ² + σ_data²) per sample, shaped for broadcasting."""
    sigma_data = float(getattr(model.model_sampling, "sigma_data", 1.0))
    scale = (sigma.float() ** 2 + sigma_data**2).sqrt()
    return scale.reshape(-1, *[1] * (ndim - 1))


def _next_sigma(sigma: torch.Tensor, model_options: dict) -> torch.Tensor:
    """The schedule's next sigma below ``sigma`` (0 at the end, or without a schedule)."""
    schedule = (model_options.get("transformer_options") or {}).get("sample_sigmas")
    current = float(sigma.reshape(-1)[0])
    following = 0.0
    if schedule is not None:
        lower = [float(s) for s in schedule if float(s) < current * (1 - 1e-5)]
        following = max(lower) if lower else 0.0
    return torch.full_like(sigma.reshape(-1).float(), following).to(sigma.device)


def readout_of_latent(patcher: Any, head: nn.Module, latent: dict, conditioning: list, percent: float) -> torch.Tensor:
    """The head's readout of a LATENT, through the host's own sampling machinery.

    One model evaluation at the noise level of ``percent`` (ComfyUI's percent of the
    schedule; no noise is added), conditioned on ``conditioning`` with CFG 1. Returns
    ``[B, K, h, w]`` on the CPU.
    """
    import comfy.patcher_extension
    import comfy.samplers

    unet = find_diffusion_model(patcher)
    layout = host_decoder_layout(unet)
    check_head_fits(head, layout)
    captured: dict[str, torch.Tensor] = {}

    def capture(executor, x, timesteps, context, y, control, transformer_options, **kwargs):
        with DecoderFeatureCapture(host_feature_modules(executor.class_obj, layout)) as features:
            out = executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        captured["features"] = features.collected(tuple(x.shape[-2:]))
        captured["timesteps"] = timesteps
        return out

    def one_evaluation(model, x, sigmas, extra_args=None, callback=None, disable=None):
        model(x, sigmas[0] * x.new_ones([x.shape[0]]), **(extra_args or {}))
        return x

    model = patcher.clone()
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY + "_preview", capture)
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(conditioning, conditioning)
    guider.set_cfg(1.0)
    samples = latent["samples"]
    sigma = float(model.get_model_object("model_sampling").percent_to_sigma(percent))
    sigma = min(sigma, float(model.get_model_object("model_sampling").sigma_max))
    guider.sample(torch.zeros_like(samples), samples, comfy.samplers.KSAMPLER(one_evaluation),
                  torch.tensor([sigma, 0.0]), disable_pbar=True, seed=0)
    features = captured["features"].float()
    batch = samples.shape[0]
    with torch.no_grad():
        emb = host_head_embedding(unet, captured["timesteps"][:batch]).float()
        return head_on(head, features.device)(features[:batch], emb.to(features.device)).cpu()
