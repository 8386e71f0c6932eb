"""Writes of app processes: install (checked against the rules), stop, start, delete, and what
edge hosts report about them.

Like a camera, every change is an Operation (``operation.app``) plus a task on the app's host
queue, sent once the operation is committed (processes/dispatch.py); results come back as
``OperationFinished`` and are applied by ``apply_result`` (called from
processes.services.record_operation_result). This module never imports processes.services (which
calls it): it is the lower layer.
"""

from __future__ import annotations

import logging
import posixpath
import re
import uuid
from collections.abc import Mapping
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from edgeproxy import crypto
from edgeproxy.contracts import tasks as messages
from edgeproxy.contracts.errors import Busy, Conflict, Forbidden, ImageNotOnHost, Invalid, NotFound, Unavailable
from edgeproxy.contracts.statuses import ENDED_STATUSES, RUNNING_STATUSES, CameraStatus
from edgeproxy.contracts.times import ms
from processes import app_selectors as selectors
from processes import selectors as camera_selectors
from processes.dispatch import EdgeOutbox, fail_refused, send, supersede_for_delete
from processes.models import ACTIVE_STATES, AppProcess, Camera, DesiredState, EdgeHost, Operation, OperationKind
from settings_app.versions import highest_version, is_newer, local_tags, sort_tags
from worker import sealing

logger = logging.getLogger("edgeproxy.processes")

# An environment value is secret when its name says so, or when the request marks it ("secret": true).
SECRET_NAME_RULE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
ENV_NAME_RULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Variables the edge sets for every app (frame server, rings, cameras): a request cannot set them.
RESERVED_ENV_PREFIX = "EDGEPROXY_"
RUNTIMES = ("", "runc", "nvidia")
REPOSITORY_RULE = re.compile(r"[a-z0-9][a-z0-9._/-]{0,254}")
TAG_RULE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
MOUNT_FOLDER_RULE = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME_RULE.search(name))


# --- the rules of an install -------------------------------------------------------------------


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(f"{field}: {message}", {field: [message]})


def _check_image(user: str, repository: str, version: str, host_network: bool):
    full = f"{user}/{repository}" if user else repository
    rule = selectors.image_rule(full)  # first: an image not on the allow-list is refused, whatever else
    if rule is None:
        allowed = ", ".join(selectors.allowed_repositories()) or "none yet"
        raise Forbidden(f"docker_repository: image {full}:{version} is not allowed by the app image allow-list "
                        f"(rule: only repositories listed under App image rules in the admin run as apps; "
                        f"listed: {allowed}).", {"docker_repository": ["not on the app image allow-list"]})
    if host_network and not rule.host_network:
        raise Forbidden(f"host_network: the app image allow-list entry {rule.repository} does not permit the "
                        "host's network (rule: host network only where its entry says so).",
                        {"host_network": ["not permitted by the allow-list entry"]})
    if not REPOSITORY_RULE.fullmatch(repository) or (user and not REPOSITORY_RULE.fullmatch(user)):
        raise _invalid("docker_repository", "must be a Docker repository name (lower case letters, digits, ._/-).")
    if not TAG_RULE.fullmatch(version):
        raise _invalid("docker_version", "must be an image tag such as 1.2.0.")
    return rule


def _clean_env(items: list[dict]) -> list[dict]:
    """Stored env: plain values as given, secret ones encrypted (never stored or shown in clear)."""
    stored, seen = [], set()
    for item in items:
        name, value = item["name"], item.get("value", "")
        if not ENV_NAME_RULE.fullmatch(name):
            raise _invalid("env_vars", f"{name!r} is not a variable name (letters, digits and _).")
        if name.upper().startswith(RESERVED_ENV_PREFIX):
            raise _invalid("env_vars", f"{name} is set by edgeproxy itself (EDGEPROXY_* are reserved).")
        if name in seen:
            raise _invalid("env_vars", f"{name} is given twice.")
        seen.add(name)
        if item.get("secret") or is_secret_name(name):
            stored.append({"name": name, "secret": True, "value_encrypted": crypto.encrypt(value)})
        else:
            stored.append({"name": name, "value": value})
    return stored


