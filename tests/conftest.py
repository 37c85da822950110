"""Shared pytest setup: report which ComfyUI host (if any) the host tests use."""

from __future__ import annotations

from host_support import find_host


def pytest_report_header(config) -> str:
    _host, sentence = find_host()
    return f"ComfyUI host: {sentence}"
