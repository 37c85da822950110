"""An independent, from-the-spec model of the published heads, for parity tests.

Written from the key layout and forward pass of the authors' released heads and code, with
plain functional ops, so that the pack's `ReadoutHead` is checked against something it does not share code with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SD15_DIMS = [1280] * 6 + [640] * 3 + [320] * 3
SDXL_DIMS = [1280] * 3 + [640] * 3 + [320] * 3
GROUPS = 32


def published_state_dict(
    dims: list[int],
    projection_dim: int = 384,
    emb_dim: int = 1280,
    output_channels: int | None = None,
    sequential: bool = False,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random weights under the released key names and shapes."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.05) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    p, b = projection_dim, projection_dim // 4
    state: dict[str, torch.Tensor] = {"mixing_weights": rand(len(dims), scale=0.5)}
    for layer, channels in enumerate(dims):
        prefix = f"bottleneck_layers.{layer}." + ("0." if sequential else "")
        convs = {"conv1": (b, channels, 1), "conv2": (b, b, 3), "conv3": (p, b, 1)}
        if channels != p:
            convs["shortcut"] = (p, channels, 1)
        for name, (out_c, in_c, k) in convs.items():
            state[f"{prefix}{name}.weight"] = rand(out_c, in_c, k, k, scale=(2.0 / (in_c * k * k)) ** 0.5)
            state[f"{prefix}{name}.norm.weight"] = 1 + rand(out_c, scale=0.1)
            state[f"{prefix}{name}.norm.bias"] = rand(out_c, scale=0.1)
        state[f"{prefix}emb_layers.weight"] = rand(b, emb_dim, scale=0.03)
        state[f"{prefix}emb_layers.bias"] = rand(b, scale=0.1)
    if output_channels:
        state["output_head.0.weight"] = rand(128, p, 3, 3, scale=0.02)
        state["output_head.0.bias"] = rand(128)
        state["output_head.2.weight"] = rand(32, 128, 3, 3, scale=0.03)
        state["output_head.2.bias"] = rand(32)
        state["output_head.4.weight"] = rand(output_channels, 32, 1, 1, scale=0.2)
        state["output_head.4.bias"] = rand(output_channels)
    return state


def published_config(
    dims: list[int],
    model_id: str = "runwayml/stable-diffusion-v1-5",
    output_channels: int | None = None,
    output_act: bool = True,
    sequential: bool = False,
    control_type: str | None = None,
    run_name: str = "",
    projection_dim: int = 384,
) -> dict:
    """A training config shaped like the released ones (primitives only)."""
    agg: dict = {"use_output_head": bool(output_channels), "bottleneck_sequential": sequential}
    if output_channels:
        agg["output_head_channels"] = output_channels
        if not output_act:
            agg["output_head_act"] = False
    config = {
        "model_id": model_id,
        "projection_dim": projection_dim,
        "dims": list(dims),
        "save_timestep": [0],
        "num_timesteps": 1000,
        "aggregation_kwargs": agg,
        "wandb_kwargs": {"entity": "x", "project": "readout_training", "name": run_name},
        "lr": 1e-3,
        "max_steps": 5000,
    }
    if control_type:
        config["dataset_args"] = {"control_type": control_type}
    return config


def _conv_norm(state: dict, prefix: str, x: torch.Tensor, padding: int) -> torch.Tensor:
    y = F.conv2d(x, state[prefix + ".weight"], padding=padding)
    return F.group_norm(y, GROUPS, state[prefix + ".norm.weight"], state[prefix + ".norm.bias"], eps=1e-5)


def spec_forward(
    state: dict[str, torch.Tensor],
    dims: list[int],
    features: torch.Tensor,
    emb: torch.Tensor | None,
    sequential: bool = False,
    output_act: bool = True,
) -> torch.Tensor:
    """The released head forward, written out with functional ops, in float64."""
    state = {k: v.double() for k, v in state.items()}
    features = features.double()
    emb = emb.double() if emb is not None else None
    weights = torch.softmax(state["mixing_weights"], dim=0)
    total = 0
    start = 0
    for layer, channels in enumerate(dims):
        x = features[:, start : start + channels]
        start += channels
        pre = f"bottleneck_layers.{layer}." + ("0." if sequential else "")
        h = torch.relu(_conv_norm(state, pre + "conv1", x, 0))
        if emb is not None and not sequential:
            bias = torch.relu(emb @ state[pre + "emb_layers.weight"].T + state[pre + "emb_layers.bias"])
            h = h + bias[:, :, None, None]
        h = torch.relu(_conv_norm(state, pre + "conv2", h, 1))
        h = _conv_norm(state, pre + "conv3", h, 0)
        skip = _conv_norm(state, pre + "shortcut", x, 0) if pre + "shortcut.weight" in state else x
        total = total + weights[layer] * torch.relu(h + skip)
    if "output_head.0.weight" not in state:
        return total
    y = F.silu(F.conv2d(total, state["output_head.0.weight"], state["output_head.0.bias"], padding=1))
    y = F.silu(F.conv2d(y, state["output_head.2.weight"], state["output_head.2.bias"], padding=1))
    y = F.conv2d(y, state["output_head.4.weight"], state["output_head.4.bias"])
    return torch.tanh(y) if output_act else y