def _clean_ports(items: list[dict], host: EdgeHost, app_name: str) -> list[dict]:
    used = selectors.ports_used(host.id, excluding=app_name)
    ports, seen = [], set()
    for item in items:
        exposed, map_to = item["exposed"], item["map_to"]
        for field, port in (("exposed", exposed), ("map_to", map_to)):
            if not 1 <= port <= 65535:
                raise _invalid("port_mappings", f"{field} {port} is out of range (1 to 65535).")
        if exposed in seen:
            raise _invalid("port_mappings", f"host port {exposed} is given twice.")
        if exposed in used:
            raise _invalid("port_mappings", f"host port {exposed} is already used on edge host {host.name} "
                                            f"by app {used[exposed]}.")
        seen.add(exposed)
        ports.append({"exposed": exposed, "map_to": map_to})
    return ports


def _clean_mounts(items: list[dict]) -> list[dict]:
    """``name``: a folder below the app's data folder on the host (relative, no ``..``);
    ``value``: an absolute path in the container."""
    mounts = []
    for item in items:
        folder, target = item["name"], item["value"]
        if folder.startswith("/") or not MOUNT_FOLDER_RULE.fullmatch(folder) or ".." in folder.split("/"):
            raise _invalid("mount", f"{folder!r} must be a folder below the app's data folder: a relative path "
                                    "without '..' (absolute host paths are not allowed).")
        if not target.startswith("/") or ".." in target.split("/") or posixpath.normpath(target) == "/":
            raise _invalid("mount", f"{target!r} must be an absolute folder in the container, not / and "
                                    "without '..'.")
        mounts.append({"name": posixpath.normpath(folder), "value": posixpath.normpath(target)})
    return mounts


def _place(camera_names: list[str], host_name: str | None) -> EdgeHost:
    """The app's host: that of its cameras (all on one host), else the named one, else an online one."""
    if camera_names:
        found = {c.name: c for c in Camera.objects.select_related("host").filter(name__in=camera_names)}
        unknown = [name for name in camera_names if name not in found]
        if unknown:
            raise _invalid("cameras", f"no camera named {', '.join(sorted(unknown))}.")
        hosts = sorted({found[name].host.name for name in camera_names})
        if len(hosts) > 1:
            raise _invalid("cameras", f"the cameras run on different edge hosts ({', '.join(hosts)}); an app "
                                      "runs on its cameras' host.")
        if host_name and host_name != hosts[0]:
            raise _invalid("host", f"the cameras run on edge host {hosts[0]}, not {host_name}.")
        host = found[camera_names[0]].host
    elif host_name:
        found_host = camera_selectors.host_by_name(host_name)
        if found_host is None:
            raise _invalid("host", f"no edge host named {host_name!r} has registered.")
        host = found_host
    else:
        online = camera_selectors.online_hosts().order_by("name").first()
        if online is None:
            raise Unavailable("No edge host is online to run the app; start an edge worker and try again.")
        host = online
    if not host.public_key:
        raise Unavailable(f"Edge host {host.name} has not reported its key yet; try again shortly.")
    return host


def _limits(cpus: float | None, memory_mb: int | None) -> tuple[float, int]:
    cpus = settings.EDGEPROXY_APP_CPUS if cpus is None else cpus
    memory_mb = settings.EDGEPROXY_APP_MEMORY_MB if memory_mb is None else memory_mb
    if not 0.01 <= cpus <= settings.EDGEPROXY_APP_MAX_CPUS:
        raise _invalid("cpus", f"must be from 0.01 to {settings.EDGEPROXY_APP_MAX_CPUS:g}.")
    if not 16 <= memory_mb <= settings.EDGEPROXY_APP_MAX_MEMORY_MB:
        raise _invalid("memory_mb", f"must be from 16 to {settings.EDGEPROXY_APP_MAX_MEMORY_MB}.")
    return cpus, memory_mb


def _hold_cameras(camera_names: list[str], host: EdgeHost) -> None:
    """Lock the app's cameras while it is stored (a camera's move or delete locks it too, then asks
    ``refuse_change_of_camera_read_by_apps``), and check that they are still on ``host`` with no
    move or delete under way: the app would end up on a host its camera is leaving."""
    cameras = list(Camera.objects.select_for_update().select_related("host").filter(name__in=camera_names)
                   .order_by("id"))
    gone = sorted(set(camera_names) - {camera.name for camera in cameras})
    if gone:
        raise _invalid("cameras", f"no camera named {', '.join(gone)}.")
    for camera in cameras:
        if camera.host_id != host.id:
            raise Conflict(f"cameras: camera {camera.name} now runs on edge host {camera.host.name}; try again.",
                           {"cameras": ["moved meanwhile"]})
        changing = Operation.objects.filter(camera=camera, state__in=ACTIVE_STATES,
                                            kind__in=(OperationKind.MOVE, OperationKind.DELETE)).first()
        if changing is not None:
            what = (f"moving to edge host {changing.host.name}" if changing.kind == OperationKind.MOVE and changing.host
                    else "being deleted")
            raise Conflict(f"cameras: camera {camera.name} is {what} (operation {changing.id}); install the app "
                           "when that has finished.", {"cameras": [f"{camera.name} is {what}"]})


