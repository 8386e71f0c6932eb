"""Choosing a runtime: Docker when an engine answers, the local runtime otherwise."""

from __future__ import annotations

import pytest

from worker.runtimes import get_runtime
from worker.runtimes.local import LocalRuntime

from .conftest import unique


def test_local(local_state_root):
    runtime = get_runtime(unique("rt-get"), kind="local", state_dir=local_state_root,
                          network="host", volumes=["/a:/b"])  # Docker-only options are ignored
    try:
        assert isinstance(runtime, LocalRuntime)
    finally:
        runtime.close()


@pytest.mark.docker
def test_docker_and_auto(docker_client, local_state_root):
    from worker.runtimes.docker import DockerRuntime

    for kind in ("docker", "auto"):
        runtime = get_runtime(unique("rt-get"), kind=kind, network="none", volumes=["/a:/b:ro"],
                              state_dir=local_state_root, command="python -m x")  # local options ignored
        assert isinstance(runtime, DockerRuntime)
        assert runtime.network == "none" and runtime.volumes == ["/a:/b:ro"]
        runtime.close()


def test_auto_without_engine_is_local(monkeypatch, local_state_root):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    runtime = get_runtime(unique("rt-get"), state_dir=local_state_root)
    try:
        assert isinstance(runtime, LocalRuntime)
    finally:
        runtime.close()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown runtime kind"):
        get_runtime("h", kind="podman")
    with pytest.raises(TypeError, match="no_such_option"):
        get_runtime("h", kind="local", no_such_option=1)
