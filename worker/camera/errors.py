"""Turning exceptions into short, credential-free messages, and telling which ones need a human."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from worker.redaction import MASK, mask_url, redact


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


def mask_rtmp(url: str | None) -> str:
    """``rtmp://host/app/<stream key>`` -> ``rtmp://host/app/***``: the key is a secret too."""
    if not url:
        return ""
    masked = mask_url(url)
    try:
        parts = urlsplit(masked)
    except ValueError:
        return redact(masked)
    path = parts.path
    segments = path.split("/")
    if len(segments) > 2 and segments[-1]:
        segments[-1] = MASK
    return urlunsplit((parts.scheme, parts.netloc, "/".join(segments), "", ""))
