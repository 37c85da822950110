"""What readout guidance costs per sampling step: time and peak memory, guided vs unguided.

    python benchmarks/bench_guidance.py                      # SD1.5 layout, CPU, latent 32, batch 1
    python benchmarks/bench_guidance.py --layout sdxl --latent 128 --device cuda --dtype fp16
    python benchmarks/bench_guidance.py --mode drag --latent 64  # drag-real, variations: see reference_modes.py

Builds the full-size U-Net with random weights (cost does not depend on the weights).
With a ComfyUI host (``COMFYUI_PATH`` or the pack inside ``ComfyUI/custom_nodes``) it
runs the host's own sampler (euler, CFG) through the pack's guidance wrappers; without
one it runs the same computation on diffusers' U-Net through the core ("core path").
Each configuration prints the median unguided CFG step, the median guided step, their
ratio, the peak memory of each (process RSS on CPU, ``torch.cuda.max_memory_allocated``
on GPU; both include the model's weights) and their ratio, the extra memory guidance
takes, the head forward + loss share of the guided step (spatial mode), and the time of
a whole edit (50 steps, guidance over the released window: the first half) extrapolated
from the two measured steps. The last line sums up the first configuration (by default
the gradient rule). ``--mode drag|drag-real|variations`` times the reference processes
(`reference_modes`; they need a host) instead of spatial guidance.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

import torch  # noqa: E402

from full_size_unets import diffusers_unet, host_conds, host_model  # noqa: E402
from measuring import DTYPES, Measurement, MemoryProbe, sync  # noqa: E402
from reference_modes import MODES, ReferenceBench, whole_edit_seconds  # noqa: E402
from readout_core import HeadInfo, ReadoutHead  # noqa: E402

def spatial_head(layout_dims, family: str, device: torch.device, emb_dim: int = 1280) -> ReadoutHead:
    """A full-size spatial head (published SD1.5 / SDXL architecture) with random weights."""
    torch.manual_seed(0)
    info = HeadInfo(kind="spatial", family=family, dims=tuple(layout_dims), projection_dim=384, emb_dim=emb_dim,
                    output_channels=3, control_type="depth", control_range=(-1.0, 1.0))
    return ReadoutHead(info).to(device).eval().requires_grad_(False)


# -- host path ------------------------------------------------------------------------------


class HostBench:
    """Steps of the host's own sampler, unguided and through `HostGuidance`."""

    def __init__(self, args) -> None:
        import comfy.model_management  # noqa: F401  (the host picks its device on import)

        from readout_core.host_adapter import host_decoder_layout

        self.args, self.device = args, torch.device(args.device)
        self.model = host_model(args.layout, self.device, DTYPES[args.dtype])
        layout = host_decoder_layout(self.model.model.diffusion_model)
        self.head = spatial_head(layout.dims, layout.family, self.device)
        self.positive, self.negative = host_conds(args.layout, args.batch, args.latent * 8)
        self.latent = torch.zeros(args.batch, 4, args.latent, args.latent)

    def run(self, rule: str | None, checkpointing: bool) -> Measurement:
        import comfy.sample

        from readout_core.guidance import GuidanceSettings, GuidanceTerm
        from readout_core.host_adapter import HostGuidance
        from readout_core.host_adapter import guided_sampling

        model = self.model.clone()
        if rule is not None:
            target = torch.zeros(1, 3, self.args.latent, self.args.latent)
            settings = GuidanceSettings(rule=rule, weight=0.02, start_percent=0.0, end_percent=1.0,
                                        gradient_checkpointing=checkpointing,
                                        terms=[GuidanceTerm(head=self.head, target=target, weight=0.5)])
            HostGuidance(settings).install(model)
        stamps: list[float] = []
        head_time = [0.0]
        original_loss = guided_sampling.guidance_loss

        def timed_loss(*a, **k):
            sync(self.device)
            start = time.perf_counter()
            result = original_loss(*a, **k)
            sync(self.device)
            head_time[0] += time.perf_counter() - start
            return result

        def callback(*_args) -> None:
            sync(self.device)
            stamps.append(time.perf_counter())

        steps = self.args.warmup + self.args.repeats
        noise = comfy.sample.prepare_noise(self.latent, 0)
        probe = MemoryProbe(self.device)
        guided_sampling.guidance_loss = timed_loss
        try:
            with torch.inference_mode(), probe.measure():
                sync(self.device)
                stamps.append(time.perf_counter())
                comfy.sample.sample(model, noise, steps, self.args.cfg, "euler", "normal", self.positive,
                                    self.negative, self.latent, callback=callback, disable_pbar=True, seed=0)
        finally:
            guided_sampling.guidance_loss = original_loss
        durations = [b - a for a, b in zip(stamps, stamps[1:])][self.args.warmup:]
        share = head_time[0] / steps  # the head runs once per guided step (all steps guided)
        return Measurement(statistics.median(durations), probe.peak, share if rule else 0.0)


