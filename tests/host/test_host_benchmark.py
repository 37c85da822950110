"""The reference-process benchmark runs end to end through the host's reference sampler (on a
tiny U-Net with tiny heads here; the real runs build the full-size layouts and the published
head shapes)."""

from __future__ import annotations

import sys

from host_support import PACK_DIR, require_host

sys.path.insert(0, str(PACK_DIR / "benchmarks"))

import bench_guidance  # noqa: E402  (puts the pack first on sys.path: require_host puts the host back in front)
import reference_modes  # noqa: E402

HOST = require_host()

from tiny_host import conds, random_head, tiny_host_model  # noqa: E402


def test_real_image_drag_benchmark_states_its_per_sample_cfg(monkeypatch, capsys):
    monkeypatch.setattr(reference_modes, "host_model", lambda layout, device, dtype: tiny_host_model(layout, dtype=dtype))
    monkeypatch.setattr(reference_modes, "host_conds", lambda layout, batch, size_px: conds(layout, batch))
    monkeypatch.setattr(reference_modes, "published_shape_head", lambda kind, layout, device: random_head(layout, kind, 0))
    assert bench_guidance.main(["--mode", "drag-real", "--latent", "8", "--warmup", "0", "--repeats", "1",
                                "--rules", "official", "--checkpointing", "off,on"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "batch [reference, 1 edit(s)], CFG 1.0 reference / 3.5 edits" in lines[0]
    rows = [line.split(" | ") for line in lines if line.startswith("| official")]
    assert [row[1] for row in rows] == ["off", "on"]
    assert all(float(row[3]) > 0 and float(row[4]) > 0 for row in rows)  # guided step s, time ×
