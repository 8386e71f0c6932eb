"""A real Docker registry (Debian's ``docker-registry``) and camera images of several versions in it.

The registry listens on 127.0.0.1:<free port>, which a Docker engine treats as insecure by default
(127.0.0.0/8), so pushes and pulls are plain HTTP. Its storage is a temporary directory.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from pathlib import Path

import docker
import docker.errors
import requests

from tests.support.services import Process, free_port, wait_until

REGISTRY_BINARY = "/usr/bin/docker-registry"

# A camera program that exits at once with code 3: the broken version.
BROKEN_ENTRYPOINT = '["python", "-c", "import sys; sys.exit(3)"]'


class Registry:
    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.workdir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: edgeproxy-tests-only\n"
        )
        self.process = Process([REGISTRY_BINARY, "serve", str(config)], self.workdir / "registry.log")
        wait_until(lambda: requests.get(self.url + "/v2/", timeout=1).status_code == 200, 20, message="registry")

    def tags(self, repository: str) -> list[str]:
        response = requests.get(f"{self.url}/v2/{repository}/tags/list", timeout=5)
        return response.json().get("tags") or [] if response.status_code == 200 else []

    def stop(self) -> None:
        self.process.stop()


def build_variant(client: docker.DockerClient, base: str, tag: str, version: str, entrypoint: str | None = None,
                  pad_bytes: int = 1 << 20) -> str:
    """An image ``FROM base`` with its own layer (``pad_bytes`` of noise, so a pull has bytes to
    fetch) and a version label; ``entrypoint`` replaces the camera program. Returns the image id."""
    files = {"version": version.encode(), "pad": os.urandom(pad_bytes)}
    dockerfile = f"FROM {base}\nCOPY version pad /etc/edgeproxy-camera/\nLABEL io.edgeproxy.camera-version={version}\n"
    if entrypoint:
        dockerfile += f"ENTRYPOINT {entrypoint}\n"
    files["Dockerfile"] = dockerfile.encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image, _ = client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True)
    return image.id


def push(client: docker.DockerClient, repository: str, tag: str) -> None:
    for event in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in event:
            raise RuntimeError(f"push of {repository}:{tag} failed: {event['error']}")


def untag(client: docker.DockerClient, image: str) -> None:
    """Remove a local tag (the image goes too when nothing else uses it); never prunes anything else."""
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(image, force=True, noprune=False)


def has_image(client: docker.DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False


class CameraVersions:
    """Camera images of several versions in a registry: ``repository`` and ``image(version)``."""

    def __init__(self, repository: str, versions: tuple[str, ...], broken: tuple[str, ...]):
        self.repository = repository
        self.versions = versions
        self.broken = broken

    def image(self, version: str) -> str:
        return f"{self.repository}:{version}"
