"""What an edge worker needs from the thing that runs camera processes.

Two implementations: ``DockerRuntime`` (one container per camera, through the docker SDK) and
``LocalRuntime`` (the same camera program as a supervised child process). Both only ever touch
camera processes that carry our marks for *this* host (labels for Docker), never anything else.
"""

from __future__ import annotations

import abc
import base64
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

# Docker ContainerState keys as the API returns them in ``state``, and Docker's "never": part of
# the edge -> control contract (re-exported here for the runtimes).
from edgeproxy.contracts.names import EDGE_NAME_RULE
from edgeproxy.contracts.statuses import STATE_KEYS as STATE_KEYS
from edgeproxy.contracts.statuses import ZERO_TIME as ZERO_TIME
from worker.redaction import redact_bytes, register_secret, rtmp_secrets, url_password

# Labels on every container we make. Never a secret in a label.
LABEL_MANAGED = "io.edgeproxy.managed"
LABEL_CAMERA = "io.edgeproxy.camera"
LABEL_CAMERA_ID = "io.edgeproxy.camera-id"
LABEL_HOST = "io.edgeproxy.host"

# An edge host's name: a label value for Docker, a directory name for the local runtime.
HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")
# The file name of each secret URL, by the camera program's variable; each runtime decides where
# the files live (in the container, or in the camera's state directory).
SECRET_URL_FILES = {"EDGEPROXY_RTSP_URL": "rtsp_url", "EDGEPROXY_RTMP_URL": "rtmp_url"}


@dataclass
class CameraSpec:
    """Everything needed to run one camera. ``rtsp_url`` and ``rtmp_url`` are secrets: never log or label them."""

    camera_id: str
    name: str
    host: str
    image: str
    rtsp_url: str
    rtmp_url: str = ""
    transport: str = "tcp"
    buffer_seconds: int = 10
    frames_redis_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    # Overrides the camera program (Docker: the image's entrypoint; local: the command line).
    # None runs the normal camera program; tests use it to run a program that crashes or logs.
    command: list[str] | None = None

    def environment(self) -> dict[str, str]:
        """The camera program's configuration (see worker/camera/config.py)."""
        env = {
            "EDGEPROXY_CAMERA_NAME": self.name,
            "EDGEPROXY_CAMERA_ID": self.camera_id,
            "EDGEPROXY_RTSP_URL": self.rtsp_url,
            "EDGEPROXY_RTSP_TRANSPORT": self.transport,
            "EDGEPROXY_BUFFER_SECONDS": str(self.buffer_seconds),
            "EDGEPROXY_REDIS_URL": self.frames_redis_url,
        }
        if self.rtmp_url:
            env["EDGEPROXY_RTMP_URL"] = self.rtmp_url
        env.update(self.extra_env)
        return env

    def secret_urls(self) -> dict[str, str]:
        """The URLs that hold secrets (RTSP password; RTMP password and stream key), by the camera
        program's variable. Runtimes hand each over as a file named by ``<variable>_FILE``, never
        in the environment or on a command line."""
        urls = {"EDGEPROXY_RTSP_URL": self.rtsp_url, "EDGEPROXY_RTMP_URL": self.rtmp_url}
        return {var: url for var, url in urls.items() if url}

    def log_secrets(self) -> list[str]:
        """What to mask in every log line of the worker (see worker.redaction.register_secret)."""
        return [s for s in [url_password(self.rtsp_url), *rtmp_secrets(self.rtmp_url)] if s]

    def __repr__(self) -> str:  # keeps the URL out of tracebacks and debug output
        return f"CameraSpec(name={self.name!r}, host={self.host!r}, image={self.image!r})"


@dataclass
class Observed:
    """What a runtime sees of one camera process (JSON-able, sent to the control plane)."""

    name: str
    camera_id: str
    container_id: str
    status: str  # Docker-style: created, running, restarting, paused, exited, dead, removing
    state: dict  # Docker ContainerState keys (STATE_KEYS)
    image: str = ""
    logs: dict | None = None  # {"stdout": base64 or None, "stderr": base64 or None}, redacted
    restarts: int = 0  # restarts of this container/process by its restart policy

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "camera_id": self.camera_id,
            "container_id": self.container_id,
            "status": self.status,
            "state": self.state,
            "image": self.image,
            "logs": self.logs,
        }


class RuntimeError_(Exception):  # noqa: N801 - the builtin's name, underscored
    """A runtime operation failed; the message is safe to show (no secrets, no raw daemon dump)."""


def check_name(name: str) -> None:
    """Refuse a camera name no runtime may use (before it reaches a path or a container name)."""
    if not isinstance(name, str) or not EDGE_NAME_RULE.fullmatch(name):
        raise RuntimeError_(f"invalid camera name {name!r}: use letters, digits, '_', '-' or '.'")


