"""How many CPU threads torch uses in the pack's own programs (demo, evaluation, command line, tests).

Torch starts one thread per core of the machine. When other programs keep some of those
cores busy, its threads wait for each other at every operation: on a 2-core machine with
other programs busy the demo took 1164 s with 2 threads and 31 s with 1. So the
pack's programs use the cores this process may run on (its CPU affinity, capped by a cgroup
CPU quota) minus the ones other processes are running on right now, and at least one.
Setting ``OMP_NUM_THREADS`` overrides the choice (torch then uses exactly that many).
Inside ComfyUI nothing here runs: the host keeps its own settings.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch

OVERRIDE_VARIABLE = "OMP_NUM_THREADS"
LOAD_SAMPLES = 5
"""How often the number of running processes is read (20 ms apart; the median counts)."""


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota if there is one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cores, quota) if quota else cores)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Whole CPUs a cgroup quota allows (rounded up), or None without a quota (cgroup v2 and v1)."""
    for path, parse in ((root / "cpu.max", _v2_quota), (root / "cpu" / "cpu.cfs_quota_us", _v1_quota)):
        try:
            quota = parse(path)
        except (OSError, ValueError):
            continue
        if quota:
            return max(1, -(-quota[0] // quota[1]))
    return None


def _v2_quota(path: Path) -> tuple[int, int] | None:
    limit, period = path.read_text().split()
    return None if limit == "max" else (int(limit), int(period))


def _v1_quota(path: Path) -> tuple[int, int] | None:
    limit = int(path.read_text())
    return None if limit <= 0 else (limit, int((path.parent / "cpu.cfs_period_us").read_text()))


def busy_cores(loadavg: Path = Path("/proc/loadavg")) -> int:
    """Processes other than this one running right now (0 where the system does not say)."""
    counts = []
    for sample in range(LOAD_SAMPLES):
        try:
            running = int(loadavg.read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(running - 1)  # this process is running while it reads
        if sample < LOAD_SAMPLES - 1:
            time.sleep(0.02)
    return max(0, int(statistics.median(counts)))


def choose_threads(cores: int, busy: int) -> int:
    """Threads for torch: the usable cores that no other process is running on, at least one."""
    return max(1, cores - busy)


def configure_torch_threads() -> int:
    """Set torch's thread count for this process (unless ``OMP_NUM_THREADS`` is set); returns the count."""
    if not os.environ.get(OVERRIDE_VARIABLE):
        torch.set_num_threads(choose_threads(usable_cores(), busy_cores()))
    return torch.get_num_threads()
