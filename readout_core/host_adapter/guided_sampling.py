"""Readout guidance inside the host's sampling: wrappers on a cloned ``ModelPatcher``."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from ..errors import ReadoutError
from ..features import DecoderFeatureCapture, DecoderLayout
from ..guidance import AdamState, GuidanceSettings, adam_update, guidance_loss
from .unet import (
    check_head_fits,
    checkpointed_layers,
    control_modules,
    find_diffusion_model,
    head_on,
    host_decoder_layout,
    host_feature_modules,
    host_head_embedding,
    make_autograd_safe,
)

LOG = logging.getLogger("readout_guidance")
WRAPPER_KEY = "readout_guidance"
COND, UNCOND = 0, 1
BACKWARD_MEMORY_FACTOR = 3
"""The host sizes its free-memory reserve for a CFG batch; a guided step also keeps the
forward's activations for the backward pass, so the pack asks for this many times more."""
OUT_OF_MEMORY_ADVICE = (
    "Readout guidance ran out of memory in its backward pass through the U-Net. Turn on gradient_checkpointing, "
    "lower the resolution or batch size, or guide fewer steps (end_percent)."
)


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
    outside that pass. Only rows that a loss differentiates carry a graph: the
    reference rows of a ``[reference, edits...]`` batch, and under the gradient rule
    the conditional chunk, run without autograd (see `_row_plan`).
    """

    def __init__(self, settings: GuidanceSettings) -> None:
        self.settings = settings
        self.layout: DecoderLayout | None = None
        self.last_losses: list[float] = []
        self._records: list[_CapturedCall] | None = None
        self._guided_only = False
        self._reference_cache: dict | None = None
        self.graph_rows = 0  # batch rows run with a graph so far, CFG chunks counted apart
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
        if self._records is None and self._reference_cache is None:
            return executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        chunks = list(transformer_options.get("cond_or_uncond") or [COND])
        args = (x, timesteps, context, y, control)
        plan = self._row_plan(chunks, x.shape[0])
        if plan is None:
            if self._records is None:
                return executor(*args, transformer_options, **kwargs)
            return self._captured(executor, chunks, args, transformer_options, kwargs)
        return self._run_rows(executor, chunks, plan, args, transformer_options, kwargs)

    def _row_plan(self, chunks: list[int], rows: int) -> dict[str, list[tuple[int, int]]] | None:
        """How the rows of one U-Net call run, as (chunk position, sample) pairs per group:
        ``graph`` (autograd, features recorded), ``reference`` (reference samples: no autograd,
        features recorded and kept for the rest of the evaluation) and ``plain`` (no autograd,
        nothing recorded). None: the call runs as one batch, with a graph while recording
        (every row needs one and nothing is checkpointed, or the rows do not map to the layout,
        as with area conditioning)."""
        layout = self.settings.reference_of
        batch = rows // len(chunks)
        if rows % len(chunks) or (layout is not None and len(layout) != batch):
            return None
        recording = self._records is not None
        plan: dict[str, list[tuple[int, int]]] = {"graph": [], "reference": [], "plain": []}
        for position, label in enumerate(chunks):
            needed = recording and (not self._guided_only or label == UNCOND or UNCOND not in chunks)
            for sample in range(batch):
                if layout is not None and layout[sample] is None:
                    plan["reference"].append((position, sample))
                else:
                    plan["graph" if needed else "plain"].append((position, sample))
        if recording and len(plan["graph"]) == rows and not self.settings.gradient_checkpointing:
            return None
        return plan

    def _run_rows(self, executor: Callable, chunks: list[int], plan: dict[str, list[tuple[int, int]]], args: tuple,
                  transformer_options: dict, kwargs: dict) -> torch.Tensor:
        """Run one U-Net call as its row groups and put the outputs (and the recorded decoder
        features, per CFG chunk) back together in the call's row order.

        Only the guided rows carry a graph. The reference rows run without autograd, once per
        evaluation: no loss reaches their inputs, so these do not move, and the recurrent
        passes and the final pass of the official rule reuse what the first pass computed.
        With gradient checkpointing each graph row runs as its own call, so the backward
        pass recomputes one row's layers at a time (their activations, attention above all,
        are what a checkpointed pass holds at its peak).
        """
        batch = args[0].shape[0] // len(chunks)
        outputs: dict[tuple[int, int], torch.Tensor] = {}
        features: dict[tuple[int, int], torch.Tensor] = {}
        for group, members in plan.items():
            one_row_calls = group == "graph" and self.settings.gradient_checkpointing
            blocks = [([position], [sample]) for position, sample in members] if one_row_calls else _same_samples(members)
            for positions, samples in blocks:
                cells = [(position, sample) for position in positions for sample in samples]
                out, captured = self._run_group(executor, group, chunks, positions, [p * batch + s for p, s in cells],
                                                args, transformer_options, kwargs)
                outputs.update(zip(cells, out))
                if captured is not None:
                    features.update(zip(cells, captured))
        if self._records is not None:
            for position, label in enumerate(chunks):
                cells = [(position, sample) for sample in range(batch)]
                if all(cell in features for cell in cells):
                    self._records.append(_CapturedCall([label], torch.stack([features[c] for c in cells]),
                                                       args[1][position * batch:(position + 1) * batch]))
        return torch.stack([outputs[(position, sample)] for position in range(len(chunks)) for sample in range(batch)])

    def _run_group(self, executor: Callable, group: str, chunks: list[int], positions: list[int], rows: list[int],
                   args: tuple, transformer_options: dict, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ``rows`` of one group (covering the CFG chunks at ``positions``) through the
        U-Net: (output rows, decoder feature rows or None)."""
        total = args[0].shape[0]
        index = torch.tensor(rows, device=args[0].device)
        options = dict(transformer_options, cond_or_uncond=[chunks[p] for p in positions])
        uuids = transformer_options.get("uuids")
        if isinstance(uuids, list) and len(uuids) == len(chunks):
            options["uuids"] = [uuids[p] for p in positions]
        if torch.is_tensor(options.get("sigmas")):
            options["sigmas"] = _batch_part(options["sigmas"], index, total)
        part_args, part_kwargs = _batch_part(args, index, total), _batch_part(kwargs, index, total)
        recording = self._records is not None
        if group == "graph":
            self.graph_rows += len(rows)
            out = self._captured(executor, options["cond_or_uncond"], part_args, options, part_kwargs)
            return out, self._records.pop().features
        key = (tuple(options["cond_or_uncond"]), tuple(rows))
        cache = self._reference_cache if group == "reference" else None
        if cache is not None and key in cache:
            x_seen, out, captured = cache[key]
            if torch.equal(x_seen, part_args[0]) and (captured is not None or not recording):
                return out, captured
        with torch.no_grad():
            if group == "plain" or not recording:
                out, captured = executor(*part_args, options, **part_kwargs), None
            else:
                out = self._captured(executor, options["cond_or_uncond"], part_args, options, part_kwargs)
                captured = self._records.pop().features
        if cache is not None:
            cache[key] = (part_args[0], out, captured)
        return out, captured

    def _captured(self, executor: Callable, chunks: list[int], args: tuple, transformer_options: dict, kwargs: dict):
        """Run the U-Net with the decoder features of this call recorded for the loss."""
        x, timesteps = args[0], args[1]
        with DecoderFeatureCapture(host_feature_modules(executor.class_obj, self.layout)) as capture:
            out = executor(*args, transformer_options, **kwargs)
        self._records.append(_CapturedCall(chunks, capture.collected(tuple(x.shape[-2:])), timesteps))
        return out

    def _predict_noise(self, executor: Callable, x, sigma, model_options, seed):
        guider = executor.class_obj
        model = guider.inner_model
        if not self._active(model, sigma, model_options):
            return executor(x, sigma, model_options, seed)
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()
        make_autograd_safe(model.diffusion_model)
        for module in control_modules(getattr(guider, "conds", None)):
            make_autograd_safe(module)
        for term in self.settings.terms:  # Load Readout Head builds heads in the prompt's inference mode
            make_autograd_safe(term.head)
        step = self._official_step if self.settings.rule == "official" else self._gradient_step
        out_of_memory = None
        layout = self.settings.reference_of
        self._reference_cache = {} if layout is not None and None in layout else None
        try:
            return step(executor, x, sigma, model_options, seed, model)
        except torch.OutOfMemoryError as error:
            out_of_memory = str(error)
        finally:
            self._reference_cache = None
        # Raised outside the handler, so the failed step's activations and graph are already
        # released; the host still sees an out-of-memory error and frees its caches.
        raise torch.OutOfMemoryError(f"{out_of_memory}\n{OUT_OF_MEMORY_ADVICE}")

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
            self._guided_only = branches == "guided"
            try:
                with checkpointed_layers(model.diffusion_model, self.settings.gradient_checkpointing):
                    denoised = executor(x_in, sigma.clone(), model_options, seed)
                records = self._records
            finally:
                self._records = None
            features, emb = self._branch_features(records, branches, x.shape[0], model.diffusion_model)
            x_vp = model.model_sampling.calculate_input(sigma.clone(), x_in)
            total, per_sample = guidance_loss(self._terms_on(x.device), features, emb, x_vp,
                                              self.settings.reference_of)
            grad_x, = torch.autograd.grad(total, x_in)
        self.last_losses = per_sample.tolist()
        show_text_under_node(f"Readout guidance loss {sum(self.last_losses):.4g} at sigma {float(sigma.reshape(-1)[0]):.3g}")
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

    def _active(self, model: Any, sigma: torch.Tensor, model_options: dict) -> bool:
        sampling = model.model_sampling
        high = sampling.percent_to_sigma(self.settings.start_percent)
        low = sampling.percent_to_sigma(self.settings.end_percent)
        value = float(sigma.reshape(-1)[0])
        if not (low <= value <= high and value > 0):
            return False
        return _step_index(value, model_options) % self.settings.guide_every == 0

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            LOG.warning(message)