def encode_log(data: bytes) -> str | None:
    """Log output as the control plane takes it: redacted, in base64; None when there is none."""
    if not data:
        return None
    return base64.b64encode(redact_bytes(data)).decode("ascii")


def encode_logs(stdout: bytes, stderr: bytes) -> dict:
    """``Observed.logs`` from the output of both streams."""
    return {"stdout": encode_log(stdout), "stderr": encode_log(stderr)}


class Runtime(abc.ABC):
    """What both runtimes share: the checks of a camera spec, the camera program's environment,
    one lock per camera; the abstract methods are where they really differ."""

    name: str = "abstract"

    def __init__(self, host: str):
        if not isinstance(host, str) or not HOST_NAME_RE.fullmatch(host):
            raise RuntimeError_(f"invalid edge host name {host!r}")
        self.host = host
        self._camera_locks: dict[str, threading.Lock] = {}
        self._camera_locks_guard = threading.Lock()

    # --- shared by the implementations ------------------------------------------------------------

    def _camera_lock(self, name: str) -> threading.Lock:
        """One lock per camera: operations on one camera never overlap, other cameras go on."""
        with self._camera_locks_guard:
            return self._camera_locks.setdefault(name, threading.Lock())

    def _accept(self, spec: CameraSpec) -> None:
        """Check a spec before running it (its name, its host) and mask its secrets in every log."""
        check_name(spec.name)
        if spec.host and spec.host != self.host:
            raise RuntimeError_(f"camera {spec.name} belongs to host {spec.host}, not {self.host}")
        self._register_secrets(spec)

    @staticmethod
    def _register_secrets(spec: CameraSpec) -> None:
        for secret in spec.log_secrets():
            register_secret(secret)

    @staticmethod
    def _camera_environment(spec: CameraSpec, secret_path: Callable[[str], str]) -> dict[str, str]:
        """The camera program's environment for ``spec`` with each secret URL replaced by
        ``<variable>_FILE``, the path ``secret_path(variable)`` of the file holding it."""
        env = spec.environment()
        for var in SECRET_URL_FILES:
            env.pop(var, None)
        for var in spec.secret_urls():
            env[f"{var}_FILE"] = secret_path(var)
        return env

    def restart_count(self, name: str) -> int:
        """How often the restart policy restarted this camera's process (Docker's RestartCount)."""
        observed = self.observe(name, with_logs=False)
        return 0 if observed is None else observed.restarts

    @abc.abstractmethod
    def ensure_running(self, spec: CameraSpec) -> Observed:
        """Create (or recreate with the new spec) and start the camera process; idempotent."""

    @abc.abstractmethod
    def stop(self, name: str, timeout: float = 5.0) -> Observed | None:
        """Stop the camera process and keep it (None if there is none); idempotent."""

    @abc.abstractmethod
    def remove(self, name: str, timeout: float = 5.0) -> bool:
        """Stop and remove the camera process; True if there was one. Idempotent."""

    @abc.abstractmethod
    def observe(self, name: str, with_logs: bool = True) -> Observed | None:
        """The camera process of that name on this host, or None."""

    @abc.abstractmethod
    def observe_all(self, with_logs: bool = False) -> list[Observed]:
        """Every camera process of this host carrying our marks."""

    @abc.abstractmethod
    def facts(self) -> dict:
        """Facts about the host for the control plane (runtime, versions, cpus, memory...)."""

    def images(self) -> list[dict]:
        """Local images (repository, tag, id, size, created); empty for runtimes without images."""
        return []

    def pull(self, repository: str, tag: str, progress) -> tuple[dict, str]:
        """Pull ``repository:tag``, calling ``progress(dict)`` as it goes; returns (final progress, log)."""
        raise RuntimeError_(f"the {self.name} runtime has no images to pull")

    # --- side-by-side replacement (image upgrades) ----------------------------------------------
    # begin_replace sets the camera's current process aside (stopped, kept) and starts one from the
    # new spec under the camera's own name; then exactly one of commit_replace (drop the old one)
    # or rollback_replace (drop the new one, restore the old one as it was) ends it. While it lasts,
    # observe()/observe_all() report only the new process. All are idempotent.

    def begin_replace(self, spec: CameraSpec) -> dict:
        """Returns {"old": Observed | None, "new": Observed, "started_ms": int}; "old" is None when
        the camera already runs ``spec`` (a repeated request after success)."""
        raise RuntimeError_(f"the {self.name} runtime runs cameras without images: upgrades need the Docker runtime")

    def commit_replace(self, name: str) -> None:
        raise RuntimeError_(f"the {self.name} runtime runs cameras without images: upgrades need the Docker runtime")

    def rollback_replace(self, name: str) -> Observed | None:
        raise RuntimeError_(f"the {self.name} runtime runs cameras without images: upgrades need the Docker runtime")