def refuse_change_of_camera_read_by_apps(camera: Camera, change: str) -> None:
    """An app runs on its cameras' host, so a camera an app reads is neither moved (``change``
    ``"move"``) nor deleted (``"delete"``) while the app exists: a 409 naming the apps, and nothing
    changes. The caller holds the camera's row (as an install does), so no app starts reading it
    meanwhile."""
    readers = sorted(app.name for app in selectors.apps_reading(camera.name))
    if not readers:
        return
    apps = ", ".join(readers)
    if change == "move":
        advice = ("delete the app(s) first (DELETE /api/v1/appprocess/{name}), move the camera, then install them "
                  "again: they will run on the camera's new host")
    else:
        advice = "delete the app(s) first (DELETE /api/v1/appprocess/{name}), or install them again without it"
    raise Conflict(f"Camera {camera.name} is read by app(s) {apps}, which run on its host {camera.host.name}: it "
                   f"cannot be {'moved' if change == 'move' else 'deleted'} while they read it; {advice}.",
                   extra={"apps": readers})


# --- dispatch ----------------------------------------------------------------------------------


def _env_for_edge(app: AppProcess) -> list[dict]:
    return [{"name": item["name"], "value": crypto.decrypt(item["value_encrypted"]), "secret": True}
            if item.get("secret") else {"name": item["name"], "value": item.get("value", "")}
            for item in app.env_vars or []]


def _command(app: AppProcess) -> list[str]:
    """``arguments`` become the container's command: each name, then its value when it has one."""
    command: list[str] = []
    for item in app.arguments or []:
        command.append(item["name"])
        if item.get("value"):
            command.append(item["value"])
    return command


def _sealed_spec(app: AppProcess, version: str | None = None) -> str:
    if not app.host.public_key:
        raise Unavailable(f"Edge host {app.host.name} has not reported its key yet; try again shortly.")
    image = app.image if version is None else f"{app.image.rpartition(':')[0]}:{version}"
    spec = {
        "app_id": str(app.id), "name": app.name, "image": image, "env": _env_for_edge(app),
        "command": _command(app), "ports": app.port_mappings, "mount": app.mount, "runtime": app.runtime,
        "host_network": app.host_network, "cpus": app.cpus, "memory_mb": app.memory_mb, "cameras": app.cameras,
    }
    return sealing.seal(app.host.public_key, spec)


def _message(app: AppProcess, op: Operation, action: str) -> messages.EdgeMessage:
    """The edge task of an app operation: ``start``, ``upgrade``, ``stop`` or ``remove``."""
    if action in ("start", "upgrade"):  # an upgrade runs the spec with the version it goes to
        version = op.progress.get("version") if action == "upgrade" else None
        return messages.AppEnsureRunning(operation_id=str(op.id), app_name=app.name, spec=_sealed_spec(app, version))
    if action == "stop":
        return messages.AppStop(operation_id=str(op.id), app_name=app.name)
    return messages.AppRemove(operation_id=str(op.id), app_name=app.name)


def _new_operation(app: AppProcess, kind: str, action: str) -> Operation:
    """An operation on the app (inside the caller's transaction), one at a time: a busy app is a 409,
    except for a delete, which ends the operation it finds as a camera's delete does (failed,
    "superseded")."""
    if not AppProcess.objects.select_for_update().filter(pk=app.pk).exists():
        raise NotFound(f"No app named {app.name!r}.")
    op_id = uuid.uuid4()
    if kind == OperationKind.DELETE:
        supersede_for_delete(Operation.objects.filter(app=app), op_id)
    active = Operation.objects.filter(app=app, state__in=ACTIVE_STATES).first()
    if active is not None:
        raise Busy(f"App {app.name} is busy with a {active.kind} operation ({active.id}); try again when it has "
                   "finished.")
    op = Operation.objects.create(id=op_id, kind=kind, app=app, camera_name="", host=app.host,
                                  progress={"app": app.name, "action": action})
    app.last_operation = op
    return op


