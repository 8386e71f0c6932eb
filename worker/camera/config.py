"""Configuration of the camera program, read from its environment.

Every problem found here is a configuration error: the program prints what to fix and exits
non-zero (``python -m worker.camera``). Nothing else makes it exit non-zero.

| variable | default | meaning |
|---|---|---|
| ``EDGEPROXY_CAMERA_NAME`` | required | camera name, the stem of its Redis keys (``keys.py``) |
| ``EDGEPROXY_CAMERA_ID`` | empty | control-plane id, reported in the status |
| ``EDGEPROXY_RTSP_URL`` | required unless ``..._FILE`` | ``rtsp://[user:password@]host[:port]/path`` (or ``rtsps://``) |
| ``EDGEPROXY_RTSP_URL_FILE`` | unset | a file holding the URL (wins over ``EDGEPROXY_RTSP_URL``) |
| ``EDGEPROXY_RTSP_TRANSPORT`` | ``tcp`` | ``tcp`` or ``udp`` |
| ``EDGEPROXY_BUFFER_SECONDS`` | ``10`` | length of the packet ring in seconds; ``0`` disables it |
| ``EDGEPROXY_REDIS_URL`` | ``redis://127.0.0.1:6379/0`` | the frame bus (``redis://``, ``rediss://`` or ``unix://``) |
| ``EDGEPROXY_RTMP_URL`` | unset | RTMP pass-through target (``rtmp://`` or ``rtmps://``) |
| ``EDGEPROXY_RTMP_URL_FILE`` | unset | a file holding the RTMP URL (wins over ``EDGEPROXY_RTMP_URL``) |
| ``EDGEPROXY_OPEN_TIMEOUT_S`` | ``5`` | RTSP open (connect, DESCRIBE, SETUP, PLAY) timeout |
| ``EDGEPROXY_READ_TIMEOUT_S`` | ``4`` | no packet for this long = the stream is dead, reconnect |
| ``EDGEPROXY_BACKOFF_INITIAL_S`` | ``0.5`` | first reconnect delay; doubles per failure (with jitter) |
| ``EDGEPROXY_BACKOFF_MAX_S`` | ``30`` | reconnect delay cap |
| ``EDGEPROXY_DEMAND_POLL_MS`` | ``150`` | how often the Redis demand keys are read while streaming, for a camera whose frames go through Redis; with a shared-memory frame ring they are read with each packet-ring batch (local readers' and the frame server's demand comes through the ring's demand file, checked on every packet) |
| ``EDGEPROXY_RING_FLUSH_MS`` | ``1000`` | longest time a received packet waits before it is sent to the packet ring in Redis (packets go in batches; a buffered read up to "now" waits this long for its last packets) |
| ``EDGEPROXY_STATUS_INTERVAL_MS`` | ``1000`` | how often the status key (and the frame ring's heartbeat) is written |
| ``EDGEPROXY_DECODE_THREADS`` | ``1`` | decoder threads for live frames (``0`` = FFmpeg's choice) |
| ``EDGEPROXY_PUBLISH_FORMAT`` | ``i420`` | published frame data: ``i420`` (the decoder's YUV 4:2:0 as is, when it is that; else BGR24) or ``bgr24`` (always converted) |
| ``EDGEPROXY_LOG_LEVEL`` | ``INFO`` | Python log level |
| ``EDGEPROXY_LOG_FORMAT`` | ``text`` | ``text`` or ``json`` (one JSON object a line) |
| ``EDGEPROXY_FFMPEG_LOG_LEVEL`` | ``quiet`` | FFmpeg's own messages: ``quiet``, ``error``, ``warning``, ``info`` (redacted) |
"""  # noqa: E501 - rows of a Markdown table cannot wrap

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from edgeproxy.contracts.names import EDGE_NAME_RULE

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
NAME_RULE = EDGE_NAME_RULE
RTSP_SCHEMES = ("rtsp", "rtsps")
RTMP_SCHEMES = ("rtmp", "rtmps")
# What FFmpeg may open for the camera (its ``protocol_whitelist``): RTSP and RTSPS, and what they
# run on (TCP, TLS; RTP over UDP). Never a file, HTTP or any other protocol, whatever the URL says.
RTSP_PROTOCOL_WHITELIST = "rtsp,rtsps,tcp,udp,rtp,tls"
REDIS_SCHEMES = ("redis", "rediss", "unix")
FFMPEG_LOG_LEVELS = ("quiet", "error", "warning", "info")


