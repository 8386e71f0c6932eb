"""Keeping credentials out of everything we print or return.

Used by the control plane (responses, logs), the edge worker (container logs) and the camera
process, which is why it lives here with no Django import. ``RedactingFilter`` is installed on
every log handler, so redaction does not depend on each call site remembering it.
"""

import json
import logging
import re
import time
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# scheme://user:password@host -> scheme://user:***@host ; scheme://token@host -> scheme://***@host
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s/@'\"<>]+)@")
# Header-, query- and env-style secrets: password=..., "edge_secret": "...", Token abc...
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>\b(?:password|passwd|pwd|secret|edge_secret|token|api_key|apikey)\b[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<value>[^\s\"'&,;}]+)"
)
_AUTH_HEADER = re.compile(r"(?i)\b(?P<scheme>Token|Bearer|Basic)\s+(?P<value>[A-Za-z0-9+/=._-]{8,})")
# The documented settings route carries the edge secret in its path: /settings/overwrite/<key>:<secret>
_SECRET_PATH = re.compile(r"(?P<route>/settings/overwrite/)[^\s?\"'#]+")

# Secrets registered at run time (for example the current RTSP password of a camera) are masked
# even where they appear without a recognisable key in front of them.
_known_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    if value and len(value) >= 3:
        _known_secrets.add(value)


def _mask_userinfo(match: re.Match) -> str:
    userinfo = match.group("userinfo")
    if ":" in userinfo:
        user = userinfo.split(":", 1)[0]
        return f"{match.group('scheme')}{user}:{MASK}@"
    return f"{match.group('scheme')}{MASK}@"


def redact(text: str) -> str:
    """Mask passwords in URLs, key=value pairs, auth headers and registered secrets."""
    if not text:
        return text
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{MASK}", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group('scheme')} {MASK}", text)
    text = _SECRET_PATH.sub(lambda m: f"{m.group('route')}{MASK}", text)
    for secret in _known_secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_bytes(data: bytes) -> bytes:
    return redact(data.decode("utf-8", errors="replace")).encode("utf-8")


def mask_url(url: str) -> str:
    """``rtsp://user:pass@host/x`` -> ``rtsp://user:***@host/x`` (the documented API form)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    userinfo = f"{user}:{MASK}" if parts.password is not None else MASK
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, parts.fragment))


def mask_rtmp(url: str | None) -> str:
    """``rtmp://user:pass@host/app/<stream key>`` -> ``rtmp://user:***@host/app/***``: the key is a
    secret too (whoever has it can publish), and so is a query (some services put the key there)."""
    if not url:
        return ""
    masked = mask_url(url)
    try:
        parts = urlsplit(masked)
    except ValueError:
        return redact(masked)
    segments = parts.path.split("/")
    if len(segments) > 2 and segments[-1]:
        segments[-1] = MASK
    return urlunsplit((parts.scheme, parts.netloc, "/".join(segments), MASK if parts.query else "", ""))


def rtmp_secrets(url: str | None) -> list[str]:
    """The parts of an RTMP URL to mask wherever they appear in logs: its password, and its stream
    key when it looks like one (8+ characters: not "live" or "test", which would mask common words)."""
    if not url:
        return []
    found = [url_password(url) or ""]
    try:
        parts = urlsplit(url)
    except ValueError:
        return [s for s in found if s]
    segments = parts.path.split("/")
    if len(segments) > 2 and len(segments[-1]) >= 8:
        found.append(segments[-1])
    found.append(parts.query)
    return [s for s in found if s]


def url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class RedactingFilter(logging.Filter):
    """Rewrites every record's message with ``redact`` before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string must not lose the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line; context ids (camera, host, operation) come from ``extra=``."""

    CONTEXT = ("camera", "host", "operation", "task_id")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in self.CONTEXT:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = str(value)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry)


def install_redaction(json_format: bool = False) -> None:
    """Put a ``RedactingFilter`` on every handler of every logger that exists now (idempotent).

    For processes where libraries add their own handlers (Celery's task logger, gunicorn):
    whatever path a record takes to an output, it is redacted first. With ``json_format`` those
    handlers also write one JSON object a line.
    """
    loggers = [logging.getLogger()] + [
        logger for logger in logging.Logger.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
            if json_format and not isinstance(handler.formatter, JsonFormatter):
                handler.setFormatter(JsonFormatter())
