"""Running one fuzz case under a CPU-time and memory bound.

`bounded(call)` returns what ``call`` returned, or the `ReadoutError` it raised; any other
exception propagates (so the test fails). It asserts that the call took less than
`TIME_BOUND_S` of this thread's CPU time (not wall time, so other processes on a busy machine
do not matter), allocated less than ``memory_bound`` bytes of Python objects at its peak
(tracemalloc), and grew the process's peak resident memory by less than ``rss_bound`` bytes
(tensor data, which tracemalloc does not see; Linux only, via /proc/self/clear_refs).
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

from readout_core import ReadoutError

TIME_BOUND_S = 1.0
MEMORY_BOUND = 4 * 1024 * 1024
RSS_BOUND = 32 * 1024 * 1024
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def bounded(call: Callable[[], Any], memory_bound: int = MEMORY_BOUND, rss_bound: int = RSS_BOUND) -> Any:
    """``call()`` (or the `ReadoutError` it raised), checked against the time and memory bounds."""
    rss_before = _reset_peak_rss()
    tracemalloc.start()
    start = time.thread_time()
    try:
        result = call()
    except ReadoutError as error:
        result = error
    finally:
        elapsed = time.thread_time() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < TIME_BOUND_S, f"took {elapsed:.2f} s of CPU time"
    assert peak < memory_bound, f"allocated {peak / 2**20:.1f} MiB of Python objects"
    if rss_before is not None:
        grown = _status_kib("VmHWM") * 1024 - rss_before
        assert grown < rss_bound, f"peak resident memory grew by {grown / 2**20:.1f} MiB"
    return result


def _reset_peak_rss() -> int | None:
    """Reset the kernel's peak-RSS mark; the current RSS in bytes, or None where that is not possible."""
    try:
        _CLEAR_REFS.write_text("5")
        return _status_kib("VmRSS") * 1024
    except OSError:
        return None


def _status_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} missing from {_STATUS}")
