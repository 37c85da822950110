"""The guidance benchmark runs end to end (on a tiny U-Net here; the real runs use full size)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_guidance  # noqa: E402


def tiny_unet(layout, device, dtype):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(block_out_channels=(32, 64, 64, 64), cross_attention_dim=768, attention_head_dim=8,
                                norm_num_groups=32, layers_per_block=2)
    return unet.to(device=device, dtype=dtype).eval().requires_grad_(False)


def test_benchmark_prints_a_table_and_the_summary_line(monkeypatch, capsys):
    monkeypatch.setattr(bench_guidance, "diffusers_unet", tiny_unet)
    assert bench_guidance.main(["--core", "--latent", "8", "--repeats", "1", "--checkpointing", "off,on"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| gradient") or line.startswith("| official")]
    assert len(rows) == 4
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2]) > 0 and float(cells[3]) > 0 and float(cells[5]) > 0 and cells[9].endswith("%")
        unguided, guided = float(cells[2]), float(cells[3])
        assert float(cells[10]) == pytest.approx(25 * guided + 25 * unguided, rel=0.02, abs=0.06)
    assert re.fullmatch(r"guided/unguided step time: \d+\.\d\d×  peak memory: \d+\.\d\d×", out[-1])


def test_benchmark_refuses_unknown_options():
    with pytest.raises(SystemExit):
        bench_guidance.main(["--layout", "sd3"])


def test_whole_edit_is_extrapolated_from_the_released_window():
    assert bench_guidance.whole_edit_seconds(3.0, 1.0) == 25 * 3.0 + 25 * 1.0
    assert bench_guidance.whole_edit_seconds(3.0, 1.0, guide_every=2) == 13 * 3.0 + 37 * 1.0


def test_reference_modes_need_a_host(capsys):
    with pytest.raises(SystemExit, match="COMFYUI_PATH"):
        bench_guidance.main(["--core", "--mode", "drag"])


def test_cpu_peak_memory_leaves_out_what_earlier_work_freed():
    import torch
    from measuring import MemoryProbe

    def rss_mib() -> float:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096 / 2**20

    baseline = rss_mib()
    freed = [torch.ones(100_000) for _ in range(1250)]  # ~480 MiB in small blocks that malloc may keep
    del freed
    probe = MemoryProbe(torch.device("cpu"))
    with probe.measure():
        torch.ones(10)
    assert probe.peak / 2**20 < baseline + 150  # whatever malloc kept of the 480 MiB was handed back
