"""App processes on this edge host (issue 16): one Docker container per app, next to the cameras.

The control plane sends a spec sealed to this host's key (it holds the app's secret environment
values); this module opens it, runs the container the safe way and reports like a camera
operation (``OperationFinished``). Heartbeats carry ``apps``: what each app container is doing.

What a container gets, whatever the spec says: no privileged mode, no Docker socket, no added
capabilities, ``no-new-privileges``, CPU and memory limits, bind mounts only below this app's data
folder (``EDGEPROXY_APP_DATA_DIR/<app>``), the frame rings read-only with the ring group, and the
network ``EDGEPROXY_APP_NETWORK`` unless the spec says host network (its allow-list entry permits
it). When this host's frame server requires API keys, the app gets a key of its own
(worker/frames/app_keys.py), removed with the app. Only containers labelled for an app of *this*
host are ever touched; they carry no camera label, so the camera runtime never sees them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import threading
from pathlib import Path

from django.conf import settings

from edgeproxy.contracts import tasks as messages
from worker import sealing
from worker.frames import app_keys
from worker.frames.config import ConfigError, configured_tokens
from worker.redaction import register_secret
from worker.runtimes.base import STATE_KEYS, RuntimeError_, encode_logs

logger = logging.getLogger("edgeproxy.edge")

LABEL_APP = "io.edgeproxy.app"
LABEL_APP_ID = "io.edgeproxy.app-id"
LABEL_APP_HOST = "io.edgeproxy.app-host"
LABEL_APP_SPEC = "io.edgeproxy.app-spec-hash"
# Names (never values) of its secret variables: a worker that did not start the container (after a
# restart) still masks their values in the logs it reports.
LABEL_APP_SECRETS = "io.edgeproxy.app-secret-names"
# "edgeproxy." never starts a camera's container name ("edgeproxy-<camera>"): no collision.
APP_CONTAINER_PREFIX = "edgeproxy.app."
LOG_TAIL = 100
_SPEC_HASH_VERSION = "1"


def app_container_name(app_name: str) -> str:
    return f"{APP_CONTAINER_PREFIX}{app_name}"


def data_folder(app_name: str) -> Path:
    return Path(settings.EDGEPROXY_APP_DATA_DIR) / app_name


def mount_source(app_name: str, folder: str) -> Path:
    """The host folder of a mount: below the app's data folder, always (checked again here)."""
    base = data_folder(app_name).resolve()
    source = (base / folder).resolve()
    if source != base and base not in source.parents:
        raise RuntimeError_(f"app {app_name}: mount {folder!r} leaves the app's data folder")
    return source


def _reports_failures(method):
    """An unexpected error still ends the operation (failed) instead of leaving it running."""

    @functools.wraps(method)
    def guarded(self, operation_id: str, *args):
        try:
            return method(self, operation_id, *args)
        except Exception:
            logger.exception("app operation %s failed unexpectedly", operation_id,
                             extra={"operation": operation_id, "host": self.host})
            self._finished(operation_id, False, f"internal error on edge host {self.host}; its log has the details")

    return guarded


