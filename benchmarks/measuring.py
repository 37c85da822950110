"""Timing and peak-memory helpers shared by the guidance benchmarks."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Measurement:
    step_seconds: float
    peak_bytes: int
    head_seconds: float = 0.0


def release_freed_heap() -> None:
    """Hand memory that earlier measurements freed back to the OS (glibc's ``malloc_trim``), so
    that a polled RSS peak counts what this block holds, not what the allocator kept from before."""
    name = ctypes.util.find_library("c")
    if name:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


class MemoryProbe:
    """Peak memory inside a block: polled process RSS on CPU, the allocator's peak on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak = device, 0

    @contextmanager
    def measure(self) -> Iterator["MemoryProbe"]:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            yield self
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
            return
        release_freed_heap()
        stop, page = threading.Event(), os.sysconf("SC_PAGE_SIZE")
        self.peak = 0

        def poll() -> None:
            while not stop.is_set():
                with open("/proc/self/statm") as statm:
                    self.peak = max(self.peak, int(statm.read().split()[1]) * page)
                stop.wait(0.002)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
