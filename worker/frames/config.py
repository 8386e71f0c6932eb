"""Configuration of the frame server, read from the environment (no Django needed).

| variable | default | meaning |
|---|---|---|
| ``EDGEPROXY_GRPC_PORT`` | ``50001`` | listening port |
| ``EDGEPROXY_GRPC_BIND`` | ``127.0.0.1``, ``0.0.0.0`` with keys | listening address; not loopback only with keys |
| ``EDGEPROXY_GRPC_WORKERS`` | ``16`` | handler threads (one per RPC in flight; a buffered stream holds one) |
| ``EDGEPROXY_GRPC_MAX_MESSAGE_MB`` | ``64`` | max send/receive message size (a 1080p BGR frame is 6.2 MB) |
| ``EDGEPROXY_GRPC_TOKENS`` | unset | comma-separated API keys: if set, calls need ``authorization: Token <key>`` |
| ``EDGEPROXY_GRPC_TOKENS_FILE`` | unset | file with API keys, one per line (``#`` comments allowed) |
| ``EDGEPROXY_GRPC_TLS_CERT`` / ``_KEY`` | unset | PEM files: serve TLS instead of plaintext (both or neither) |
| ``EDGEPROXY_FRAMES_REDIS_URL`` | ``redis://127.0.0.1:6379/0`` | the frame bus (Redis of this edge host) |
| ``EDGEPROXY_HOST_NAME`` | hostname, lower case | this host's name (selects the host camera table) |
| ``CELERY_BROKER_URL`` | ``REDIS_URL`` or ``redis://127.0.0.1:6379/0`` | broker for the Annotate hand-off |
| ``EDGEPROXY_FRAMES_WAIT_MS`` | ``2000`` | how long VideoLatestImage waits for a fresh frame |
| ``EDGEPROXY_FRAMES_MAX_AGE_MS`` | ``2000`` | a decoded frame older than this is stale (not served) |
| ``EDGEPROXY_FRAMES_ANNOTATION_MAX_KB`` | ``64`` | largest ``Annotate`` request (serialized), else ``INVALID_ARGUMENT`` |
| ``EDGEPROXY_FRAMES_ANNOTATE_RATE`` | ``20`` | ``Annotate`` calls per second per caller (API key and address) |
| ``EDGEPROXY_FRAMES_ANNOTATE_BURST`` | ``100`` | calls a caller may make at once before the rate applies |
| ``LOG_LEVEL`` | ``info`` | debug / info / warning / error |
| ``EDGEPROXY_FRAMES_SHM_DIR``, ``..._SHM_GROUP``, ``..._SHM_SLOTS``, ``..._VIA_REDIS`` | see ``worker/camera/shm.py`` | the shared-memory frame rings this server reads |
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field

from worker.camera.shm import SettingsError, ShmSettings


class ConfigError(Exception):
    """A configuration value is wrong; the message names the variable and what to fix."""


def _int(env, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value


def _read_file(name: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path!r}: {exc.strerror}") from None


def is_loopback(address: str) -> bool:
    """Is ``address`` (an IP address or ``localhost``) reachable from this machine only?"""
    host = address.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything, so it is not loopback
        return False


def _bind(env, tokens) -> str:
    """Loopback unless API keys are set; a non-loopback address without keys is refused, because
    anyone who can reach it could read every camera and write annotations."""
    bind = env.get("EDGEPROXY_GRPC_BIND", "").strip()
    if not bind:
        return "0.0.0.0" if tokens else "127.0.0.1"
    if not tokens and not is_loopback(bind):
        raise ConfigError(
            f"EDGEPROXY_GRPC_BIND={bind} is reachable from other machines but no API key is set: "
            "set EDGEPROXY_GRPC_TOKENS (or EDGEPROXY_GRPC_TOKENS_FILE), or bind 127.0.0.1")
    return bind


@dataclass(frozen=True)
class FrameServerConfig:
    port: int = 50001
    bind: str = "127.0.0.1"
    workers: int = 16
    max_message_bytes: int = 64 * 1024 * 1024
    redis_url: str = "redis://127.0.0.1:6379/0"
    host: str = field(default_factory=lambda: socket.gethostname().lower())
    broker_url: str = "redis://127.0.0.1:6379/0"
    tokens: tuple[str, ...] = ()
    tls_cert: bytes | None = None
    tls_key: bytes | None = None
    wait_ms: int = 2000
    max_age_ms: int = 2000
    log_level: str = "INFO"
    annotation_max_bytes: int = 64 * 1024
    annotate_rate: float = 20.0
    annotate_burst: int = 100
    shm: ShmSettings = field(default_factory=ShmSettings)

    @property
    def address(self) -> str:
        return f"{self.bind}:{self.port}"

    @classmethod
    def from_env(cls, env=None) -> "FrameServerConfig":
        env = os.environ if env is None else env
        tokens: list[str] = [t.strip() for t in env.get("EDGEPROXY_GRPC_TOKENS", "").split(",") if t.strip()]
        tokens_file = env.get("EDGEPROXY_GRPC_TOKENS_FILE", "").strip()
        if tokens_file:
            for line in _read_file("EDGEPROXY_GRPC_TOKENS_FILE", tokens_file).splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    tokens.append(line)
            if not tokens:
                raise ConfigError(f"EDGEPROXY_GRPC_TOKENS_FILE {tokens_file!r} holds no key: add one key per line")
        cert_path = env.get("EDGEPROXY_GRPC_TLS_CERT", "").strip()
        key_path = env.get("EDGEPROXY_GRPC_TLS_KEY", "").strip()
        if bool(cert_path) != bool(key_path):
            raise ConfigError("set both EDGEPROXY_GRPC_TLS_CERT and EDGEPROXY_GRPC_TLS_KEY (PEM files), or neither")
        tls_cert = _read_file("EDGEPROXY_GRPC_TLS_CERT", cert_path).encode() if cert_path else None
        tls_key = _read_file("EDGEPROXY_GRPC_TLS_KEY", key_path).encode() if key_path else None
        level = env.get("LOG_LEVEL", "info").strip().upper() or "INFO"
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL must be one of debug, info, warning, error; got {level.lower()!r}")
        redis_default = env.get("REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0"
        host = env.get("EDGEPROXY_HOST_NAME", "").strip() or socket.gethostname().lower()
        unique_tokens = tuple(dict.fromkeys(tokens))
        try:
            shm = ShmSettings.from_env(env)
        except SettingsError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            shm=shm,
            port=_int(env, "EDGEPROXY_GRPC_PORT", 50001, 1, 65535),
            bind=_bind(env, unique_tokens),
            workers=_int(env, "EDGEPROXY_GRPC_WORKERS", 16, 1, 1024),
            max_message_bytes=_int(env, "EDGEPROXY_GRPC_MAX_MESSAGE_MB", 64, 8, 2047) * 1024 * 1024,
            redis_url=env.get("EDGEPROXY_FRAMES_REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0",
            host=host,
            broker_url=env.get("CELERY_BROKER_URL", "").strip() or redis_default,
            tokens=unique_tokens,
            tls_cert=tls_cert,
            tls_key=tls_key,
            wait_ms=_int(env, "EDGEPROXY_FRAMES_WAIT_MS", 2000, 0, 60000),
            max_age_ms=_int(env, "EDGEPROXY_FRAMES_MAX_AGE_MS", 2000, 100, 600000),
            log_level=level,
            annotation_max_bytes=_int(env, "EDGEPROXY_FRAMES_ANNOTATION_MAX_KB", 64, 1, 4096) * 1024,
            annotate_rate=float(_int(env, "EDGEPROXY_FRAMES_ANNOTATE_RATE", 20, 1, 100000)),
            annotate_burst=_int(env, "EDGEPROXY_FRAMES_ANNOTATE_BURST", 100, 1, 1000000),
        )
