"""Configuration of the frame server, read from the environment by edgeproxy/env.py (no Django settings needed).

| variable | default | meaning |
|---|---|---|
| ``EDGEPROXY_GRPC_PORT`` | ``50001`` | listening port |
| ``EDGEPROXY_GRPC_BIND`` | ``127.0.0.1``, ``0.0.0.0`` with keys | listening address; not loopback only with keys |
| ``EDGEPROXY_GRPC_WORKERS`` | ``16`` | handler threads (one per RPC in flight; a buffered stream holds one) |
| ``EDGEPROXY_GRPC_MAX_MESSAGE_MB`` | ``64`` | max send/receive message size (a 1080p BGR frame is 6.2 MB) |
| ``EDGEPROXY_GRPC_TOKENS`` | unset | comma-separated API keys: if set, calls need ``authorization: Token <key>`` |
| ``EDGEPROXY_GRPC_TOKENS_FILE`` | unset | file with API keys, one per line (``#`` comments allowed) |
| ``EDGEPROXY_STATE_DIR`` | ``~/.local/state/edgeproxy`` | with keys, the apps' keys are accepted too (``edge-<host>-app-frame-keys.json`` there) |
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
"""  # noqa: E501 - rows of a Markdown table cannot wrap

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field

from edgeproxy.env import SettingError, envchoice, envfile, envint, envlist, envstr
from worker.camera.shm import SettingsError, ShmSettings
from worker.frames.app_keys import keys_path, state_dir

# A configuration value is wrong; the message names the variable and what to fix.
ConfigError = SettingError


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


def configured_tokens(env=None) -> tuple[str, ...]:
    """The API keys of ``EDGEPROXY_GRPC_TOKENS`` and ``EDGEPROXY_GRPC_TOKENS_FILE``: when there are
    any, every call needs one (the edge worker asks this too, to know whether apps need a key)."""
    env = os.environ if env is None else env
    tokens: list[str] = envlist("EDGEPROXY_GRPC_TOKENS", env=env)
    tokens_file = envfile("EDGEPROXY_GRPC_TOKENS_FILE", env)
    if tokens_file is not None:
        for line in tokens_file.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                tokens.append(line)
        if not tokens:
            raise ConfigError(f"EDGEPROXY_GRPC_TOKENS_FILE {env['EDGEPROXY_GRPC_TOKENS_FILE'].strip()!r} holds "
                              "no key: add one key per line")
    return tuple(dict.fromkeys(tokens))


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
    # With ``tokens``, the keys of this host's apps are accepted too (worker/frames/app_keys.py).
    app_keys_file: str = ""
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
    def from_env(cls, env=None) -> FrameServerConfig:
        env = os.environ if env is None else env

        def text(name: str, default: str) -> str:
            return (envstr(name, "", env) or "").strip() or default

        unique_tokens = configured_tokens(env)
        if bool(env.get("EDGEPROXY_GRPC_TLS_CERT", "").strip()) != bool(env.get("EDGEPROXY_GRPC_TLS_KEY", "").strip()):
            raise ConfigError("set both EDGEPROXY_GRPC_TLS_CERT and EDGEPROXY_GRPC_TLS_KEY (PEM files), or neither")
        tls_cert = envfile("EDGEPROXY_GRPC_TLS_CERT", env)
        tls_key = envfile("EDGEPROXY_GRPC_TLS_KEY", env)
        level = envchoice("LOG_LEVEL", "info", ("debug", "info", "warning", "error"), env).upper()
        redis_default = text("REDIS_URL", "redis://127.0.0.1:6379/0")
        host = text("EDGEPROXY_HOST_NAME", socket.gethostname().lower())
        try:
            shm = ShmSettings.from_env(env)
        except SettingsError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            shm=shm,
            port=envint("EDGEPROXY_GRPC_PORT", 50001, 1, 65535, env),
            bind=_bind(env, unique_tokens),
            workers=envint("EDGEPROXY_GRPC_WORKERS", 16, 1, 1024, env),
            max_message_bytes=envint("EDGEPROXY_GRPC_MAX_MESSAGE_MB", 64, 8, 2047, env) * 1024 * 1024,
            redis_url=text("EDGEPROXY_FRAMES_REDIS_URL", "redis://127.0.0.1:6379/0"),
            host=host,
            broker_url=text("CELERY_BROKER_URL", redis_default),
            tokens=unique_tokens,
            app_keys_file=str(keys_path(state_dir(env), host)),
            tls_cert=tls_cert.encode() if tls_cert is not None else None,
            tls_key=tls_key.encode() if tls_key is not None else None,
            wait_ms=envint("EDGEPROXY_FRAMES_WAIT_MS", 2000, 0, 60000, env),
            max_age_ms=envint("EDGEPROXY_FRAMES_MAX_AGE_MS", 2000, 100, 600000, env),
            log_level=level,
            annotation_max_bytes=envint("EDGEPROXY_FRAMES_ANNOTATION_MAX_KB", 64, 1, 4096, env) * 1024,
            annotate_rate=float(envint("EDGEPROXY_FRAMES_ANNOTATE_RATE", 20, 1, 100000, env)),
            annotate_burst=envint("EDGEPROXY_FRAMES_ANNOTATE_BURST", 100, 1, 1000000, env),
        )