# --- the lifecycle -----------------------------------------------------------------------------


def install_app(*, name: str, docker_repository: str, docker_version: str, docker_user: str = "",
                env_vars: list[dict] | None = None, arguments: list[dict] | None = None,
                port_mappings: list[dict] | None = None, mount: list[dict] | None = None, runtime: str = "",
                host: str | None = None, cameras: list[str] | None = None, host_network: bool = False,
                cpus: float | None = None, memory_mb: int | None = None) -> AppProcess:
    """Check an install against every rule (nothing is stored when one fails), store the app and ask
    its host to run it (operation ``connect``)."""
    if AppProcess.objects.filter(name=name).exists():
        raise Conflict(f"An app named {name!r} already exists.", {"name": ["already exists"]})
    _check_image(docker_user, docker_repository, docker_version, host_network)
    if runtime not in RUNTIMES:
        raise _invalid("runtime", f"unknown runtime {runtime!r}: use nvidia for GPUs, or leave it empty.")
    camera_names = list(dict.fromkeys(cameras or []))
    placed = _place(camera_names, host)
    stored_env = _clean_env(env_vars or [])
    ports = _clean_ports(port_mappings or [], placed, name)
    mounts = _clean_mounts(mount or [])
    cpus, memory_mb = _limits(cpus, memory_mb)
    with transaction.atomic():
        _hold_cameras(camera_names, placed)
        try:
            with transaction.atomic():
                app = AppProcess.objects.create(
                    name=name, docker_user=docker_user, docker_repository=docker_repository,
                    docker_version=docker_version, env_vars=stored_env,
                    arguments=[{"name": a["name"], "value": a.get("value", "")} for a in arguments or []],
                    port_mappings=ports, mount=mounts, runtime=runtime, host_network=host_network, cpus=cpus,
                    memory_mb=memory_mb, cameras=camera_names, host=placed, desired_state=DesiredState.RUNNING,
                    status=CameraStatus.PENDING)
        except IntegrityError:
            raise Conflict(f"An app named {name!r} already exists.", {"name": ["already exists"]}) from None
        op = _new_operation(app, OperationKind.CONNECT, "start")
        app.save(update_fields=["last_operation"])
        message = _message(app, op, "start")
    EdgeOutbox([(message, placed)]).deliver(undo=lambda refused: _undo_install(app), what=f"the install of app {name}")
    logger.info("app %s: install queued on host %s (operation %s)", name, placed.name, op.id,
                extra={"host": placed.name, "operation": op.id})
    return app


def _undo_install(app: AppProcess) -> None:
    """Remove an app (and its operation) whose edge task could not be sent."""
    with transaction.atomic():
        AppProcess.objects.filter(id=app.id).update(last_operation=None)
        Operation.objects.filter(app_id=app.id).delete()
        AppProcess.objects.filter(id=app.id).delete()


def _queue(app: AppProcess, kind: str, desired: str, action: str, status: str) -> AppProcess:
    before = {"desired_state": app.desired_state, "status": app.status}
    with transaction.atomic():
        op = _new_operation(app, kind, action)
        app.desired_state = desired
        app.status = status
        app.save(update_fields=["desired_state", "status", "last_operation", "modified"])
        message = _message(app, op, action)
    EdgeOutbox([(message, app.host)]).deliver(undo=lambda refused: fail_refused(refused, restore=before),
                                              what=f"the {kind} of app {app.name}")
    logger.info("app %s: %s queued (operation %s)", app.name, kind, op.id, extra={"operation": op.id})
    return app


def start_app(app: AppProcess) -> AppProcess:
    return _queue(app, OperationKind.START, DesiredState.RUNNING, "start", CameraStatus.PENDING)


def stop_app(app: AppProcess) -> AppProcess:
    return _queue(app, OperationKind.STOP, DesiredState.STOPPED, "stop", app.status)


def delete_app(app: AppProcess) -> AppProcess:
    """Ask the host to remove the app's container; the record goes when it confirms (a delete under
    way answers a second one)."""
    under_way = Operation.objects.filter(app=app, state__in=ACTIVE_STATES, kind=OperationKind.DELETE).first()
    if under_way is not None:
        app.last_operation = under_way
        return app
    return _queue(app, OperationKind.DELETE, DesiredState.STOPPED, "remove", CameraStatus.REMOVING)


