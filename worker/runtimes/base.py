"""What an edge worker needs from the thing that runs camera processes.

Two implementations: ``DockerRuntime`` (one container per camera, through the docker SDK) and
``LocalRuntime`` (the same camera program as a supervised child process). Both only ever touch
camera processes that carry our marks for *this* host (labels for Docker), never anything else.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

# Docker ContainerState keys as the API returns them in ``state``, and Docker's "never": part of
# the edge -> control contract (re-exported here for the runtimes).
from edgeproxy.contracts.statuses import STATE_KEYS as STATE_KEYS
from edgeproxy.contracts.statuses import ZERO_TIME as ZERO_TIME
from worker.redaction import rtmp_secrets, url_password

# Labels on every container we make. Never a secret in a label.
LABEL_MANAGED = "io.edgeproxy.managed"
LABEL_CAMERA = "io.edgeproxy.camera"
LABEL_CAMERA_ID = "io.edgeproxy.camera-id"
LABEL_HOST = "io.edgeproxy.host"


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


class RuntimeError_(Exception):
    """A runtime operation failed; the message is safe to show (no secrets, no raw daemon dump)."""


class Runtime(abc.ABC):
    name: str = "abstract"

    def __init__(self, host: str):
        self.host = host

    @abc.abstractmethod
    def ensure_running(self, spec: CameraSpec) -> Observed:
        """Create (or recreate with the new spec) and start the camera process; idempotent."""

    @abc.abstractmethod
    def stop(self, name: str, timeout: float = 5.0) -> Observed | None:
        """Stop the camera process and keep it (None if there is none); idempotent."""

    @abc.abstractmethod
    def remove(self, name: str) -> bool:
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
