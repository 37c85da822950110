"""Soak test on a real server: 20 prompts through ``/prompt`` (guided spatial, drag and unguided
KSampler runs) with interrupts and malformed inputs in between.

Afterwards every repeated prompt gives a latent bit-identical to its first run, the server
still answers, and its resident memory grows by less than 5 % from the 5th to the 20th prompt.
The model is a tiny SD1.5-layout U-Net (8×8 latents, 4 steps) that a test-only node in the
server's ``custom_nodes`` builds; the heads are tiny random heads saved as head files in the
server's ``models/readout_heads``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from host_support import PACK_DIR, require_host

HOST = require_host()

from host_server import get_json, running_server  # noqa: E402
from tiny_host import random_head, tiny_host_model, tiny_spatial_head  # noqa: E402

from readout_core import save_head  # noqa: E402
from readout_core.host_adapter import host_decoder_layout  # noqa: E402

PROMPTS = 20
PROMPT_TIMEOUT = 120.0
SOAK_TIMEOUT = 600.0
RSS_GROWTH_LIMIT = 0.05
INTERRUPT_EVERY = 5  # the 5th, 10th, ... prompt is interrupted while it runs
MALFORMED_EVERY = 4  # after every 4th prompt a malformed one is refused
MODEL_SEED = 3

TINY_MODEL_NODE = f'''
"""Test-only: the tiny SD1.5-layout model and conditioning of the soak test."""
import sys

for folder in ({str(PACK_DIR)!r}, {str(PACK_DIR / "tests" / "host")!r}):
    if folder not in sys.path:
        sys.path.append(folder)


class SoakTinyModel:
    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING")
    FUNCTION = "build"
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"seed": ("INT", {{"default": 0, "min": 0, "max": 1000}})}}}}

    def build(self, seed):
        from tiny_host import conds, make_gaussian_denoiser, tiny_host_model

        model = tiny_host_model("sd15", seed=seed)
        make_gaussian_denoiser(model, unet_share=0.1)
        positive, negative = conds("sd15")
        return (model, positive, negative)


NODE_CLASS_MAPPINGS = {{"SoakTinyModel": SoakTinyModel}}
'''


def write_models(base: Path) -> None:
    """The heads (for the tiny model's layout) and the test-only model node into the server's folders."""
    patcher = tiny_host_model("sd15", seed=MODEL_SEED)
    layout = host_decoder_layout(patcher.model.diffusion_model)
    heads = base / "models" / "readout_heads"
    save_head(tiny_spatial_head(patcher, seed=1), heads / "soak_depth.safetensors")
    save_head(random_head(layout, "correspondence", 2), heads / "soak_correspondence.safetensors")
    save_head(random_head(layout, "appearance", 3), heads / "soak_appearance.safetensors")
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / "soak_tiny_model.py").write_text(TINY_MODEL_NODE)


def base_graph(prefix: str) -> dict:
    return {
        "model": {"class_type": "SoakTinyModel", "inputs": {"seed": MODEL_SEED}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "image": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 8421504}},
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["sampler", 0], "filename_prefix": f"soak/{prefix}"}},
    }


def spatial_prompt(seed: int, steps: int = 4, head_name: str = "soak_depth.safetensors") -> dict:
    graph = base_graph(f"spatial_{seed}")
    graph["head"] = {"class_type": "ReadoutGuidance_LoadHead", "inputs": {"head_name": head_name}}
    graph["target"] = {"class_type": "ReadoutGuidance_SpatialTarget",
                       "inputs": {"head": ["head", 0], "image": ["image", 0], "weight": 0.5}}
    graph["sampler"] = {"class_type": "ReadoutGuidance_KSampler", "inputs": {
        "model": ["model", 0], "seed": seed, "steps": steps, "cfg": 2.0, "sampler_name": "euler",
        "scheduler": "normal", "positive": ["model", 1], "negative": ["model", 2], "latent_image": ["latent", 0],
        "terms": ["target", 0], "update_rule": "official", "guidance_weight": 0.05, "start_percent": 0.0,
        "end_percent": 1.0, "denoise": 1.0}}
    return graph


def drag_prompt(seed: int, points: str = '{"pairs": [{"handle": [16, 24], "target": [40, 24]}]}') -> dict:
    graph = base_graph(f"drag_{seed}")
    graph["correspondence"] = {"class_type": "ReadoutGuidance_LoadHead",
                               "inputs": {"head_name": "soak_correspondence.safetensors"}}
    graph["appearance"] = {"class_type": "ReadoutGuidance_LoadHead", "inputs": {"head_name": "soak_appearance.safetensors"}}
    graph["points"] = {"class_type": "ReadoutGuidance_DragPoints", "inputs": {"image": ["image", 0], "points": points}}
    graph["drag"] = {"class_type": "ReadoutGuidance_DragGuidance", "inputs": {
        "correspondence_head": ["correspondence", 0], "appearance_head": ["appearance", 0], "points": ["points", 0],
        "correspondence_weight": 1.0, "appearance_weight": 1.0}}
    graph["sampler"] = {"class_type": "ReadoutGuidance_ReferenceSampler", "inputs": {
        "model": ["model", 0], "preset": "custom", "seed": seed, "steps": 4, "cfg": 1.0, "reference_cfg": 1.0,
        "sampler_name": "ddim", "scheduler": "ddim_uniform", "positive": ["model", 1], "negative": ["model", 2],
        "latent_image": ["latent", 0], "terms": ["drag", 0], "edit_start": "reference noise (drag)", "variations": 1,
        "variation_seed": 1, "update_rule": "official", "guidance_weight": 0.3, "start_percent": 0.0,
        "end_percent": 0.5, "recurrent_steps": 1}}
    return graph


def plain_prompt(seed: int) -> dict:
    graph = base_graph(f"plain_{seed}")
    graph["sampler"] = {"class_type": "KSampler", "inputs": {
        "model": ["model", 0], "seed": seed, "steps": 4, "cfg": 2.0, "sampler_name": "euler", "scheduler": "normal",
        "positive": ["model", 1], "negative": ["model", 2], "latent_image": ["latent", 0], "denoise": 1.0}}
    return graph


CASES = {"spatial": spatial_prompt, "drag": drag_prompt, "plain": plain_prompt}
MALFORMED = [
    ("bad drag points", drag_prompt(0, points='{"handles": [[1, 2]]}'), "1 handles but 0 targets"),
    ("missing head", spatial_prompt(0, head_name="no_such_head.safetensors"), "no_such_head.safetensors"),
]


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read()
            return response.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def queue(url: str, prompt: dict) -> str:
    status, answer = post(f"{url}/prompt", {"prompt": prompt, "client_id": "soak"})
    assert status == 200, answer
    return answer["prompt_id"]


def wait_for(url: str, prompt_id: str) -> dict:
    deadline = time.monotonic() + PROMPT_TIMEOUT
    while time.monotonic() < deadline:
        history = get_json(f"{url}/history/{prompt_id}")
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
            entry = history[prompt_id]
            if entry["status"].get("status_str") in ("success", "error"):
                return entry
        time.sleep(0.1)
    raise AssertionError(f"prompt {prompt_id} did not finish in {PROMPT_TIMEOUT} s")


def messages(entry: dict) -> dict:
    return {name: data for name, data in entry["status"].get("messages", [])}


def server_pid(base: Path) -> int:
    """The process id of the ComfyUI server whose base directory is ``base``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            arguments = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(base).encode() in arguments and any(a.endswith(b"main.py") for a in arguments):
            return int(proc.name)
    raise AssertionError(f"no server process with base directory {base}")


def resident_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def saved_latent(base: Path, prefix: str) -> torch.Tensor:
    """The latent SaveLatent last wrote as output/soak/<prefix>_<counter>_.latent."""
    from safetensors.torch import load_file

    newest = max((base / "output" / "soak").glob(f"{prefix}_*.latent"))  # the counter is zero-padded
    return load_file(str(newest))["latent_tensor"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy-soak")
    write_models(base)
    with running_server(HOST, base) as url:
        yield {"url": url, "base": base, "pid": server_pid(base)}


def interrupt_while_running(url: str, prompt_id: str) -> dict:
    deadline = time.monotonic() + PROMPT_TIMEOUT
    while time.monotonic() < deadline:
        running = get_json(f"{url}/queue")["queue_running"]
        if any(item[1] == prompt_id for item in running):
            time.sleep(0.3)  # let sampling start
            post(f"{url}/interrupt", {})
            return wait_for(url, prompt_id)
        time.sleep(0.05)
    raise AssertionError(f"prompt {prompt_id} never started")


def test_soak_twenty_prompts_with_interrupts_and_malformed_inputs(server):
    url, base, pid = server["url"], server["base"], server["pid"]
    start = time.monotonic()
    schedule = ["spatial", "drag", "plain"]
    first_runs: dict[tuple[str, int], torch.Tensor] = {}
    repeats, interrupts, refused, rss = 0, 0, 0, {}
    for number in range(1, PROMPTS + 1):
        assert time.monotonic() - start < SOAK_TIMEOUT, f"the soak ran past {SOAK_TIMEOUT} s"
        if number % INTERRUPT_EVERY == 0:
            entry = interrupt_while_running(url, queue(url, spatial_prompt(seed=100 + number, steps=400)))
            assert "execution_interrupted" in messages(entry), messages(entry).keys()
            interrupts += 1
        else:
            kind = schedule[number % 3]
            seed = (number // 3) % 2  # each (kind, seed) comes back several times, other prompts in between
            entry = wait_for(url, queue(url, CASES[kind](seed)))
            assert entry["status"]["status_str"] == "success", messages(entry).get("execution_error", {}).get("exception_message")
            assert "sampler" not in messages(entry).get("execution_cached", {}).get("nodes", []), "sampler not rerun"
            latent = saved_latent(base, f"{kind}_{seed}")
            key = (kind, seed)
            if key in first_runs:
                assert torch.equal(latent, first_runs[key]), f"{kind} seed {seed}: prompt {number} differs from its first run"
                repeats += 1
            else:
                assert torch.isfinite(latent).all()
                first_runs[key] = latent
        if number % MALFORMED_EVERY == 0:
            name, prompt, expected = MALFORMED[(number // MALFORMED_EVERY) % len(MALFORMED)]
            status, answer = post(f"{url}/prompt", {"prompt": prompt, "client_id": "soak"})
            assert status == 400, (name, status, answer)
            assert expected in json.dumps(answer), (name, answer)
            refused += 1
        if number in (5, PROMPTS):
            rss[number] = resident_kib(pid)
    stats = get_json(f"{url}/system_stats")
    assert "system" in stats and "devices" in stats
    growth = rss[PROMPTS] / rss[5] - 1
    print(f"\nsoak: {PROMPTS} prompts in {time.monotonic() - start:.1f} s: {len(first_runs)} first runs, "
          f"{repeats} repeats bit-identical, {interrupts} interrupted, {refused} malformed refused (400); "
          f"server VmRSS {rss[5] / 1024:.1f} MiB after prompt 5, {rss[PROMPTS] / 1024:.1f} MiB after prompt "
          f"{PROMPTS} ({growth:+.2%}); /system_stats answers")
    assert repeats >= 8 and interrupts == PROMPTS // INTERRUPT_EVERY and refused == PROMPTS // MALFORMED_EVERY
    assert growth < RSS_GROWTH_LIMIT, f"resident memory grew {growth:.2%} from prompt 5 to {PROMPTS}"
