"""Shared pytest setup: torch's CPU threads, which ComfyUI host (if any) the host tests use,
and a progress display for long tests."""

from __future__ import annotations

from typing import Callable

import pytest
from host_support import find_host

from readout_core.cpu_threads import OVERRIDE_VARIABLE, configure_torch_threads
from readout_core.progress import ProgressBar


def pytest_configure(config) -> None:
    config.torch_threads = configure_torch_threads()


def pytest_report_header(config) -> list[str]:
    _host, sentence = find_host()
    return [f"ComfyUI host: {sentence}",
            f"torch CPU threads: {config.torch_threads} (one per idle usable core; {OVERRIDE_VARIABLE} overrides)"]


@pytest.fixture
def progress(capsys) -> Callable[[int, int, str], None]:
    """``progress(done, total, note)``: a progress bar on the terminal while pytest captures the test's output."""
    bars: list[ProgressBar] = []

    def show(done: int, total: int, note: str) -> None:
        with capsys.disabled():
            if not bars:
                print()
                bars.append(ProgressBar(total, label="runs "))
            bars[0].update(done, note)
            if done == total:
                bars[0].finish()

    return show