# -- core path (no host) --------------------------------------------------------------------


class CoreBench:
    """The same steps on diffusers' U-Net through the core (features, head, loss, update)."""

    def __init__(self, args) -> None:
        from readout_core.diffusers_adapter.feature_modules import diffusers_feature_modules, diffusers_layout

        self.args, self.device, self.dtype = args, torch.device(args.device), DTYPES[args.dtype]
        self.unet = diffusers_unet(args.layout, self.device, self.dtype)
        self.modules = diffusers_feature_modules(self.unet)
        self.head = spatial_head(diffusers_layout(self.unet, args.layout).dims, args.layout, self.device,
                                 self.unet.time_embedding.linear_2.out_features)
        context = 768 if args.layout == "sd15" else 2048
        generator = torch.Generator().manual_seed(1)
        batch = args.batch
        self.context = torch.cat([torch.zeros(batch, 77, context), torch.randn(batch, 77, context, generator=generator)])
        self.context = self.context.to(self.device, self.dtype)
        self.added = None
        if args.layout == "sdxl":
            self.added = {"text_embeds": torch.zeros(2 * batch, 1280, device=self.device, dtype=self.dtype),
                          "time_ids": torch.zeros(2 * batch, 6, device=self.device, dtype=self.dtype)}

    def _unet(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        both = torch.cat([x, x]).to(self.dtype)
        return self.unet(both, t, self.context, added_cond_kwargs=self.added).sample.float()

    def _guided_eps(self, x: torch.Tensor, t: torch.Tensor, rule: str, head_time: list[float]) -> torch.Tensor:
        from readout_core.diffusers_adapter.feature_modules import diffusers_head_embedding
        from readout_core.features import DecoderFeatureCapture
        from readout_core.losses import spatial_guidance_loss

        batch = x.shape[0]
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            with DecoderFeatureCapture(self.modules) as capture:
                eps = self._unet(x_in, t)
            sync(self.device)
            start = time.perf_counter()
            features = capture.collected(tuple(x.shape[-2:])).float()
            branches = features[:batch] if rule == "gradient" else features
            emb = diffusers_head_embedding(self.unet, t, branches.shape[0]).float()
            readout = self.head(branches, emb)
            loss = spatial_guidance_loss(readout, torch.zeros(1, 3, *x.shape[-2:], device=x.device), (-1, 1), (-1, 1))
            sync(self.device)
            head_time[0] += time.perf_counter() - start
            (grad,) = torch.autograd.grad(loss, x_in)
        if rule == "gradient":
            return eps.detach() + 0.02 * grad.repeat(2, 1, 1, 1)
        moved = x - 0.02 * grad.sign()
        with torch.no_grad():
            return self._unet(moved, t)

    def run(self, rule: str | None, checkpointing: bool) -> Measurement:
        if checkpointing:
            self.unet.enable_gradient_checkpointing()
        else:
            self.unet.disable_gradient_checkpointing()
        x = torch.randn(self.args.batch, 4, self.args.latent, self.args.latent, device=self.device)
        t = torch.tensor([500], device=self.device)
        durations, head_time = [], [0.0]
        probe = MemoryProbe(self.device)
        with probe.measure():
            for _ in range(self.args.warmup + self.args.repeats):
                sync(self.device)
                start = time.perf_counter()
                with torch.no_grad():
                    eps = self._guided_eps(x, t, rule, head_time) if rule else self._unet(x, t)
                    uncond, cond = eps.chunk(2)
                    x = x - 0.01 * (uncond + self.args.cfg * (cond - uncond))
                sync(self.device)
                durations.append(time.perf_counter() - start)
        steps = self.args.warmup + self.args.repeats
        return Measurement(statistics.median(durations[self.args.warmup:]), probe.peak,
                           head_time[0] / steps if rule else 0.0)


# -- report -----------------------------------------------------------------------------------


def make_bench(args):
    try:
        from host_support import find_host

        host, _sentence = find_host()
    except ImportError:  # the tests folder is missing: core path
        host = None
    if host is not None and not args.core:
        sys.path.insert(0, str(host))
        import comfy.cli_args

        comfy.cli_args.args.cpu = args.device == "cpu"
        if args.mode != "spatial":
            bench = ReferenceBench(args)
            return bench, f"ComfyUI host at {host}, batch [reference, {bench.edits} edit(s)], {bench.cfg_label()}"
        return HostBench(args), f"ComfyUI host at {host}, CFG {args.cfg}"
    if args.mode != "spatial":
        raise SystemExit(f"--mode {args.mode} runs the pack's reference sampler inside a ComfyUI host; set "
                         "COMFYUI_PATH to a ComfyUI folder (and drop --core).")
    return CoreBench(args), f"core path (diffusers U-Net, no host), CFG {args.cfg}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["spatial", *MODES], default="spatial",
                        help="spatial guidance, or a reference process (drag, drag-real, variations)")
    parser.add_argument("--layout", choices=["sd15", "sdxl"], default="sd15")
    parser.add_argument("--latent", type=int, default=32, help="latent height = width (64 for 512 px SD1.5)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--rules", default="gradient,official", help="comma-separated update rules")
    parser.add_argument("--checkpointing", default="off,on", help="comma-separated: off, on")
    parser.add_argument("--cfg", type=float, default=7.5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--core", action="store_true", help="use the core path even when a host is found")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    bench, path = make_bench(args)
    print(f"# readout guidance step cost — {args.mode}, {args.layout}, latent {args.latent}, batch {args.batch}, "
          f"{args.device}, "
          f"{args.dtype}, {path}; torch {torch.__version__}, {os.cpu_count()} CPU threads")
    unguided = bench.run(None, False)
    header = ("| rule | checkpointing | unguided step s | guided step s | time × | unguided peak MiB | guided peak MiB "
              "| memory × | guidance extra MiB | head share | whole edit s (extrapolated) |")
    print(header)
    print("|---" * 11 + "|")
    first = None
    for rule in args.rules.split(","):
        for checkpointing in (c == "on" for c in args.checkpointing.split(",")):
            guided = bench.run(rule, checkpointing)
            time_ratio = guided.step_seconds / unguided.step_seconds
            memory_ratio = guided.peak_bytes / unguided.peak_bytes
            first = first or (time_ratio, memory_ratio)
            print(f"| {rule} | {'on' if checkpointing else 'off'} | {unguided.step_seconds:.3f} | "
                  f"{guided.step_seconds:.3f} | {time_ratio:.2f} | {unguided.peak_bytes / 2**20:.0f} | "
                  f"{guided.peak_bytes / 2**20:.0f} | {memory_ratio:.2f} | "
                  f"{(guided.peak_bytes - unguided.peak_bytes) / 2**20:.0f} | "
                  f"{f'{guided.head_seconds / guided.step_seconds:.1%}' if args.mode == 'spatial' else 'n/a'} | "
                  f"{whole_edit_seconds(guided.step_seconds, unguided.step_seconds):.1f} |", flush=True)
    print(f"guided/unguided step time: {first[0]:.2f}×  peak memory: {first[1]:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