class ConfigError(ValueError):
    """A configuration problem; the message says what to fix."""


@dataclass(frozen=True)
class Config:
    name: str
    rtsp_url: str
    camera_id: str = ""
    transport: str = "tcp"
    buffer_seconds: float = 10.0
    redis_url: str = DEFAULT_REDIS_URL
    rtmp_url: str | None = None
    open_timeout: float = 5.0
    read_timeout: float = 4.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    demand_poll_s: float = 0.15
    ring_flush_s: float = 1.0
    status_interval_s: float = 1.0
    decode_threads: int = 1
    publish_format: str = "i420"
    log_level: str = "INFO"
    log_format: str = "text"
    ffmpeg_log_level: str = "quiet"

    def __repr__(self) -> str:  # never print the URLs (they may hold credentials)
        return f"Config(name={self.name!r}, transport={self.transport!r}, buffer_seconds={self.buffer_seconds})"

    @property
    def rtsp_host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.rtsp_url)
        default = 322 if parts.scheme.lower() == "rtsps" else 554
        return parts.hostname or "", parts.port or default


def _get(env, key: str) -> str | None:
    value = env.get(key)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _has_space_or_control(value: str) -> bool:
    return any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value)


def _check_url(var: str, value: str, schemes: tuple[str, ...], example: str) -> str:
    if _has_space_or_control(value):
        raise ConfigError(f"{var} must not contain white space or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"{var} is not a valid URL ({exc}); expected {example}") from None
    if parts.scheme.lower() not in schemes:
        shown = parts.scheme + "://" if parts.scheme else "no scheme"
        raise ConfigError(f"{var} must start with {' or '.join(s + '://' for s in schemes)} (got {shown}); "
                          f"expected {example}")
    if not parts.hostname:
        raise ConfigError(f"{var} has no host; expected {example}")
    del port
    # FFmpeg knows its protocols by their lower-case names only: RTSP://... is rtsp://...
    return parts.scheme.lower() + value[len(parts.scheme):]


def _url_setting(env, var: str, what: str, required: bool) -> tuple[str, str] | None:
    """(source variable, URL) from ``<var>_FILE`` (a file holding the secret URL, which wins) or
    ``<var>``; None when neither is set and the URL is optional."""
    url_file = _get(env, f"{var}_FILE")
    if url_file:
        try:
            with open(url_file, encoding="utf-8") as handle:
                url = handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"{var}_FILE {url_file!r} cannot be read ({exc.strerror}): "
                              f"point it to a readable file holding {what}") from None
        if not url:
            raise ConfigError(f"{var}_FILE {url_file!r} is empty: write {what} into it")
        return f"{var}_FILE", url
    value = _get(env, var)
    if value:
        return var, value
    if required:
        raise ConfigError(f"{var} is not set: give {what} (or {var}_FILE, a file holding it)")
    return None


def _number(env, var: str, default: float, minimum: float, maximum: float, integer: bool = False) -> float:
    raw = _get(env, var)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{var} must be {kind} between {minimum:g} and {maximum:g} (got {raw!r})") from None
    if not math.isfinite(value) or value < minimum or value > maximum:
        raise ConfigError(f"{var} must be between {minimum:g} and {maximum:g} (got {raw!r})")
    return value


