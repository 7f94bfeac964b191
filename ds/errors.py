"""Training's own error, and reducing an exception to the one line a user's
error message can quote (no torch here, so error paths load fast)."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message (not a library's multi-line dump), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run diverged."""


class DeviceError(ValueError):
    """The configured device does not exist on this machine."""


class CheckpointError(ValueError):
    """A saved model cannot be read, built or evaluated on this data."""
