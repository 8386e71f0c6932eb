"""Camera runtimes of the edge worker: Docker containers, or supervised local processes.

    runtime = get_runtime(host, kind="auto", network=..., volumes=..., command=..., state_dir=...)

``auto`` uses Docker when an engine answers within about a second, else the local runtime.
Options go to the runtime chosen; options that only the other runtime takes are ignored (so one
call can carry the settings of both), options neither takes are a TypeError.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from .base import (
    LABEL_CAMERA,
    LABEL_CAMERA_ID,
    LABEL_HOST,
    LABEL_MANAGED,
    STATE_KEYS,
    ZERO_TIME,
    CameraSpec,
    Observed,
    Runtime,
    RuntimeError_,
)

if TYPE_CHECKING:
    from .docker import DockerRuntime

KINDS = ("auto", "docker", "local")

__all__ = [
    "KINDS", "LABEL_CAMERA", "LABEL_CAMERA_ID", "LABEL_HOST", "LABEL_MANAGED", "STATE_KEYS", "ZERO_TIME",
    "CameraSpec", "Observed", "Runtime", "RuntimeError_", "docker_available", "get_runtime",
]


def docker_available(timeout: float = 1.0) -> bool:
    """Does a Docker engine answer (DOCKER_HOST or the default socket) within ``timeout``?"""
    try:
        from .docker import DockerRuntime
    except ImportError:  # docker SDK not installed
        return False
    return DockerRuntime.available(timeout=timeout)


def _accepted(cls) -> set[str]:
    params = inspect.signature(cls.__init__).parameters
    return {name for name in params if name not in ("self", "host")}


def get_runtime(host: str, kind: str = "auto", **options) -> Runtime:
    """The camera runtime of edge host ``host``: ``docker``, ``local`` or ``auto``."""
    if kind not in KINDS:
        raise ValueError(f"unknown runtime kind {kind!r}: expected one of {', '.join(KINDS)}")
    from .local import LocalRuntime

    classes: list[type[Runtime]] = [LocalRuntime]
    docker_cls: type[DockerRuntime] | None = None
    try:
        from .docker import DockerRuntime

        docker_cls = DockerRuntime
    except ImportError:
        if kind == "docker":
            raise RuntimeError_("the docker SDK is not installed: the Docker runtime is unavailable") from None
    if docker_cls is not None:
        classes.append(docker_cls)
    known = set().union(*(_accepted(cls) for cls in classes))
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"get_runtime() got unexpected option(s): {', '.join(unknown)}")

    if kind == "auto":
        kind = "docker" if docker_cls is not None and docker_cls.available(timeout=1.0) else "local"
    cls = docker_cls if kind == "docker" and docker_cls is not None else LocalRuntime
    accepted = _accepted(cls)
    return cls(host, **{key: value for key, value in options.items() if key in accepted})