def _same_samples(members: list[tuple[int, int]]) -> list[tuple[list[int], list[int]]]:
    """(chunk position, sample) pairs grouped into (positions, samples) blocks whose chunks
    share one sample list, so that each block runs as one host-shaped call (equal chunks)."""
    samples_of: dict[int, list[int]] = {}
    for position, sample in members:
        samples_of.setdefault(position, []).append(sample)
    blocks: dict[tuple[int, ...], list[int]] = {}
    for position, samples in samples_of.items():
        blocks.setdefault(tuple(samples), []).append(position)
    return [(positions, list(samples)) for samples, positions in blocks.items()]


def _batch_part(value: Any, part: torch.Tensor, batch: int) -> Any:
    """``value`` with every tensor whose first dimension is ``batch`` cut to the rows ``part``
    (nested lists / dicts too)."""
    if torch.is_tensor(value):
        return value[part] if value.ndim > 0 and value.shape[0] == batch else value
    if isinstance(value, (list, tuple)):
        return type(value)(_batch_part(item, part, batch) for item in value)
    if isinstance(value, dict):
        return {key: _batch_part(item, part, batch) for key, item in value.items()}
    return value


def _reserve_backward_memory(executor: Callable, model, noise_shape, conds, *args, **kwargs):
    """PREPARE_SAMPLING wrapper: let the host's own memory planning (how much to free, how
    much of the model to keep loaded) count the backward pass of guided steps, by sizing
    its estimate for a proportionally larger batch."""
    shape = [noise_shape[0] * BACKWARD_MEMORY_FACTOR, *noise_shape[1:]]
    return executor(model, shape, conds, *args, **kwargs)


