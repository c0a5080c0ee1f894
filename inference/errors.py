"""Errors raised by the inference package.

One root, :class:`InferenceError`, carrying a stable ``code`` (mapped to HTTP status or WebSocket
error codes only at the edge, in ``server``) and whether retrying the same call may succeed.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BatcherClosed",
    "FrameDropped",
    "InferenceError",
    "InferenceTimeout",
    "ModelContractError",
]


class InferenceError(Exception):
    """Root of every error this package raises on purpose."""

    code: str = "inference_error"
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable


class ModelContractError(InferenceError, ValueError):
    """The model file does not meet the model contract; ``problems`` lists each violation.

    The message names the file and every problem found, one per line, so an operator who gave
    the server a wrong file can fix it without reading the code.
    """

    code = "model_contract"

    def __init__(self, path: str, problems: Sequence[str]) -> None:
        self.path = path
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"model {path!r} does not meet the inspect model contract:\n{lines}")


class InferenceTimeout(InferenceError, TimeoutError):
    """A prediction did not complete within the caller's deadline."""

    code = "inference_timeout"
    retryable = True


class FrameDropped(InferenceError):
    """The request was dropped from a full batcher queue (oldest of its stream first).

    ``reason`` is the drop counter's label: ``"queue_full"`` or ``"replaced"``.
    """

    code = "frame_dropped"
    retryable = True

    def __init__(self, stream_id: str, reason: str = "queue_full") -> None:
        self.stream_id = stream_id
        self.reason = reason
        super().__init__(f"frame of stream {stream_id!r} dropped ({reason})")


class BatcherClosed(InferenceError):
    """The batcher was closed (or not started) before the request could run."""

    code = "batcher_closed"
