"""The pack's own error types: every deliberate failure says what went wrong and what to do."""

from __future__ import annotations


class ReadoutError(Exception):
    """Base class of every error the pack raises on purpose.

    Messages are written for ComfyUI users: they name the input or file at fault and
    say what to change.
    """


class HeadFileError(ReadoutError):
    """A head file is missing, unreadable, unsafe, or not a readout head."""


class HeadConfigError(ReadoutError):
    """A head's configuration or weights do not describe a valid readout head."""


class FeatureError(ReadoutError):
    """Decoder features do not have the layout a head or layer map expects."""


class LossInputError(ReadoutError):
    """Inputs to a loss have shapes or values it cannot use."""