def get_app(name: str) -> AppProcess:
    app = selectors.app_by_name(name)
    if app is None:
        raise NotFound(f"No app named {name!r}.")
    return app


# --- reports from edge hosts -------------------------------------------------------------------


def _status(app: AppProcess, observed: dict | None) -> str:
    last = app.last_operation if app.last_operation_id else None
    if app.status == CameraStatus.REMOVING and last is not None and last.kind == OperationKind.DELETE:
        # Our delete: only its confirmation ends it. (A "removing" that Docker showed, while the
        # container was removed by hand, does not stick: the next observation replaces it.)
        return CameraStatus.REMOVING
    if observed is None:
        return CameraStatus.STOPPED if app.desired_state == DesiredState.STOPPED else CameraStatus.ERROR
    status = observed.get("status") or CameraStatus.CREATED
    if app.desired_state == DesiredState.STOPPED and status in ENDED_STATUSES:
        return CameraStatus.STOPPED
    return status


def _observe(app: AppProcess, observed: dict | None, now) -> list[str]:
    app.container_id = (observed or {}).get("container_id", "")
    app.state = (observed or {}).get("state") or {}
    if observed is not None and observed.get("logs") is not None:
        app.logs = observed["logs"]
    app.status = _status(app, observed)
    app.observed_at = now
    return ["container_id", "state", "logs", "status", "observed_at", "modified"]


def lock_app(app_id) -> None:
    """Lock an app's row; a result does so before its operation's row, in the order _new_operation
    takes them (the other order deadlocks with a delete superseding that operation)."""
    list(AppProcess.objects.select_for_update().filter(id=app_id).values_list("id", flat=True))


def apply_result(op: Operation, ok: bool, observed: dict | None, removed: bool, now) -> None:
    """An app operation's result (the operation row is saved and locked by the caller)."""
    app = AppProcess.objects.select_for_update().filter(id=op.app_id).first()
    if app is None:
        return
    if removed and ok and op.kind == OperationKind.DELETE:
        logger.info("app %s: deleted (operation %s)", app.name, op.id, extra={"operation": op.id})
        app.delete()
        return
    app.last_operation = op
    fields = _observe(app, observed, now)
    if not ok and observed is None:
        app.status = CameraStatus.ERROR
    if ok and op.kind == OperationKind.UPGRADE and op.progress.get("version"):
        app.docker_version = op.progress["version"]  # only once the host runs it
        fields.append("docker_version")
    app.save(update_fields=[*fields, "last_operation"])
    if not ok:
        logger.warning("operation %s (%s app %s) failed: %s", op.id, op.kind, app.name, op.error,
                       extra={"operation": op.id})


def record_heartbeat(host: EdgeHost, observed_apps: list[dict], observed_at_ms: int) -> None:
    """Apply what a heartbeat saw of the host's app containers (apps with an operation under way wait
    for its result; an observation taken before the last result is old news)."""
    now = timezone.now()
    seen = {item["name"]: item for item in observed_apps}
    known: set[str] = set()
    with transaction.atomic():
        for app in AppProcess.objects.select_related("last_operation").select_for_update(of=("self",)).filter(
                host=host):
            known.add(app.name)
            last = app.last_operation
            if last and last.is_active:
                continue
            if last and last.finished and ms(last.finished) > observed_at_ms:
                continue
            app.save(update_fields=_observe(app, seen.get(app.name), now))
    _remove_strays(host, [name for name in seen if name not in known])


def _remove_strays(host: EdgeHost, strays: list[str]) -> None:
    """App containers of this host that no app owns (their record is gone): removed, each by an
    operation (``reconcile``) unless one is under way. Containers without our app labels are never seen."""
    for stray in strays:
        if Operation.objects.filter(host=host, app__isnull=True, camera__isnull=True, state__in=ACTIVE_STATES,
                                    progress__app=stray).exists():
            continue
        op = Operation.objects.create(kind=OperationKind.RECONCILE, host=host, camera_name="",
                                      progress={"app": stray, "action": "remove stray"})
        EdgeOutbox([(messages.AppRemove(operation_id=str(op.id), app_name=stray), host)]).deliver()  # else sent again
        logger.info("reconcile: removing stray app container %s on %s (operation %s)", stray, host.name, op.id,
                    extra={"host": host.name, "operation": op.id})


# --- reconciliation and redelivery -------------------------------------------------------------


