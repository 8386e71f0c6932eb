"""Turning exceptions into short, credential-free messages, and telling which ones need a human."""

from __future__ import annotations

from worker.redaction import mask_rtmp, redact  # noqa: F401 - mask_rtmp: the camera's name for it


class StreamError(Exception):
    """A problem with what the camera sends (no video track, unsupported codec...)."""

    needs_fix = True


class Disconnected(Exception):
    """The stream ended or stalled; a plain reconnect is the answer."""

    needs_fix = False


def describe(exc: BaseException) -> str:
    """``Type: message`` without the URL FFmpeg appends (it may hold a password), redacted."""
    name = type(exc).__name__
    message = getattr(exc, "strerror", None)
    if not message:
        message = str(exc)
    message = " ".join(str(message).split())
    if name == "ExitError" and "Immediate exit" in message:
        message = "timed out (no data from the camera)"
    return redact(f"{name}: {message}" if message else name)


def needs_fix(exc: BaseException) -> bool:
    """Errors a reconnect will not cure by itself: wrong credentials, wrong path, bad stream.

    The camera keeps retrying, but reports state ``error`` rather than ``reconnecting``."""
    if getattr(exc, "needs_fix", False):
        return True
    try:
        import av.error
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (av.error.HTTPClientError, av.error.DecoderNotFoundError, av.error.PatchWelcomeError))
