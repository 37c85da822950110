"""The one JSON reader every parser of user text uses: bounded, and failing only with the pack's errors.

`read_json` refuses, with the caller's `ReadoutError` subclass and a message saying what
to change: text that is not a string, text longer than the caller's bound, nesting deeper
than `MAX_DEPTH` (checked before the decoder sees the text, so no depth can exhaust the
stack), invalid JSON, the ``NaN`` / ``Infinity`` literals, numbers that overflow to
infinity and integers of more than `MAX_INT_DIGITS` digits. What it returns is plain
JSON data (dict, list, str, int, float, bool, None) nested at most `MAX_DEPTH` deep.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import ReadoutError

MAX_DEPTH = 32
"""Deepest nesting of lists and objects accepted (the pack's formats need at most 5)."""
MAX_INT_DIGITS = 18
"""Longest integer accepted, in digits (about 10¹⁸: far beyond any size or coordinate)."""

_CHUNK = 64 * 1024


def read_json(text: Any, what: str, error: type[ReadoutError], max_chars: int, hint: str = "") -> Any:
    """Parse ``text`` as JSON, or raise ``error`` naming ``what`` (e.g. "The drag points") and adding ``hint``."""
    tail = f" {hint}" if hint else ""
    if not isinstance(text, str):
        raise error(f"{what} must be text, got {type(text).__name__}.{tail}")
    if len(text) > max_chars:
        raise error(f"{what} is {len(text):,} characters long; at most {max_chars:,} are read.{tail}")
    if nesting_depth(text) > MAX_DEPTH:
        raise error(f"{what} is nested more than {MAX_DEPTH} levels deep (lists inside lists); no accepted "
                    f"format needs that.{tail}")

    def refuse_constant(name: str) -> Any:
        raise error(f"{what} contains {name}, which is not a number; use finite numbers.{tail}")

    def finite_float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise error(f"{what} contains {literal[:20]}, which is too large to be a number; use finite numbers.{tail}")
        return value

    def bounded_int(literal: str) -> int:
        if len(literal.lstrip("-")) > MAX_INT_DIGITS:
            raise error(f"{what} contains an integer of {len(literal.lstrip('-'))} digits; at most "
                        f"{MAX_INT_DIGITS} are read.{tail}")
        return int(literal)

    try:
        return json.loads(text, parse_constant=refuse_constant, parse_float=finite_float, parse_int=bounded_int)
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).{tail}") from None


def nesting_depth(text: str) -> int:
    """Deepest nesting of ``[`` / ``{`` outside JSON strings in any prefix of ``text`` (no recursion, O(n)).

    Works through the text in chunks of `_CHUNK` bytes, so its own memory stays small. numpy is
    imported here, not with the module, so that ``python -m readout_core --help`` stays light.
    """
    import numpy as np

    step = np.zeros(256, dtype=np.int8)  # +1 for an opening bracket, -1 for a closing one
    step[[ord("["), ord("{")]] = 1
    step[[ord("]"), ord("}")]] = -1
    # Escaped backslashes and quotes are the only escapes that can move a string's end.
    plain = text.replace("\\\\", "").replace('\\"', "").encode("utf-8", "surrogatepass")
    depth = deepest = 0
    in_string = False
    for start in range(0, len(plain), _CHUNK):
        codes = np.frombuffer(plain, dtype=np.uint8, count=min(_CHUNK, len(plain) - start), offset=start)
        quotes = np.bitwise_xor.accumulate(codes == ord('"')) ^ in_string
        depths = np.cumsum(np.where(quotes, 0, step[codes]), dtype=np.int64) + depth
        deepest, depth, in_string = max(deepest, int(depths.max())), int(depths[-1]), bool(quotes[-1])
    return deepest


def check_plain_data(value: Any, what: str, error: type[ReadoutError], max_items: int = 10_000,
                     max_chars: int = 10_000) -> None:
    """Raise ``error`` unless ``value`` is JSON-like data: string-keyed dicts, lists, numbers (integers of
    at most 64 bits), strings of at most ``max_chars``, booleans and None; at most `MAX_DEPTH` deep and
    ``max_items`` values in all.

    For structures that did not come from text (an unpickled config); walks without recursion,
    so self-referencing or very deep structures are refused, not followed.
    """
    pending: list[tuple[Any, int]] = [(value, 0)]
    counted = 1
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise error(f"{what} is nested more than {MAX_DEPTH} levels deep; a readout head's config is not.")
        if isinstance(item, dict) and not all(isinstance(key, str) for key in item):
            raise error(f"{what} has a key that is not a string; a readout head's config has only string keys.")
        if isinstance(item, (dict, list, tuple)):
            counted += len(item)
            if counted > max_items:
                raise error(f"{what} holds more than {max_items:,} values; a readout head's config is far smaller.")
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
        elif isinstance(item, str) and len(item) > max_chars:
            raise error(f"{what} holds a string of {len(item):,} characters; at most {max_chars:,} are read.")
        elif isinstance(item, int) and not isinstance(item, bool) and item.bit_length() > 64:
            raise error(f"{what} holds an integer of {item.bit_length()} bits; at most 64 are read.")
        elif not (item is None or isinstance(item, (bool, int, float, str))):
            raise error(f"{what} holds a {type(item).__name__}; a readout head's config holds only numbers, strings, "
                        "lists and dicts.")