def _can_update_in_place(x: torch.Tensor) -> bool:
    """Whether the sampler's latent may be changed in place here (inference tensors only inside inference mode)."""
    return not x.requires_grad and (torch.is_inference_mode_enabled() or not x.is_inference())


def show_text_under_node(text: str) -> None:
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


def _step_index(sigma: float, model_options: dict) -> int:
    """The index of the schedule level at or just above ``sigma`` (0 without a schedule):
    evaluations between two levels count with the higher one."""
    schedule = (model_options.get("transformer_options") or {}).get("sample_sigmas")
    if schedule is None:
        return 0
    return max(0, sum(1 for s in schedule if float(s) >= sigma * (1 - 1e-5)) - 1)


def _next_sigma(sigma: torch.Tensor, model_options: dict) -> torch.Tensor:
    """The schedule's next sigma below ``sigma`` (0 at the end, or without a schedule)."""
    schedule = (model_options.get("transformer_options") or {}).get("sample_sigmas")
    current = float(sigma.reshape(-1)[0])
    following = 0.0
    if schedule is not None:
        lower = [float(s) for s in schedule if float(s) < current * (1 - 1e-5)]
        following = max(lower) if lower else 0.0
    return torch.full_like(sigma.reshape(-1).float(), following).to(sigma.device)


def guided_clone(patcher: Any, settings: GuidanceSettings) -> Any:
    """A clone of the host MODEL with readout guidance installed; ``patcher`` itself is left untouched."""
    guided = patcher.clone()
    HostGuidance(settings).install(guided)
    return guided