def _needs_correction(app: AppProcess, retry_seconds: float) -> str | None:
    last = app.last_operation
    if last and last.is_active:
        return None
    if app.observed_at is None or (last and last.finished and app.observed_at <= last.finished):
        return None
    if (last and last.kind == OperationKind.RECONCILE and last.state == "failed" and last.finished
            and timezone.now() - last.finished < timedelta(seconds=retry_seconds)):
        return None
    running = app.container_id and (app.state or {}).get("Status") in RUNNING_STATUSES
    if app.desired_state == DesiredState.RUNNING and not running:
        return "start"
    if app.desired_state == DesiredState.STOPPED and running:
        return "stop"
    return None


def reconcile_apps(hosts: Mapping[int, EdgeHost], retry_seconds: float) -> list[Operation]:
    """Drive the apps of these (online) hosts towards their desired state: each correction is an
    operation (``reconcile``), as for cameras."""
    corrections = []
    for app in AppProcess.objects.select_related("last_operation").filter(host_id__in=hosts):
        app.host = hosts[app.host_id]
        action = _needs_correction(app, retry_seconds)
        if action is None:
            continue
        try:
            with transaction.atomic():
                op = _new_operation(app, OperationKind.RECONCILE, action)
                app.save(update_fields=["last_operation"])
                message = _message(app, op, action)
        except Busy:
            continue
        EdgeOutbox([(message, app.host)]).deliver()  # a refused task leaves it pending: sent again later
        logger.info("reconcile: %s app %s on %s (operation %s)", action, app.name, app.host.name, op.id,
                    extra={"host": app.host.name, "operation": op.id})
        corrections.append(op)
    return corrections


def redispatch(op: Operation) -> None:
    """Send an app operation's task again (edge tasks are idempotent)."""
    app = AppProcess.objects.select_related("host").filter(id=op.app_id).first() if op.app_id else None
    if app is None:
        if op.host is not None and op.progress.get("action") == "remove stray":
            send(messages.AppRemove(operation_id=str(op.id), app_name=op.progress["app"]), op.host)
        return
    send(_message(app, op, op.progress.get("action") or "start"), app.host)


# --- upgrades (like a camera's: another local version of its image, on its host) -----------------


def local_versions(app: AppProcess) -> list[str]:
    """Versions of the app's repository on its host (its image inventory), oldest first."""
    repository = app.image.rpartition(":")[0]
    return [t for t in sort_tags(local_tags(app.host.images or [], repository)) if t != "latest"]


def newer_version(app: AppProcess) -> str | None:
    best = highest_version(local_versions(app))
    return best if best is not None and is_newer(best, app.docker_version) else None


def upgrade_app(app: AppProcess, version: str | None = None) -> AppProcess:
    """Run the app on another local version of its image (operation ``upgrade``); without
    ``version``, the newest one, which must be newer. ``docker_version`` changes when the host runs it."""
    repository = app.image.rpartition(":")[0]
    versions = local_versions(app)
    listed = ", ".join(versions) or "none"
    if version:
        if version not in local_tags(app.host.images or [], repository):
            raise ImageNotOnHost(f"Image {repository}:{version} is not on edge host {app.host.name}; versions there: "
                                 f"{listed}. Pull it first.", repository, version,
                                 extra={"versions": versions, "host": app.host.name})
    else:
        version = newer_version(app)
        if version is None:
            raise Conflict(f"Edge host {app.host.name} has no version of {repository} newer than "
                           f"{app.docker_version}; versions there: {listed}.",
                           extra={"versions": versions, "host": app.host.name})
    if version == app.docker_version:
        raise Conflict(f"App {app.name} already runs {repository}:{version}.")
    if selectors.image_rule(repository) is None:  # the allow-list may have changed since the install
        raise Forbidden(f"docker_repository: {repository} is no longer on the app image allow-list.",
                        {"docker_repository": ["not on the app image allow-list"]})
    with transaction.atomic():
        op = _new_operation(app, OperationKind.UPGRADE, "upgrade")
        op.progress = {**op.progress, "version": version, "from": app.docker_version}
        op.save(update_fields=["progress"])
        app.save(update_fields=["last_operation", "modified"])
        message = _message(app, op, "upgrade")
    EdgeOutbox([(message, app.host)]).deliver(undo=fail_refused, what=f"the upgrade of app {app.name}")
    logger.info("app %s: upgrade to %s queued (operation %s)", app.name, version, op.id, extra={"operation": op.id})
    return app
