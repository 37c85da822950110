"""Torch's thread count in the pack's programs: the idle usable cores, at least one, OMP_NUM_THREADS wins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from readout_core import cpu_threads

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("cores", "busy", "threads"), [(2, 0, 2), (2, 1, 1), (2, 5, 1), (16, 3, 13), (1, 0, 1)])
def test_threads_are_the_idle_usable_cores(cores, busy, threads):
    assert cpu_threads.choose_threads(cores, busy) == threads


def test_cgroup_quota_caps_the_cores(tmp_path):
    assert cpu_threads.cgroup_cpu_quota(tmp_path) is None  # no cgroup files: no quota
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_threads.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_threads.cgroup_cpu_quota(tmp_path) == 2  # 1.5 CPUs: two threads can still use it
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_threads.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert cpu_threads.cgroup_cpu_quota(tmp_path) == 3


def test_usable_cores_follow_the_affinity_mask():
    assert 1 <= cpu_threads.usable_cores() <= len(os.sched_getaffinity(0))
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " \
           "from readout_core.cpu_threads import usable_cores; print(usable_cores())"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_busy_cores_count_the_other_running_processes(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.92 1.15 0.56 3/101 14222\n")
    assert cpu_threads.busy_cores(loadavg) == 2  # 3 running, one of them this process
    loadavg.write_text("0.01 0.02 0.00 1/99 100\n")
    assert cpu_threads.busy_cores(loadavg) == 0
    assert cpu_threads.busy_cores(tmp_path / "missing") == 0


def test_omp_num_threads_overrides_the_choice(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(cpu_threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(cpu_threads, "busy_cores", lambda: 0)
    try:
        torch.set_num_threads(1)
        monkeypatch.setenv(cpu_threads.OVERRIDE_VARIABLE, "1")
        assert cpu_threads.configure_torch_threads() == 1  # left as OMP_NUM_THREADS made it
        monkeypatch.delenv(cpu_threads.OVERRIDE_VARIABLE)
        assert cpu_threads.configure_torch_threads() == 4
    finally:
        torch.set_num_threads(before)


def test_omp_num_threads_reaches_a_command():
    code = ("import sys, torch; from readout_core import cpu_threads; from readout_core.__main__ import main; "
            "cpu_threads.usable_cores = lambda: 2; cpu_threads.busy_cores = lambda: 0; "  # would choose 2
            "main(sys.argv[1:]); print(torch.get_num_threads())")
    head = "readout_core/tiny_world/weights/tiny_depth.safetensors"
    result = subprocess.run([sys.executable, "-c", code, "info", head], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("\n1")