def _choice(env, var: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _get(env, var)
    if raw is None:
        return default
    value = raw.lower()
    if value not in choices:
        raise ConfigError(f"{var} must be one of {', '.join(choices)} (got {raw!r})")
    return value


def load_config(env=None) -> Config:
    """Read and check the configuration; raise ``ConfigError`` with what to fix."""
    env = os.environ if env is None else env

    name = _get(env, "EDGEPROXY_CAMERA_NAME")
    if not name:
        raise ConfigError("EDGEPROXY_CAMERA_NAME is not set: give the camera's name (the runtime passes it)")
    if not NAME_RULE.fullmatch(name):
        raise ConfigError(f"EDGEPROXY_CAMERA_NAME {name!r} is not a valid camera name: use 1 to 128 characters "
                          "of letters, digits, '.', '_' and '-', starting with a letter or digit")

    rtsp_setting = _url_setting(env, "EDGEPROXY_RTSP_URL", "the RTSP URL", required=True)
    assert rtsp_setting is not None  # required: a missing URL raised ConfigError
    rtsp_url = _check_url(*rtsp_setting, RTSP_SCHEMES, "rtsp://host[:port]/path, with credentials if needed")

    transport = _choice(env, "EDGEPROXY_RTSP_TRANSPORT", "tcp", ("tcp", "udp"))
    buffer_seconds = _number(env, "EDGEPROXY_BUFFER_SECONDS", 10.0, 0.0, 3600.0)

    redis_url = _get(env, "EDGEPROXY_REDIS_URL") or DEFAULT_REDIS_URL
    if _has_space_or_control(redis_url):
        raise ConfigError("EDGEPROXY_REDIS_URL must not contain white space or control characters")
    scheme = urlsplit(redis_url).scheme.lower()
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(f"EDGEPROXY_REDIS_URL must start with redis://, rediss:// or unix:// "
                          f"(got {scheme + '://' if scheme else 'no scheme'})")
    if scheme != "unix":
        _check_url("EDGEPROXY_REDIS_URL", redis_url, REDIS_SCHEMES, "redis://host:6379/0")

    rtmp_setting = _url_setting(env, "EDGEPROXY_RTMP_URL", "the RTMP URL", required=False)
    rtmp_url = _check_url(*rtmp_setting, RTMP_SCHEMES, "rtmp://host[:port]/app/stream") if rtmp_setting else None

    backoff_initial = _number(env, "EDGEPROXY_BACKOFF_INITIAL_S", 0.5, 0.05, 60.0)
    backoff_max = _number(env, "EDGEPROXY_BACKOFF_MAX_S", 30.0, 0.1, 3600.0)
    if backoff_max < backoff_initial:
        raise ConfigError("EDGEPROXY_BACKOFF_MAX_S must not be smaller than EDGEPROXY_BACKOFF_INITIAL_S")

    level = (_get(env, "EDGEPROXY_LOG_LEVEL") or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"EDGEPROXY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR (got {level!r})")

    return Config(
        name=name,
        camera_id=_get(env, "EDGEPROXY_CAMERA_ID") or "",
        rtsp_url=rtsp_url,
        transport=transport,
        buffer_seconds=buffer_seconds,
        redis_url=redis_url,
        rtmp_url=rtmp_url,
        open_timeout=_number(env, "EDGEPROXY_OPEN_TIMEOUT_S", 5.0, 0.5, 120.0),
        read_timeout=_number(env, "EDGEPROXY_READ_TIMEOUT_S", 4.0, 0.5, 120.0),
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        demand_poll_s=_number(env, "EDGEPROXY_DEMAND_POLL_MS", 150, 20, 5000) / 1000.0,
        ring_flush_s=_number(env, "EDGEPROXY_RING_FLUSH_MS", 1000, 20, 2000) / 1000.0,
        status_interval_s=_number(env, "EDGEPROXY_STATUS_INTERVAL_MS", 1000, 100, 1000) / 1000.0,
        decode_threads=int(_number(env, "EDGEPROXY_DECODE_THREADS", 1, 0, 64, integer=True)),
        publish_format=_choice(env, "EDGEPROXY_PUBLISH_FORMAT", "i420", ("i420", "bgr24")),
        log_level=level,
        log_format=_choice(env, "EDGEPROXY_LOG_FORMAT", "text", ("text", "json")),
        ffmpeg_log_level=_choice(env, "EDGEPROXY_FFMPEG_LOG_LEVEL", "quiet", FFMPEG_LOG_LEVELS),
    )
