"""Camera processes as Docker containers, one per camera, through the docker SDK.

Only containers that carry our labels for *this* host are ever looked at, started, stopped or
removed; a same-named container without them makes ``ensure_running`` fail instead. Nothing is
pulled and nothing is pruned.

The RTSP URL and the RTMP URL (secrets) are neither in a label nor in the environment: the camera
program reads them from ``/run/edgeproxy/rtsp_url`` and ``/run/edgeproxy/rtmp_url`` (mode 0400),
found through ``EDGEPROXY_RTSP_URL_FILE`` and ``EDGEPROXY_RTMP_URL_FILE``. The runtime writes them
into the camera's own folder under ``secrets_dir`` (EDGEPROXY_CAMERA_SECRETS_DIR, a tmpfs: never on
disk), bind-mounted read-only at ``/run/edgeproxy``, before each start, and deletes the folder when
the camera stops or goes. (Without that directory they are copied into the created container
instead, a slower Docker call.) ``docker inspect`` therefore shows no password or stream key.
Whether a container still matches its spec is decided from a hash of the non-secret configuration
(a label) plus the image id, and the URLs are compared by reading the files back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import io
import json
import logging
import math
import os
import re
import shutil
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import _create_container_args
from docker.types import LogConfig

from worker.redaction import redact

from .base import (
    LABEL_CAMERA,
    LABEL_CAMERA_ID,
    LABEL_HOST,
    LABEL_MANAGED,
    SECRET_URL_FILES,
    STATE_KEYS,
    CameraSpec,
    Observed,
    Runtime,
    RuntimeError_,
    check_name,
    encode_logs,
)

log = logging.getLogger(__name__)

CONTAINER_PREFIX = "edgeproxy-"
# Hash of the container's non-secret configuration; a different hash means "recreate".
LABEL_SPEC_HASH = "io.edgeproxy.spec-hash"
SECRET_DIR = "/run/edgeproxy"
# Where the edge keeps each camera's secret files, on the Docker host (a tmpfs); "off": copy them in.
DEFAULT_SECRETS_DIR = "/dev/shm/edgeproxy-secrets"
# The file in the container of each secret URL, by the camera program's variable.
SECRET_FILES = {var: f"{SECRET_DIR}/{file}" for var, file in SECRET_URL_FILES.items()}
RTSP_URL_FILE = SECRET_FILES["EDGEPROXY_RTSP_URL"]
LOG_TAIL = 100
_SPEC_HASH_VERSION = "1"
_BUILTIN_NETWORK_MODES = {"host", "bridge", "none", "default"}


def container_name(camera_name: str) -> str:
    return f"{CONTAINER_PREFIX}{camera_name}"


# During an upgrade the camera's old container waits under this name (a "." never appears in a
# camera name of the API, so it cannot collide with another camera's container). It keeps its
# labels; observe_all() reports only containers under their camera's own name.
REPLACED_SUFFIX = ".old"


def replaced_name(camera_name: str) -> str:
    return f"{container_name(camera_name)}{REPLACED_SUFFIX}"


def _reason(exc: Exception) -> str:
    """A short, redacted reason out of a daemon error (never the whole raw response)."""
    text = ""
    if isinstance(exc, docker.errors.APIError):
        text = exc.explanation if isinstance(exc.explanation, str) else ""
        if not text and exc.response is not None:
            text = exc.response.reason or ""
    text = " ".join(str(text).split())
    # "failed to create shim task: OCI runtime create failed: ... container process: exec: ...: unknown"
    marker = "unable to start container process: "
    if marker in text:
        text = text.rsplit(marker, 1)[1].removesuffix(": unknown")
    if len(text) > 200:
        text = text[:197] + "..."
    return redact(text) or type(exc).__name__


@contextlib.contextmanager
def _daemon(action: str):
    """Turn docker SDK / transport errors into RuntimeError_ with one clear sentence."""
    try:
        yield
    except RuntimeError_:
        raise
    except requests.exceptions.Timeout as exc:
        raise RuntimeError_(f"the Docker engine did not answer in time while trying to {action}") from exc
    except requests.exceptions.ConnectionError as exc:
        raise RuntimeError_(f"the Docker engine is not reachable (while trying to {action})") from exc
    except docker.errors.APIError as exc:
        raise RuntimeError_(f"Docker could not {action}: {_reason(exc)}") from exc
    except docker.errors.DockerException as exc:
        raise RuntimeError_(f"Docker could not {action}: {type(exc).__name__}") from exc


def _rfc3339_from_unix(seconds) -> str:
    try:
        return datetime.fromtimestamp(int(seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


class DockerRuntime(Runtime):
    """One container per camera on a Docker engine (no registry needed: images must be local).

    ``host`` is this edge worker's name: several workers may share one engine, each sees only the
    containers labelled with its own host. ``volumes`` are bind mounts ``"src:dst[:mode]"``.
    ``network`` is ``"host"`` (default), another network mode (``bridge``, ``none``,
    ``container:<id>``) or the name of a user-defined network.
    """

    name = "docker"

    def __init__(
        self,
        host: str,
        client: docker.DockerClient | None = None,
        network: str = "host",
        volumes: list[str] | tuple[str, ...] | None = None,
        log_max_size: str = "10m",
        log_max_files: int = 3,
        timeout: float = 30.0,
        stop_timeout: float = 10.0,
        secrets_dir: str | None = DEFAULT_SECRETS_DIR,
    ):
        super().__init__(host)
        self.network = network or "host"
        self.volumes = [str(v) for v in (volumes or []) if str(v).strip()]
        for volume in self.volumes:
            if len(volume.split(":")) not in (2, 3) or not all(volume.split(":")[:2]):
                raise RuntimeError_(f"invalid camera volume {volume!r}: expected src:dst[:ro|rw]")
        self.log_max_size = str(log_max_size)
        self.log_max_files = int(log_max_files)
        self.stop_timeout = float(stop_timeout)  # when a container is recreated for a new spec
        self._owns_client = client is None
        if client is None:
            with _daemon("connect"):
                client = docker.from_env(timeout=timeout)
        self.client = client
        # Containers whose RTSP password is registered for log redaction already.
        self._secrets_known: set[str] = set()
        self._image_users: dict[str, str] = {}
        self._image_owners: dict[str, tuple[int, int] | None] = {}  # image id -> uid/gid of its USER
        self._lookups = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"docker-lookup-{host}")
        self.secrets_dir = self._prepare_secrets_dir(secrets_dir)
        # Shared-memory frame rings (worker/camera/shm.py): the directory is mounted into every
        # camera container at the same path; the container joins the ring group to write there.
        from worker.camera import shm

        try:
            self.shm = shm.ShmSettings.from_env()
        except shm.SettingsError as exc:
            raise RuntimeError_(str(exc)) from None
        if self.shm.enabled and self.shm.group is None:
            self.shm = dataclasses.replace(self.shm, group=os.getegid())
        if self.shm.enabled:
            try:
                shm.prepare_dir(self.shm)
            except OSError as exc:
                log.warning("no shared-memory frame rings (%s: %s); frames go through Redis",
                            self.shm.directory, exc.strerror or type(exc).__name__, extra={"host": self.host})
                self.shm = dataclasses.replace(self.shm, directory=None)

        # Recordings (worker/camera/recorder.py): each camera's own folder is mounted at the same path.
        from worker.camera.recorder import RecordingSettings, RecordingSettingsError

        try:
            self.recording = RecordingSettings.from_env()
        except RecordingSettingsError as exc:
            raise RuntimeError_(str(exc)) from None

    def _prepare_secrets_dir(self, directory: str | None) -> str | None:
        """This host's folder of camera secret folders (owner-only: no other user of the machine
        gets in), or None to copy the files into each container."""
        if not directory or directory.strip().lower() == "off":
            return None
        if not os.path.isabs(directory):
            raise RuntimeError_(f"the camera secrets directory must be an absolute path or 'off', got {directory!r}")
        folder = os.path.join(directory, self.host)
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            for path in (directory, folder):
                os.chmod(path, 0o700)
        except OSError as exc:
            log.warning("camera secrets directory %s not usable (%s); the URLs are copied into each container",
                        folder, exc.strerror or type(exc).__name__, extra={"host": self.host})
            return None
        return folder

    def _secrets_folder(self, name: str) -> str:
        assert self.secrets_dir, "secrets are copied into containers"
        return os.path.join(self.secrets_dir, name)

    def _secrets_volumes(self, spec: CameraSpec) -> list[str]:
        return [f"{self._secrets_folder(spec.name)}:{SECRET_DIR}:ro"] if self.secrets_dir else []

    def _prepare_secrets_folder(self, name: str) -> None:
        """The camera's folder, there before its container is made (Docker would make a missing
        one, as root). Only the files in it are secret: its parent is owner-only."""
        if not self.secrets_dir:
            return
        folder = self._secrets_folder(name)
        try:
            os.makedirs(folder, exist_ok=True)
            os.chmod(folder, 0o755)
        except OSError as exc:
            raise RuntimeError_(f"the secrets folder of camera {name} could not be made "
                                f"({exc.strerror or type(exc).__name__})") from None

    def _write_secrets(self, spec: CameraSpec, owner: tuple[int, int] | None) -> None:
        """The spec's secret files in the camera's folder (mounted at SECRET_DIR), replaced
        atomically: readable by the camera's user only when the file can be given to it."""
        folder = self._secrets_folder(spec.name)
        urls = spec.secret_urls()
        give = owner is not None and (os.geteuid() == 0 or owner[0] == os.geteuid())
        self._prepare_secrets_folder(spec.name)
        try:
            for var, file in SECRET_URL_FILES.items():
                path = os.path.join(folder, file)
                if var not in urls:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                    continue
                temporary = os.path.join(folder, f".{file}.new")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                try:
                    os.write(fd, urls[var].encode("utf-8"))
                    if give and owner is not None and owner != (os.geteuid(), os.getegid()):
                        os.fchown(fd, *owner)
                    # A user that cannot be resolved or given the file reads it as any user (the
                    # folder above is owner-only on the host).
                    os.fchmod(fd, 0o400 if give else 0o444)
                finally:
                    os.close(fd)
                os.replace(temporary, path)
        except OSError as exc:
            raise RuntimeError_(f"the camera URLs of {spec.name} could not be written for its container "
                                f"({exc.strerror or type(exc).__name__})") from None

    def _remove_secrets(self, name: str) -> None:
        if self.secrets_dir:
            shutil.rmtree(self._secrets_folder(name), ignore_errors=True)

    def _secret_file(self, container, path: str) -> bytes | None:
        """A secret file as the camera reads it: from its folder here, else from the container."""
        if self.secrets_dir:
            try:
                with open(os.path.join(self._secrets_folder((container.labels or {}).get(LABEL_CAMERA, "")),
                                       os.path.basename(path)), "rb") as handle:
                    return handle.read()
            except OSError:
                pass
        return self._read_file(container, path)

    def _recording_volumes(self, spec: CameraSpec) -> list[str]:
        if not self.recording.enabled:
            return []
        folder = self.recording.camera_dir(spec.name)
        return [f"{folder}:{folder}:rw"]

    def _prepare_recordings(self, spec: CameraSpec, image_user: str) -> None:
        """The camera's recordings folder, owned by the user the camera runs as, owner-only."""
        if not self.recording.enabled:
            return
        folder = self.recording.camera_dir(spec.name)
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            uid, _, gid = (image_user or "").partition(":")
            if uid.isdigit() and os.geteuid() == 0:
                os.chown(folder, int(uid), int(gid) if gid.isdigit() else int(uid))
        except OSError as exc:
            log.warning("camera %s: recordings folder %s not ready (%s)", spec.name, folder, exc.strerror,
                        extra={"camera": spec.name, "host": self.host})

    def _remove_ring(self, name: str, camera_id: str) -> None:
        from worker.camera import shm

        with contextlib.suppress(OSError):
            shm.remove_ring(self.shm, name, camera_id)

    # --- discovery ------------------------------------------------------------------------------

    @classmethod
    def available(cls, timeout: float = 1.0) -> bool:
        """Does a Docker engine (DOCKER_HOST or the default socket) answer within ``timeout``?"""
        client = None
        try:
            client = docker.from_env(timeout=timeout)
            return bool(client.ping())
        except Exception:  # noqa: BLE001 - any failure means "no usable engine"
            return False
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()

    def close(self) -> None:
        self._lookups.shutdown(wait=False)
        if self._owns_client:
            with contextlib.suppress(Exception):
                self.client.close()

    # --- helpers ----------------------------------------------------------------------------------

    def _labels(self, spec: CameraSpec) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_CAMERA: spec.name,
            LABEL_CAMERA_ID: str(spec.camera_id),
            LABEL_HOST: self.host,
        }

    def _environment(self, spec: CameraSpec) -> dict[str, str]:
        env = self._camera_environment(spec, SECRET_FILES.__getitem__)
        env.update(self.shm.environment())  # the mounted directory, whatever the spec says
        env.update(self.recording.environment())
        return env

    @staticmethod
    def _secret_files(spec: CameraSpec) -> dict[str, bytes]:
        return {SECRET_FILES[var]: url.encode("utf-8") for var, url in spec.secret_urls().items()}

    def _shm_volumes(self) -> list[str]:
        return [f"{self.shm.directory}:{self.shm.directory}:rw"] if self.shm.enabled else []

    def _all_volumes(self, spec: CameraSpec) -> list[str]:
        return list(self.volumes) + self._shm_volumes() + self._recording_volumes(spec) + self._secrets_volumes(spec)

    def _network_options(self) -> dict:
        mode = self.network
        if mode in _BUILTIN_NETWORK_MODES or mode.startswith("container:"):
            return {"network_mode": mode}
        return {"network": mode}

    def _spec_hash(self, spec: CameraSpec, env: dict[str, str]) -> str:
        """Hash of everything that shapes the container except the secret URL (compared apart)."""
        config = {
            "v": _SPEC_HASH_VERSION,
            "image": spec.image,
            "env": sorted(env.items()),
            "labels": sorted(self._labels(spec).items()),
            "network": self.network,
            "volumes": self._all_volumes(spec),
            "log": [self.log_max_size, self.log_max_files],
            "command": list(spec.command) if spec.command else None,
        }
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()

    def _is_ours(self, labels: dict | None, camera: str | None = None) -> bool:
        labels = labels or {}
        if labels.get(LABEL_MANAGED) != "true" or labels.get(LABEL_HOST) != self.host:
            return False
        return camera is None or labels.get(LABEL_CAMERA) == camera

    def _get(self, name: str):
        """The container named for this camera (ours or not), or None."""
        try:
            with _daemon(f"inspect the container of camera {name}"):
                return self.client.containers.get(container_name(name))
        except RuntimeError_ as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return None
            raise

    def _names_present(self, name: str) -> frozenset[str]:
        """Which of the camera's container names (its own, and the one an upgrade sets aside) are
        taken on the engine, in one listing: a new camera (every connect) then needs no inspect of
        either, where two inspects answered "not found". A container made after this look is met
        by the create's conflict (handled there)."""
        wanted = (container_name(name), replaced_name(name))
        with _daemon(f"list the containers of camera {name}"):
            # Docker matches the name filter as a regular expression on "/<name>"; anchored, it is exact.
            found = self.client.api.containers(all=True, filters={"name": [f"^/{re.escape(n)}$" for n in wanted]})
        return frozenset(n.lstrip("/") for item in found for n in item.get("Names") or () if n.lstrip("/") in wanted)

    def _get_ours(self, name: str):
        container = self._get(name)
        if container is None or not self._is_ours(container.labels, name):
            return None
        return container

    def _image_id(self, image: str) -> str:
        try:
            with _daemon(f"look up image {image}"):
                found = self.client.images.get(image)
                # Remembered for _create, which needs the image's user: one inspect, not two.
                self._image_users[found.id] = found.attrs.get("Config", {}).get("User") or ""
                return found.id
        except RuntimeError_ as exc:
            if isinstance(exc.__cause__, docker.errors.ImageNotFound):
                raise RuntimeError_(f"image {image} is not on this host") from None
            raise

    def _read_file(self, container, path: str) -> bytes | None:
        try:
            stream, _stat = container.get_archive(path)
            data = b"".join(stream)
        except (docker.errors.APIError, requests.exceptions.RequestException):
            return None
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                member = next((m for m in tar.getmembers() if m.isfile()), None)
                if member is None:
                    return None
                handle = tar.extractfile(member)
                return handle.read() if handle else None
        except tarfile.TarError:
            return None

    def _file_owner(self, container, image_user: str) -> tuple[int, int] | None:
        """uid/gid the camera runs as (the image's USER), None if it cannot be known."""
        user, _, group = (image_user or "").partition(":")
        if not user or user in ("0", "root"):
            return 0, int(group) if group.isdigit() else 0
        if user.isdigit():
            return int(user), int(group) if group.isdigit() else int(user)
        passwd = self._read_file(container, "/etc/passwd")
        for line in (passwd or b"").decode("utf-8", "replace").splitlines():
            fields = line.split(":")
            if len(fields) >= 4 and fields[0] == user and fields[2].isdigit() and fields[3].isdigit():
                return int(fields[2]), int(group) if group.isdigit() else int(fields[3])
        return None

    def _owner_for(self, container, image_id: str) -> tuple[int, int] | None:
        """The uid/gid of the image's USER, resolved once per image."""
        if image_id not in self._image_owners:
            self._image_owners[image_id] = self._file_owner(container, self._image_users.get(image_id, ""))
        return self._image_owners[image_id]

    def _hand_over_secrets(self, container, spec: CameraSpec, image_id: str) -> None:
        """The spec's secret files where the container reads them at its next start."""
        owner = self._owner_for(container, image_id)
        if self.secrets_dir:
            self._write_secrets(spec, owner)
        else:
            self._put_secrets(container, self._secret_files(spec), owner)

    def _put_secrets(self, container, files: dict[str, bytes], owner: tuple[int, int] | None) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path, data in files.items():
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size = len(data)
                info.mtime = int(time.time())
                if owner is None:  # named user we could not resolve: readable by the container's users
                    info.mode = 0o444
                else:
                    info.mode = 0o400
                    info.uid, info.gid = owner
                tar.addfile(info, io.BytesIO(data))
        # Extracting at "/" creates /run/edgeproxy when the image lacks it.
        with _daemon("copy the camera URLs into the container"):
            container.put_archive("/", buf.getvalue())

    def _remember_secret_of(self, container) -> None:
        """Register the secrets of a container we did not create in this process (for logs)."""
        if container.id in self._secrets_known:
            return
        rtsp = self._secret_file(container, RTSP_URL_FILE)
        if rtsp is not None:
            rtmp = self._secret_file(container, SECRET_FILES["EDGEPROXY_RTMP_URL"])
            self._register_secrets(CameraSpec(
                camera_id="", name="", host="", image="", rtsp_url=rtsp.decode("utf-8", "replace").strip(),
                rtmp_url=rtmp.decode("utf-8", "replace").strip() if rtmp else ""))
            self._secrets_known.add(container.id)

    # --- create / start -----------------------------------------------------------------------------

    def _check_network(self) -> None:
        options = self._network_options()
        if "network" not in options:
            return
        try:
            with _daemon(f"look up network {self.network}"):
                self.client.networks.get(self.network)
        except RuntimeError_ as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                raise RuntimeError_(f"Docker network {self.network} does not exist on this host") from None
            raise

    def _create(self, spec: CameraSpec, image_id: str, env: dict[str, str], spec_hash: str):
        self._check_network()
        self._prepare_recordings(spec, self._image_users.get(image_id, ""))
        self._prepare_secrets_folder(spec.name)
        labels = self._labels(spec)
        labels[LABEL_SPEC_HASH] = spec_hash
        options = dict(
            image=spec.image,
            name=container_name(spec.name),
            labels=labels,
            environment=env,
            volumes=self._all_volumes(spec),
            group_add=[str(self.shm.group)] if self.shm.enabled else None,
            restart_policy={"Name": "unless-stopped"},
            # docker-init as PID 1 forwards SIGTERM even before the camera program installs its handler.
            init=True,
            log_config=LogConfig(
                type=LogConfig.types.JSON,
                config={"max-size": self.log_max_size, "max-file": str(self.log_max_files)},
            ),
            detach=True,
            **self._network_options(),
        )
        if spec.command:
            options["entrypoint"] = list(spec.command)
        try:
            with _daemon(f"create the container of camera {spec.name}"):
                # The SDK's own translation of create()'s options, without the inspect that
                # containers.create() adds: what the start needs of the new container is known.
                created = self.client.api.create_container(**_create_container_args(
                    {**options, "command": None, "version": self.client.api._version}))
            container = self.client.containers.prepare_model({
                "Id": created["Id"], "Name": f"/{options['name']}", "Image": image_id,
                "Config": {"Labels": labels, "Image": spec.image}, "State": {"Status": "created"}})
        except RuntimeError_ as exc:
            cause = exc.__cause__
            if isinstance(cause, docker.errors.ImageNotFound):
                raise RuntimeError_(f"image {spec.image} is not on this host") from None
            if isinstance(cause, docker.errors.NotFound) and "network" in _reason(cause).lower():
                raise RuntimeError_(f"Docker network {self.network} does not exist on this host") from None
            raise
        try:
            self._hand_over_secrets(container, spec, image_id)
        except BaseException:
            with contextlib.suppress(Exception):
                container.remove(force=True, v=True)
            raise
        self._secrets_known.add(container.id)
        log.info("created container %s for camera %s", container.short_id, spec.name,
                 extra={"camera": spec.name, "host": self.host})
        return container

    def _start(self, container, camera: str) -> None:
        try:
            with _daemon(f"start the container of camera {camera}"):
                container.start()
        except RuntimeError_ as exc:
            cause = exc.__cause__
            if isinstance(cause, docker.errors.NotFound) and "network" in _reason(cause).lower():
                raise RuntimeError_(f"Docker network {self.network} does not exist on this host") from cause
            raise

    def _matches(self, container, spec: CameraSpec, image_id: str, spec_hash: str) -> bool:
        if container.labels.get(LABEL_SPEC_HASH) != spec_hash:
            return False
        if container.attrs.get("Image") != image_id:
            return False
        if self.secrets_dir and container.status in ("created", "exited"):
            return True  # its files are written afresh before it starts
        for path, data in self._secret_files(spec).items():
            current = self._secret_file(container, path)
            if current is None or not hmac.compare_digest(current, data):
                return False
        return True

    def _remove_container(self, container, timeout: float | None, camera: str) -> None:
        with _daemon(f"remove the container of camera {camera}"):
            try:
                if timeout is not None and container.status in ("running", "restarting", "paused"):
                    container.stop(timeout=max(0, math.ceil(timeout)))
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and "in progress" in _reason(exc):
                    return
                raise
        self._secrets_known.discard(container.id)

    # --- Runtime interface -------------------------------------------------------------------------

    def ensure_running(self, spec: CameraSpec) -> Observed:
        self._accept(spec)
        with self._camera_lock(spec.name):
            # The image's look-up and the names' listing at once: two requests to the engine, one wait.
            image_lookup = self._lookups.submit(self._image_id, spec.image)
            try:
                present = self._names_present(spec.name)
            finally:
                image_id = image_lookup.result()
            env = self._environment(spec)
            spec_hash = self._spec_hash(spec, env)
            if replaced_name(spec.name) in present:
                self._restore_replaced(spec.name)  # an upgrade that was interrupted: its old container back
            container = self._get(spec.name) if present else None
            if container is not None:
                self._check_owner(container, spec.name)
                if container.status in ("removing", "dead") or not self._matches(
                    container, spec, image_id, spec_hash
                ):
                    log.info("recreating container of camera %s (spec or image changed)", spec.name,
                             extra={"camera": spec.name, "host": self.host})
                    self._remove_container(container, self.stop_timeout, spec.name)
                    container = None
            handed_over = False  # a container made here has its secret files already
            if container is None:
                try:
                    container = self._create(spec, image_id, env, spec_hash)
                    handed_over = True
                except RuntimeError_ as exc:
                    if not (isinstance(exc.__cause__, docker.errors.APIError)
                            and exc.__cause__.status_code == 409):
                        raise
                    # Someone created it between our look-up and our create: use theirs if it fits.
                    container = self._get(spec.name)
                    if container is None:
                        raise
                    self._check_owner(container, spec.name)
                    if not self._matches(container, spec, image_id, spec_hash):
                        raise
            if container.status == "paused":
                with _daemon(f"unpause the container of camera {spec.name}"):
                    container.unpause()
            elif container.status in ("created", "exited"):
                if self.secrets_dir and not handed_over:
                    self._hand_over_secrets(container, spec, image_id)
                self._start(container, spec.name)
        observed = self.observe(spec.name, with_logs=False)  # a container just started has no logs yet
        if observed is None:
            raise RuntimeError_(f"the container of camera {spec.name} disappeared while starting")
        return observed

    def _check_owner(self, container, camera: str) -> None:
        labels = container.labels or {}
        if labels.get(LABEL_MANAGED) != "true":
            raise RuntimeError_(
                f"a container named {container_name(camera)} exists on this engine but was not made by "
                "edgeproxy; it is left alone: remove or rename it to run this camera"
            )
        if labels.get(LABEL_HOST) != self.host:
            raise RuntimeError_(
                f"a container named {container_name(camera)} belongs to edge host "
                f"{labels.get(LABEL_HOST) or 'unknown'}, not {self.host}"
            )
        if labels.get(LABEL_CAMERA) != camera:
            raise RuntimeError_(f"the container named {container_name(camera)} is labelled for another camera")

    def stop(self, name: str, timeout: float = 5.0) -> Observed | None:
        check_name(name)
        with self._camera_lock(name):
            container = self._get_ours(name)
            if container is None:
                return None
            if container.status in ("running", "restarting", "paused"):
                with _daemon(f"stop the container of camera {name}"):
                    try:
                        container.stop(timeout=max(0, math.ceil(timeout)))
                    except docker.errors.NotFound:
                        return None
            self._remove_ring(name, (container.labels or {}).get(LABEL_CAMERA_ID, ""))
            self._remove_secrets(name)  # written afresh at its next start
        return self.observe(name)

    def remove(self, name: str, timeout: float = 5.0) -> bool:
        check_name(name)
        with self._camera_lock(name):
            replaced = self._get_replaced(name)  # left by an interrupted upgrade
            if replaced is not None:
                self._remove_container(replaced, None, name)
            container = self._get_ours(name)
            if container is None:
                return replaced is not None
            self._remove_container(container, timeout, name)
            self._remove_ring(name, (container.labels or {}).get(LABEL_CAMERA_ID, ""))
            self._remove_secrets(name)
            return True

    def _observed(self, container, with_logs: bool) -> Observed:
        attrs = container.attrs
        state_in = attrs.get("State") or {}
        state = {key: state_in.get(key) for key in STATE_KEYS}
        labels = container.labels or {}
        if not state_in.get("Running") and container.name == container_name(labels.get(LABEL_CAMERA, "")):
            # A camera that died (even by SIGKILL) leaves its ring behind: its memory goes now.
            self._remove_ring(labels.get(LABEL_CAMERA, ""), labels.get(LABEL_CAMERA_ID, ""))
        logs = None
        if with_logs:
            self._remember_secret_of(container)
            # Like ``docker logs --tail 100``: the last lines of both streams, then split.
            try:
                with _daemon(f"read the logs of camera {labels.get(LABEL_CAMERA)}"):
                    out = container.logs(stdout=True, stderr=False, tail=LOG_TAIL)
                    err = container.logs(stdout=False, stderr=True, tail=LOG_TAIL)
                logs = encode_logs(out, err)
            except RuntimeError_ as exc:
                # 409: dead or being removed (by another thread, now): no logs to read, and the
                # control plane keeps its copy. Failing here failed the whole heartbeat, and a
                # host removing cameras steadily was taken for offline.
                if getattr(exc.__cause__, "status_code", None) != 409:
                    raise
        return Observed(
            name=labels.get(LABEL_CAMERA, ""),
            camera_id=labels.get(LABEL_CAMERA_ID, ""),
            container_id=attrs.get("Id", container.id),
            status=state_in.get("Status") or container.status,
            state=state,
            image=(attrs.get("Config") or {}).get("Image") or "",
            logs=logs,
            restarts=int(attrs.get("RestartCount") or 0),
        )

    def observe(self, name: str, with_logs: bool = True) -> Observed | None:
        check_name(name)
        container = self._get_ours(name)
        if container is None:
            return None
        try:
            return self._observed(container, with_logs)
        except RuntimeError_ as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return None
            raise

    def observe_all(self, with_logs: bool = False) -> list[Observed]:
        filters = {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_HOST}={self.host}"]}
        with _daemon("list camera containers"):
            listed = self.client.containers.list(all=True, sparse=True, filters=filters)

        def inspect(item):
            try:
                with _daemon("inspect a camera container"):
                    container = self.client.containers.get(item.id)
                if not self._is_ours(container.labels):
                    return None
                if container.name != container_name(container.labels.get(LABEL_CAMERA, "")):
                    return None  # an old container set aside by an upgrade in progress
                return self._observed(container, with_logs)
            except RuntimeError_ as exc:
                if isinstance(exc.__cause__, docker.errors.NotFound):
                    return None  # removed between the list and the inspect
                raise

        if len(listed) <= 4:
            results = [inspect(item) for item in listed]
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(listed))) as pool:
                results = list(pool.map(inspect, listed))
        return sorted((r for r in results if r is not None), key=lambda o: o.name)

    def facts(self) -> dict:
        with _daemon("read the engine's facts"):
            info = self.client.info()
            version = self.client.version()
        return {
            "runtime": "docker",
            "server_version": version.get("Version") or info.get("ServerVersion") or "",
            "api_version": version.get("ApiVersion") or "",
            "cpus": info.get("NCPU"),
            "memory": info.get("MemTotal"),
            "os": info.get("OperatingSystem") or version.get("Os") or "",
            "kernel": info.get("KernelVersion") or version.get("KernelVersion") or "",
            "architecture": info.get("Architecture") or version.get("Arch") or "",
        }

    def pull(self, repository: str, tag: str, progress) -> tuple[dict, str]:
        """Pull ``repository:tag`` on explicit request (``ensure_running`` never pulls); see pull.py."""
        from .pull import pull

        return pull(self.client, repository, tag, progress)

    def images(self) -> list[dict]:
        """Tagged local images (dangling ``<none>`` images are left out)."""
        with _daemon("list local images"):
            listed = self.client.api.images()
        result = []
        for image in listed:
            for repo_tag in image.get("RepoTags") or []:
                if not repo_tag or repo_tag == "<none>:<none>":
                    continue
                repository, _, tag = repo_tag.rpartition(":")
                if not repository or "/" in tag:  # "host:port/repo" without a tag
                    repository, tag = repo_tag, ""
                result.append({
                    "repository": repository,
                    "tag": tag,
                    "id": image.get("Id", ""),
                    "size": image.get("Size"),
                    "created": _rfc3339_from_unix(image.get("Created")),
                })
        return sorted(result, key=lambda i: (i["repository"], i["tag"]))

    # --- side-by-side replacement (image upgrades) ---------------------------------------------------

    def _get_replaced(self, name: str):
        """The camera's container set aside by an upgrade (ours only), or None."""
        try:
            with _daemon(f"inspect the old container of camera {name}"):
                container = self.client.containers.get(replaced_name(name))
        except RuntimeError_ as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return None
            raise
        return container if self._is_ours(container.labels, name) else None

    def _restore_replaced(self, name: str) -> bool:
        """Put a set-aside container back under the camera's name and start it (removing the new
        one that took its place). False when there is none. Caller holds the camera's lock."""
        old = self._get_replaced(name)
        if old is None:
            return False
        current = self._get(name)
        if current is not None:
            self._check_owner(current, name)  # a foreign container took the name: touch nothing
            self._remove_container(current, 2.0, name)
        with _daemon(f"restore the old container of camera {name}"):
            old.rename(container_name(name))
            old.reload()
            if old.status in ("created", "exited"):
                old.start()
            elif old.status == "paused":
                old.unpause()
        log.info("camera %s: old container %s restored", name, old.short_id, extra={"camera": name, "host": self.host})
        return True

    def begin_replace(self, spec: CameraSpec) -> dict:
        """Stop the camera's container and set it aside (renamed ``<name>.old``, kept as it is), then
        create and start one from ``spec`` under the camera's name. On any failure the old one is
        back and running. Idempotent: a camera already running ``spec`` is left as it is."""
        self._accept(spec)
        with self._camera_lock(spec.name):
            image_id = self._image_id(spec.image)
            env = self._environment(spec)
            spec_hash = self._spec_hash(spec, env)
            self._restore_replaced(spec.name)  # an earlier attempt was interrupted: start from the old one
            current = self._get(spec.name)
            if current is None:
                raise RuntimeError_(f"camera {spec.name} has no container on this host to upgrade")
            self._check_owner(current, spec.name)
            if current.status not in ("removing", "dead") and self._matches(current, spec, image_id, spec_hash):
                if current.status in ("created", "exited"):
                    if self.secrets_dir:
                        self._hand_over_secrets(current, spec, image_id)
                    self._start(current, spec.name)
                new = self.observe(spec.name, with_logs=False)
                if new is None:
                    raise RuntimeError_(f"the container of camera {spec.name} disappeared")
                return {"old": None, "new": new, "started_ms": 0}
            old = self._observed(current, with_logs=False)
            set_aside = False
            try:
                with _daemon(f"stop the container of camera {spec.name}"):
                    if current.status in ("running", "restarting", "paused"):
                        current.stop(timeout=max(0, math.ceil(self.stop_timeout)))
                    current.rename(replaced_name(spec.name))
                set_aside = True
                container = self._create(spec, image_id, env, spec_hash)
                started_ms = int(time.time() * 1000)
                self._start(container, spec.name)
            except BaseException:
                with contextlib.suppress(Exception):
                    if set_aside:
                        self._restore_replaced(spec.name)
                    else:
                        current.reload()
                        if old.status in ("running", "restarting") and current.status in ("created", "exited"):
                            current.start()
                raise
            log.info("camera %s: container %s set aside, %s started on %s", spec.name, current.short_id,
                     container.short_id, spec.image, extra={"camera": spec.name, "host": self.host})
        new = self.observe(spec.name, with_logs=False)
        if new is None:
            self.rollback_replace(spec.name)
            raise RuntimeError_(f"the new container of camera {spec.name} disappeared while starting")
        return {"old": old, "new": new, "started_ms": started_ms}

    def commit_replace(self, name: str) -> None:
        """The new container stays: remove the old one set aside (idempotent)."""
        check_name(name)
        with self._camera_lock(name):
            old = self._get_replaced(name)
            if old is not None:
                self._remove_container(old, None, name)
                log.info("camera %s: old container %s removed", name, old.short_id,
                         extra={"camera": name, "host": self.host})

    def rollback_replace(self, name: str) -> Observed | None:
        """Remove the new container and restore the old one, running, as it was (idempotent)."""
        check_name(name)
        with self._camera_lock(name):
            self._restore_replaced(name)
        return self.observe(name, with_logs=False)

