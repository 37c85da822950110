"""What the nodes' ``validate_inputs`` return: True, or a sentence saying what to fix.

The host calls ``validate_inputs`` before it runs a prompt, so a bad text or setting is
reported on its node at once, with the parser's own message, instead of mid-sampling.
A value linked from another node arrives as None and is checked when the node runs.
"""

from __future__ import annotations

from typing import Any, Callable

from readout_core.errors import ReadoutError


def parse_problem(parse: Callable[[Any], object], value: Any) -> bool | str:
    """True if ``parse(value)`` succeeds (or the value is linked); otherwise its `ReadoutError` message."""
    if value is None:
        return True
    try:
        parse(value)
    except ReadoutError as error:
        return str(error)
    return True


def window_problem(start_percent: float | None, end_percent: float | None) -> bool | str:
    """True, or why the guidance window cannot work (start after end)."""
    if start_percent is None or end_percent is None:
        return True
    if start_percent > end_percent:
        return (f"start_percent ({start_percent}) is after end_percent ({end_percent}); guidance would never act. "
                "Use e.g. 0.0 → 0.5 (the released window).")
    return True


def first_problem(*results: bool | str) -> bool | str:
    """The first problem among several checks, or True."""
    return next((result for result in results if result is not True), True)