class AppRunner:
    """The app containers of one edge agent (its Docker client, key and reports)."""

    def __init__(self, agent):
        self.agent = agent
        self.host = agent.host
        self._lock = threading.Lock()

    # --- the engine ----------------------------------------------------------------------------

    @property
    def client(self):
        client = getattr(self.agent.runtime, "client", None)
        if client is None:
            raise RuntimeError_(f"edge host {self.host} runs cameras as local processes: apps need the Docker runtime")
        return client

    def _daemon(self, action: str):
        from worker.runtimes.docker import _daemon

        return _daemon(action)

    def _get(self, app_name: str):
        import docker.errors

        try:
            container = self.client.containers.get(app_container_name(app_name))
        except docker.errors.NotFound:
            return None
        except Exception as exc:  # noqa: BLE001 - any other engine error: one clear sentence
            with self._daemon(f"inspect the container of app {app_name}"):
                raise exc
        labels = container.labels or {}
        if labels.get(LABEL_APP) != app_name or labels.get(LABEL_APP_HOST) != self.host:
            raise RuntimeError_(f"a container named {app_container_name(app_name)} exists but is not this host's "
                                f"app {app_name}; it is left alone")
        return container

    # --- the app's frame-API key ---------------------------------------------------------------

    def _key_store(self) -> app_keys.AppKeyStore:
        return app_keys.AppKeyStore(app_keys.keys_path(settings.STATE_DIR, self.host))

    def _frames_key(self, app_name: str) -> str | None:
        """The app's own key when this host's frame server requires keys (the same
        ``EDGEPROXY_GRPC_TOKENS`` settings as the worker's), else None."""
        try:
            required = bool(configured_tokens())
        except ConfigError as exc:
            raise RuntimeError_(f"app {app_name}: the frame server's keys are not readable: {exc}") from None
        if not required:
            return None
        key = self._key_store().issue(app_name)
        register_secret(key)  # masked in this worker's logs
        return key

    # --- the container's shape -------------------------------------------------------------------

    def _environment(self, spec: dict, frames_key: str | None = None) -> dict[str, str]:
        env = {item["name"]: item["value"] for item in spec.get("env") or []}
        shm = getattr(self.agent.runtime, "shm", None)
        # The frame server of this host, the cameras to read and the rings (docs/apps.md): ours win.
        env.update({
            "EDGEPROXY_APP_NAME": spec["name"],
            "EDGEPROXY_CAMERAS": ",".join(spec.get("cameras") or []),
            "EDGEPROXY_FRAMES_ADDRESS": settings.EDGEPROXY_FRAMES_ADVERTISE,
            "EDGEPROXY_FRAMES_SHM_DIR": shm.directory if shm is not None and shm.enabled else "off",
        })
        if frames_key:
            env[app_keys.FRAMES_TOKEN_ENV] = frames_key
        return env

    def _volumes(self, spec: dict) -> list[str]:
        volumes = [str(v) for v in settings.EDGEPROXY_APP_VOLUMES]
        for item in spec.get("mount") or []:
            source = mount_source(spec["name"], item["name"])
            source.mkdir(parents=True, exist_ok=True)
            volumes.append(f"{source}:{item['value']}:rw")
        shm = getattr(self.agent.runtime, "shm", None)
        if shm is not None and shm.enabled:
            volumes.append(f"{shm.directory}:{shm.directory}:ro")
        return volumes

    def _options(self, spec: dict, frames_key: str | None = None) -> dict:
        from docker.types import DeviceRequest, LogConfig

        shm = getattr(self.agent.runtime, "shm", None)
        network = "host" if spec.get("host_network") else settings.EDGEPROXY_APP_NETWORK
        options: dict = dict(
            image=spec["image"],
            name=app_container_name(spec["name"]),
            labels={LABEL_APP: spec["name"], LABEL_APP_ID: spec["app_id"], LABEL_APP_HOST: self.host,
                    LABEL_APP_SECRETS: ",".join(item["name"] for item in spec.get("env") or [] if item.get("secret"))},
            environment=self._environment(spec, frames_key),
            volumes=self._volumes(spec),
            group_add=[str(shm.group)] if shm is not None and shm.enabled and shm.group is not None else None,
            nano_cpus=int(float(spec["cpus"]) * 1e9),
            mem_limit=f"{int(spec['memory_mb'])}m",
            privileged=False,
            security_opt=["no-new-privileges"],
            restart_policy={"Name": "unless-stopped"},
            init=True,
            log_config=LogConfig(type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "3"}),
            detach=True,
        )
        if network in ("host", "bridge", "none") or network.startswith("container:"):
            options["network_mode"] = network
        else:
            options["network"] = network
        if network != "host" and spec.get("ports"):
            options["ports"] = {f"{p['map_to']}/tcp": p["exposed"] for p in spec["ports"]}
        if spec.get("command"):
            options["command"] = list(spec["command"])
        if spec.get("runtime") == "nvidia":
            options["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return options

    def _spec_hash(self, spec: dict, image_id: str, frames_key: str | None = None) -> str:
        shape = {"v": _SPEC_HASH_VERSION, "image_id": image_id, "spec": spec,
                 "volumes": self._volumes(spec), "network": settings.EDGEPROXY_APP_NETWORK}
        if frames_key:  # a new key (state folder lost, keys turned on) recreates the container
            shape["frames_key"] = frames_key
        return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()

    def _check_gpus(self, spec: dict) -> None:
        if spec.get("runtime") != "nvidia":
            return
        with self._daemon("read the engine's runtimes"):
            runtimes = self.client.info().get("Runtimes") or {}
        if "nvidia" not in runtimes:
            raise RuntimeError_(f"app {spec['name']} asks for runtime nvidia, but edge host {self.host} has no "
                                "NVIDIA GPUs for Docker (no nvidia runtime in its engine)")

    # --- operations ----------------------------------------------------------------------------

    def _open(self, operation_id: str, app_name: str, sealed_spec: str) -> dict | None:
        try:
            spec = sealing.unseal(self.agent.key, sealed_spec)
        except Exception:  # noqa: BLE001 - sealed to another key (the host key was replaced)
            self._finished(operation_id, False, f"app {app_name}: the spec could not be opened with this host's key")
            return None
        for item in spec.get("env") or []:
            if item.get("secret"):
                register_secret(item["value"])  # masked in this worker's logs from now on
        return spec

    @_reports_failures
    def ensure_running(self, operation_id: str, app_name: str, sealed_spec: str) -> None:
        self.agent.report_started(operation_id)
        spec = self._open(operation_id, app_name, sealed_spec)
        if spec is None:
            return
        try:
            observed = self._ensure_running(spec)
        except RuntimeError_ as exc:
            logger.warning("app %s: could not start: %s", app_name, exc,
                           extra={"host": self.host, "operation": operation_id})
            self._finished(operation_id, False, str(exc), self.observe(app_name))
            return
        logger.info("app %s: running (%s)", app_name, observed["container_id"][:12],
                    extra={"host": self.host, "operation": operation_id})
        self._finished(operation_id, True, observed=observed)

    def _ensure_running(self, spec: dict) -> dict:
        import docker.errors

        name = spec["name"]
        self._check_gpus(spec)
        with self._lock:
            try:
                with self._daemon(f"look up image {spec['image']}"):
                    image_id = self.client.images.get(spec["image"]).id
            except RuntimeError_ as exc:
                if isinstance(exc.__cause__, docker.errors.ImageNotFound):
                    raise RuntimeError_(f"image {spec['image']} is not on edge host {self.host}; pull it first") \
                        from None
                raise
            frames_key = self._frames_key(name)
            spec_hash = self._spec_hash(spec, image_id, frames_key)
            container = self._get(name)
            if container is not None and (container.labels.get(LABEL_APP_SPEC) != spec_hash
                                          or container.status in ("removing", "dead")):
                self._remove_container(container, name)
                container = None
            if container is None:
                options = self._options(spec, frames_key)
                options["labels"][LABEL_APP_SPEC] = spec_hash
                with self._daemon(f"create the container of app {name}"):
                    container = self.client.containers.create(**options)
            if container.status == "paused":
                with self._daemon(f"unpause the container of app {name}"):
                    container.unpause()
            elif container.status in ("created", "exited"):
                with self._daemon(f"start the container of app {name}"):
                    container.start()
        observed = self.observe(name, with_logs=False)
        if observed is None:
            raise RuntimeError_(f"the container of app {name} disappeared while starting")
        return observed

    def _remove_container(self, container, name: str) -> None:
        import docker.errors

        with self._daemon(f"remove the container of app {name}"):
            try:
                if container.status in ("running", "restarting", "paused"):
                    container.stop(timeout=5)
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass

    @_reports_failures
    def stop(self, operation_id: str, app_name: str) -> None:
        self.agent.report_started(operation_id)
        try:
            with self._lock:
                container = self._get(app_name)
                if container is not None and container.status in ("running", "restarting", "paused"):
                    with self._daemon(f"stop the container of app {app_name}"):
                        container.stop(timeout=max(0, math.ceil(5)))
        except RuntimeError_ as exc:
            self._finished(operation_id, False, str(exc), self.observe(app_name))
            return
        logger.info("app %s: stopped", app_name, extra={"host": self.host, "operation": operation_id})
        self._finished(operation_id, True, observed=self.observe(app_name))

    @_reports_failures
    def remove(self, operation_id: str, app_name: str) -> None:
        """Remove the app's container (its data folder stays: the data is the user's)."""
        self.agent.report_started(operation_id)
        try:
            with self._lock:
                container = self._get(app_name)
                if container is not None:
                    self._remove_container(container, app_name)
                self._key_store().revoke(app_name)  # its key stops working now
        except RuntimeError_ as exc:
            self._finished(operation_id, False, str(exc), self.observe(app_name))
            return
        logger.info("app %s: removed", app_name, extra={"host": self.host, "operation": operation_id})
        self._finished(operation_id, True, removed=True)

    def _finished(self, operation_id: str, ok: bool, error: str = "", observed: dict | None = None,
                  removed: bool = False) -> None:
        self.agent.tell_control(messages.OperationFinished(operation_id=operation_id, ok=ok, error=error,
                                                           observed=observed, removed=removed))

    # --- observation -----------------------------------------------------------------------------

    def _observed(self, container, with_logs: bool) -> dict:
        attrs = container.attrs
        state_in = attrs.get("State") or {}
        labels = container.labels or {}
        logs = None
        if with_logs:
            secret_names = set(filter(None, labels.get(LABEL_APP_SECRETS, "").split(",")))
            for entry in (attrs.get("Config") or {}).get("Env") or []:
                name, _, value = entry.partition("=")
                if name in secret_names or name == app_keys.FRAMES_TOKEN_ENV:
                    register_secret(value)
            with contextlib.suppress(Exception):
                logs = encode_logs(container.logs(stdout=True, stderr=False, tail=LOG_TAIL),
                                   container.logs(stdout=False, stderr=True, tail=LOG_TAIL))
        return {
            "name": labels.get(LABEL_APP, ""),
            "app_id": labels.get(LABEL_APP_ID, ""),
            "container_id": attrs.get("Id", container.id),
            "status": state_in.get("Status") or container.status,
            "state": {key: state_in.get(key) for key in STATE_KEYS},
            "image": (attrs.get("Config") or {}).get("Image") or "",
            "logs": logs,
        }

    def observe(self, app_name: str, with_logs: bool = True) -> dict | None:
        try:
            container = self._get(app_name)
            return self._observed(container, with_logs) if container is not None else None
        except Exception:  # noqa: BLE001 - nothing to observe is an answer too
            return None

    def observe_all(self, with_logs: bool = True) -> list[dict]:
        """Every app container of this host (for heartbeats); none when the engine is not Docker."""
        client = getattr(self.agent.runtime, "client", None)
        if client is None:
            return []
        filters = {"label": [LABEL_APP, f"{LABEL_APP_HOST}={self.host}"]}
        with self._daemon("list app containers"):
            listed = client.containers.list(all=True, filters=filters)
        found = []
        for container in listed:
            if container.name != app_container_name((container.labels or {}).get(LABEL_APP, "")):
                continue
            with contextlib.suppress(Exception):
                found.append(self._observed(container, with_logs))
        return sorted(found, key=lambda item: item["name"])


_runners: dict[int, AppRunner] = {}
_runners_lock = threading.Lock()


def runner(agent) -> AppRunner:
    """The app runner of this edge agent (one per agent)."""
    with _runners_lock:
        if id(agent) not in _runners:
            _runners[id(agent)] = AppRunner(agent)
        return _runners[id(agent)]


def report_entry(agent) -> list[dict] | None:
    """The ``apps`` of a heartbeat: observed app containers; None when the engine did not answer
    (the control plane then keeps what it knows instead of taking every app for gone)."""
    try:
        return runner(agent).observe_all()
    except RuntimeError_ as exc:
        logger.warning("app containers not observed: %s", exc)
        return None

