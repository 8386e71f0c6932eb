"""Writes: connect, start, stop and delete cameras; apply what edge workers report.

API views and control tasks call these; nothing else writes cameras, hosts or operations.
Every change that needs an edge host is an Operation row plus a Celery task on that host's
queue, sent once the row is committed (processes/dispatch.py): if the broker refuses it, the
change is undone and the request is a 503.
"""

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet, Subquery, TextField, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from django.utils import timezone

from edgeproxy import crypto
from edgeproxy.contracts import heartbeats
from edgeproxy.contracts import tasks as messages
from edgeproxy.contracts.errors import Busy, Conflict, DomainError, ImageNotOnHost, NotFound, TimedOut, Unavailable
from edgeproxy.contracts.statuses import ENDED_STATUSES, RUNNING_STATUSES, CameraStatus
from edgeproxy.contracts.times import ms
from processes import app_services, live, outputs, selectors
from processes.dispatch import BROKER_ERRORS, EdgeOutbox, fail_refused, send, supersede_for_delete
from processes.events import services as events
from processes.models import ACTIVE_STATES, Camera, DesiredState, EdgeHost, Operation, OperationKind, OperationState
from settings_app.selectors import camera_image_or_default, configured_camera_image, default_camera_image
from settings_app.versions import highest_version, is_newer, local_tags, sort_tags, split_image
from worker import sealing
from worker.redaction import mask_rtmp, mask_url

logger = logging.getLogger("edgeproxy.processes")

# --- placement and dispatch ------------------------------------------------------------------


@functools.cache
def _hosts_with_default_image() -> QuerySet[EdgeHost]:
    """Hosts with the fleet settings' camera image as a column: built once per process (resolving the
    subquery cost as much CPU as the rest of the look-up); each connect filters a copy."""
    return EdgeHost.objects.annotate(configured_camera_image=configured_camera_image())


def place_camera(host_name: str | None, with_default_image: bool = False) -> EdgeHost:
    """The named host, or the online host with the fewest cameras. ``with_default_image``: read with
    it, as ``configured_camera_image``, the fleet settings' image of new cameras."""
    column = {"configured_camera_image": configured_camera_image()} if with_default_image else {}
    if host_name:
        named = _hosts_with_default_image() if with_default_image else EdgeHost.objects.all()
        host = named.filter(name=host_name).first()  # (no camera count: not needed)
        if host is None:
            raise NotFound(f"host: no edge host named {host_name!r} has registered.", {"host": ["unknown host"]})
        return host
    host = selectors.online_hosts().annotate(**column).order_by("camera_count", "name").first()
    if host is None:
        raise Unavailable("No edge host is online to run the camera; start an edge worker and try again.")
    return host


def _camera_spec(camera: Camera) -> dict:
    return {
        "camera_id": str(camera.id),
        "name": camera.name,
        "image": camera.image_tag,
        "rtsp_url": crypto.decrypt(camera.rtsp_endpoint_encrypted),
        "rtmp_url": crypto.decrypt(camera.rtmp_endpoint_encrypted) if camera.rtmp_endpoint_encrypted else "",
        "transport": camera.rtsp_transport,
        "buffer_seconds": settings.EDGEPROXY_CAMERA_BUFFER_SECONDS,
        "recording": camera.recording or None,  # processes/recording_services.py
    }


def _sealed_spec(camera: Camera) -> str:
    if not camera.host.public_key:
        raise Unavailable(f"Edge host {camera.host.name} has not reported its key yet; try again shortly.")
    return sealing.seal(camera.host.public_key, _camera_spec(camera))


def _new_operation(camera: Camera, kind: str) -> Operation:
    """Start an operation on a camera (inside the caller's transaction). The camera row is locked
    first: a camera deleted meanwhile is a 404, a busy one a 409 (the database's constraint),
    except for a delete, which ends the operation it finds (failed, "superseded")."""
    if not Camera.objects.select_for_update().filter(pk=camera.pk).exists():
        raise NotFound(f"No camera named {camera.name!r}.")
    op_id = uuid.uuid4()
    if kind == OperationKind.DELETE:
        supersede_for_delete(camera.operations.all(), op_id)
    try:
        with transaction.atomic():
            op = Operation.objects.create(id=op_id, kind=kind, camera=camera, camera_name=camera.name,
                                          host=camera.host)
    except IntegrityError:
        active = camera.operations.filter(state__in=ACTIVE_STATES).first()
        what = f"a {active.kind} operation ({active.id})" if active else "another operation"
        raise Busy(f"Camera {camera.name} is busy with {what}; try again when it has finished.") from None
    camera.last_operation = op
    return op


def _ensure_running(camera: Camera, op: Operation) -> messages.EnsureRunning:
    return messages.EnsureRunning(operation_id=str(op.id), camera_name=camera.name, spec=_sealed_spec(camera))


# --- camera lifecycle ------------------------------------------------------------------------


def connect_camera(*, name: str, rtsp_endpoint: str, rtmp_endpoint: str = "", host: str | None = None,
                   image_tag: str | None = None, rtsp_transport: str = "tcp", recording: dict | None = None) -> Camera:
    """Create a camera record and ask its host to run it (operation ``connect``)."""
    try:
        placed_on = place_camera(host, with_default_image=not image_tag)
    except DomainError:
        # A taken name is the first thing to say (the insert below finds it without a query of its own).
        if Camera.objects.filter(name=name).exists():
            raise Conflict(f"A camera named {name!r} already exists.", {"name": ["already exists"]}) from None
        raise
    # The camera and its operation in one transaction of two inserts: the camera names its operation
    # before the operation exists (last_operation is checked at commit: a deferred constraint), and a
    # new camera has no other operation to lock against or to be busy with.
    camera = Camera(
        name=name,
        rtsp_endpoint_encrypted=crypto.encrypt(rtsp_endpoint),
        rtsp_endpoint_masked=mask_url(rtsp_endpoint),
        rtmp_endpoint_encrypted=crypto.encrypt(rtmp_endpoint) if rtmp_endpoint else "",
        rtmp_endpoint_masked=mask_rtmp(rtmp_endpoint),
        rtsp_transport=rtsp_transport,
        image_tag=image_tag or camera_image_or_default(getattr(placed_on, "configured_camera_image", None)),
        host=placed_on,
        desired_state=DesiredState.RUNNING,
        status=CameraStatus.PENDING,
        recording=recording or {},
    )
    op = Operation(kind=OperationKind.CONNECT, camera=camera, camera_name=name, host=placed_on)
    camera.last_operation = op
    outbox = EdgeOutbox()
    try:
        with transaction.atomic():
            camera.save(force_insert=True)
            op.save(force_insert=True)
            outbox.add(_ensure_running(camera, op), placed_on)
    except IntegrityError:
        # The name was taken when the insert ran (the only constraint two new rows can break), even
        # if a delete has removed that camera since: still a 409, never a database error.
        raise Conflict(f"A camera named {name!r} already exists.", {"name": ["already exists"]}) from None
    outbox.deliver(undo=lambda refused: _undo_connects([camera.id]), what=f"the connect of camera {name}")
    logger.info("camera %s: connect queued on host %s (operation %s)", name, placed_on.name, op.id,
                extra={"camera": name, "host": placed_on.name, "operation": op.id})
    live.never_observed(camera)  # its answer reads no live facts: nothing can have reported them yet
    return camera


# --- bulk onboarding --------------------------------------------------------------------------

MAX_BULK_CONNECT = 200  # cameras per request (docs/api.md); 200 connect bodies fit in the 64 KiB body limit


@dataclass
class ConnectOutcome:
    """One camera of a bulk connect: its record and operation when queued, or why not (``error``)."""

    name: str
    camera: Camera | None = None
    error: DomainError | None = None


def _placements(wanted: list[str | None]) -> list[EdgeHost | DomainError]:
    """Hosts for cameras to connect, as ``place_camera`` would choose them one by one (named host, or the
    online host with the fewest cameras, counting those placed before), with two queries in all."""
    named = {h.name: h for h in selectors.hosts().filter(name__in={name for name in wanted if name})}
    online = list(selectors.online_hosts())
    load = {h.id: h.camera_count for h in online}
    placed: list[EdgeHost | DomainError] = []
    for name in wanted:
        if name:
            host = named.get(name)
            if host is None:
                placed.append(NotFound(f"host: no edge host named {name!r} has registered.",
                                       {"host": ["unknown host"]}))
                continue
        elif online:
            host = min(online, key=lambda h: (load[h.id], h.name))
        else:
            placed.append(Unavailable("No edge host is online to run the camera; start an edge worker and try again."))
            continue
        if not host.public_key:
            placed.append(Unavailable(f"Edge host {host.name} has not reported its key yet; try again shortly."))
            continue
        load[host.id] = load.get(host.id, 0) + 1
        placed.append(host)
    return placed


def connect_cameras(requests: list[dict]) -> list[ConnectOutcome]:
    """Connect many cameras (bulk onboarding), each as ``connect_camera`` would: one record and one
    ``connect`` operation per camera. A camera that cannot be connected (its name taken or given twice,
    an unknown host, no host online) is refused alone; the others go on.

    The records and operations are written in one transaction and the edge tasks sent after it
    commits (so no edge host hears of an operation before it exists); a camera whose task the
    broker refuses is deleted again and refused (503), as is every camera after it."""
    outcomes = [ConnectOutcome(r["name"]) for r in requests]
    first_index: dict[str, int] = {}
    for index, request in enumerate(requests):
        name = request["name"]
        if name in first_index:
            outcomes[index].error = Conflict(f"name: {name!r} is given twice in this request (first as camera "
                                             f"{first_index[name]}).", {"name": ["given twice in this request"]})
        else:
            first_index[name] = index
    taken = set(Camera.objects.filter(name__in=list(first_index)).values_list("name", flat=True))
    for outcome in outcomes:
        if outcome.error is None and outcome.name in taken:
            outcome.error = Conflict(f"A camera named {outcome.name!r} already exists.", {"name": ["already exists"]})
    pending = [i for i, outcome in enumerate(outcomes) if outcome.error is None]
    image = default_camera_image() if any(not requests[i].get("image_tag") for i in pending) else ""
    for index, host in zip(pending, _placements([requests[i].get("host") or None for i in pending]), strict=True):
        if isinstance(host, DomainError):
            outcomes[index].error = host
        else:
            outcomes[index].camera = _new_camera(requests[index], host, image)
    queued = [o for o in outcomes if o.camera is not None]
    cameras = [o.camera for o in queued if o.camera is not None]  # the same, typed
    operations = [Operation(kind=OperationKind.CONNECT, camera=c, camera_name=c.name, host=c.host) for c in cameras]
    for camera, op in zip(cameras, operations, strict=True):
        camera.last_operation = op
    try:
        with transaction.atomic():  # last_operation is checked at commit (deferred constraint)
            Camera.objects.bulk_create(cameras)
            Operation.objects.bulk_create(operations)
    except IntegrityError:  # a name taken meanwhile: one by one, so that only that camera is refused
        return _connect_one_by_one(requests, outcomes)
    _send_connects(queued)
    return outcomes


def _new_camera(request: dict, host: EdgeHost, default_image: str) -> Camera:
    rtsp_endpoint, rtmp_endpoint = request["rtsp_endpoint"], request.get("rtmp_endpoint") or ""
    return Camera(
        name=request["name"],
        rtsp_endpoint_encrypted=crypto.encrypt(rtsp_endpoint),
        rtsp_endpoint_masked=mask_url(rtsp_endpoint),
        rtmp_endpoint_encrypted=crypto.encrypt(rtmp_endpoint) if rtmp_endpoint else "",
        rtmp_endpoint_masked=mask_rtmp(rtmp_endpoint),
        rtsp_transport=request.get("rtsp_transport") or "tcp",
        image_tag=request.get("image_tag") or default_image,
        host=host,
        desired_state=DesiredState.RUNNING,
        status="pending",
        recording=request.get("recording") or {},
    )


def _connect_one_by_one(requests: list[dict], outcomes: list[ConnectOutcome]) -> list[ConnectOutcome]:
    for request, outcome in zip(requests, outcomes, strict=True):
        if outcome.camera is None:
            continue
        outcome.camera = None
        try:
            outcome.camera = connect_camera(**request)
        except DomainError as exc:
            outcome.error = exc
    return outcomes


def _undo_connects(camera_ids: list) -> None:
    """Remove cameras (and their connect operations) whose edge task could not be sent."""
    with transaction.atomic():
        Camera.objects.filter(id__in=camera_ids).update(last_operation=None)
        Operation.objects.filter(camera_id__in=camera_ids).delete()
        Camera.objects.filter(id__in=camera_ids).delete()


def _send_connects(queued: list[ConnectOutcome]) -> None:
    unsent: list[ConnectOutcome] = []
    for outcome in queued:
        camera = outcome.camera
        assert camera is not None and camera.last_operation is not None  # queued: saved with its operation
        if unsent:  # the broker refused one: do not wait on it again for each of the rest
            unsent.append(outcome)
            continue
        try:
            send(_ensure_running(camera, camera.last_operation), camera.host)
        except BROKER_ERRORS as exc:
            logger.warning("bulk connect: broker unreachable at camera %s: %s", camera.name, exc)
            unsent.append(outcome)
            continue
        logger.info("camera %s: connect queued on host %s (operation %s)", camera.name, camera.host.name,
                    camera.last_operation_id,
                    extra={"camera": camera.name, "host": camera.host.name, "operation": camera.last_operation_id})
    if unsent:
        _undo_connects([o.camera.id for o in unsent if o.camera is not None])
        for outcome in unsent:
            outcome.camera = None
            outcome.error = Unavailable("The message broker (Redis) is unreachable; the camera was not connected.")


def _queue(camera: Camera, kind: str, desired: str, message, status: str | None = None) -> Camera:
    """Record the camera's new desired state and an operation, then send the edge task ``message(op)``.
    A refused task ends the operation failed and puts the camera back as it was (503)."""
    with transaction.atomic():
        outbox, before = _record_queued(camera, kind, desired, message, status)
    return _deliver_queued(camera, kind, outbox, before)


def _record_queued(camera: Camera, kind: str, desired: str, message, status: str | None) -> tuple[EdgeOutbox, dict]:
    """``_queue``'s writes, inside the caller's transaction: the outbox to deliver once it commits, and
    the camera's fields as they were (put back if the broker refuses)."""
    before = {"desired_state": camera.desired_state, "status": camera.status}
    op = _new_operation(camera, kind)
    camera.desired_state = desired
    fields = ["desired_state", "last_operation", "modified"]
    if status:
        camera.status = status
        fields.append("status")
    camera.save(update_fields=fields)
    outbox = EdgeOutbox()
    outbox.add(message(op), camera.host)
    return outbox, before


def _deliver_queued(camera: Camera, kind: str, outbox: EdgeOutbox, before: dict) -> Camera:
    op = camera.last_operation
    assert op is not None  # _record_queued set it
    outbox.deliver(undo=lambda refused: fail_refused(refused, restore=before),
                   what=f"the {kind} of camera {camera.name}")
    logger.info("camera %s: %s queued (operation %s)", camera.name, kind, op.id,
                extra={"camera": camera.name, "operation": op.id})
    return camera


def start_camera(camera: Camera) -> Camera:
    return _queue(camera, OperationKind.START, DesiredState.RUNNING, lambda op: _ensure_running(camera, op),
                  status=CameraStatus.PENDING)


def stop_camera(camera: Camera) -> Camera:
    return _queue(camera, OperationKind.STOP, DesiredState.STOPPED,
                  lambda op: messages.Stop(operation_id=str(op.id), camera_name=camera.name))


def delete_camera(camera: Camera) -> Camera:
    """Ask the host to remove the camera's process and frame keys; the record goes when it confirms.
    A camera already being deleted is answered with that delete (it ends within its deadline)."""
    with transaction.atomic():
        if not Camera.objects.select_for_update().filter(pk=camera.pk).exists():
            raise NotFound(f"No camera named {camera.name!r}.")
        under_way = camera.operations.filter(state__in=ACTIVE_STATES, kind=OperationKind.DELETE).first()
        if under_way is not None:
            camera.last_operation = under_way
            return camera
        app_services.refuse_change_of_camera_read_by_apps(camera, "delete")
        outbox, before = _record_queued(camera, OperationKind.DELETE, DesiredState.STOPPED,
                                        lambda op: messages.Remove(operation_id=str(op.id), camera_name=camera.name),
                                        status=CameraStatus.REMOVING)
    return _deliver_queued(camera, OperationKind.DELETE, outbox, before)


def camera_snapshot(camera: Camera, keyframe_only: bool = False) -> bytes:
    """The camera's newest frame as JPEG, from the frame server of its edge host."""
    from edgeproxy import client as frames

    address = camera.host.frames_address
    if not address or not camera.host.is_online:
        raise Unavailable(f"Edge host {camera.host.name} is offline; no frame can be fetched.")
    try:
        return frames.latest_jpeg(address, camera.name, keyframe_only=keyframe_only, timeout=5.0,
                                  token=settings.EDGEPROXY_FRAMES_TOKEN or None, tls=settings.EDGEPROXY_FRAMES_TLS,
                                  root_certificates=settings.EDGEPROXY_FRAMES_TLS_CA_PEM)
    except frames.CameraNotFound:
        raise NotFound(f"Camera {camera.name} is not running on edge host {camera.host.name}.") from None
    except frames.ServerUnavailable:
        raise Unavailable(f"The frame server of edge host {camera.host.name} does not answer.") from None
    except frames.CameraUnavailable:
        raise Unavailable(f"Camera {camera.name} is not streaming; no frame is available.") from None
    except frames.FrameTimeout:
        raise TimedOut(f"No frame of camera {camera.name} arrived in time.") from None
    except frames.FrameError as exc:
        raise Unavailable(f"No frame of camera {camera.name}: {exc}") from None


def get_camera(name: str) -> Camera:
    camera = selectors.camera_by_name(name)
    if camera is None:
        raise NotFound(f"No camera named {name!r}.")
    return camera


def wait_for_operation(operation_id, seconds: float, look: Callable[[], Operation] | None = None,
                       take_answer: Callable[[bytes], bool] | None = None) -> Operation | None:
    """Wait until the operation ends or ``seconds`` pass (the workers update it): woken by the
    announcement of its end (``processes.live``); the database is looked at again only in case one
    was lost (every ``live.END_LOOK_SECONDS``). ``look`` reads the operation (default: its row).
    ``take_answer`` is given an announcement's answer: when it takes it (True), the wait ends
    without another look, and None is returned."""
    deadline = time.monotonic() + seconds
    with live.end_waiter(operation_id) as wait:
        while True:
            op = look() if look is not None else Operation.objects.get(id=operation_id)
            remaining = deadline - time.monotonic()
            if op.state not in ACTIVE_STATES or remaining <= 0:
                return op
            announced = wait(min(remaining, live.END_LOOK_SECONDS))
            if announced and announced != live.ENDED and take_answer is not None and take_answer(announced):
                return None


@dataclass
class WaitedCamera:
    """How a camera's operation was waited for: its ``record`` as committed at the end (carried by
    the end's announcement: nothing to read), or else the operation and the camera as last read
    (the camera None when it is gone or has a newer operation: the caller reads it)."""

    record: dict | None = None
    op: Operation | None = None
    camera: Camera | None = None


def wait_for_camera_operation(camera_name: str, operation_id, seconds: float) -> WaitedCamera:
    """``wait_for_operation`` for an operation of a camera, answering the camera too. Its result's
    announcement carries the camera record as committed (``_EndAnswer``): taken as it is, no read
    after the end. Else, while the operation is the camera's last one, each look at the database is
    the one read of the camera (with its operation) that the answer needs, not a read of the
    operation and then of the camera."""
    camera: Camera | None = None
    waited = WaitedCamera()

    def look() -> Operation:
        nonlocal camera
        camera = selectors.camera_by_name(camera_name)
        last = camera.last_operation if camera is not None else None
        if last is not None and last.id == operation_id:
            return last
        camera = None
        return Operation.objects.get(id=operation_id)

    def take_answer(answer: bytes) -> bool:
        try:
            record = orjson.loads(answer)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):  # not ours: look at the database instead
            return False
        waited.record = record
        return True

    waited.op = wait_for_operation(operation_id, seconds, look, take_answer)
    waited.camera = camera if waited.op is not None else None
    return waited


@dataclass
class _EndAnswer:
    """The record of the camera an operation's result updated, sent with the announcement of its
    end (made at the commit: the record as committed) to the requests waiting for it, which then
    answer it without reading it again: that read was on the path of every ``?wait=``."""

    camera: Camera | None = None

    def encoded(self) -> bytes | None:
        if self.camera is None:
            return None
        try:
            return live.compact(outputs.camera_record(self.camera)).encode()
        except Exception:  # noqa: BLE001 - the waiters read the record themselves instead
            logger.exception("camera %s: record not sent with its operation's end", self.camera.name)
            return None

# --- reports from edge workers (applied by control tasks) ------------------------------------


def _status_from_observation(camera: Camera, observed: dict | None) -> str:
    last = camera.last_operation if camera.last_operation_id else None
    if camera.status == CameraStatus.REMOVING and last is not None and last.kind == OperationKind.DELETE:
        # Our delete: only its confirmation ends it. (A "removing" that Docker showed, while a container
        # was removed by hand, does not stick: the next observation replaces it.)
        return CameraStatus.REMOVING
    if observed is None:
        if camera.last_operation_id and camera.last_operation and camera.last_operation.is_active:
            return CameraStatus.PENDING
        return CameraStatus.STOPPED if camera.desired_state == DesiredState.STOPPED else CameraStatus.ERROR
    status = observed.get("status") or CameraStatus.CREATED
    if camera.desired_state == DesiredState.STOPPED and status in ENDED_STATUSES:
        return CameraStatus.STOPPED
    return status


def _apply_observation(camera: Camera, observed: dict | None, stream: dict | None, now) -> list[str]:
    if observed is not None:
        camera.container_id = observed.get("container_id", "")
        camera.state = observed.get("state") or {}
        if observed.get("logs") is not None:
            camera.logs = observed["logs"]
    else:
        camera.container_id = ""
        camera.state = {}
    camera.stream = stream
    camera.status = _status_from_observation(camera, observed)
    camera.observed_at = now
    return ["container_id", "state", "logs", "stream", "status", "observed_at", "modified"]


# What a heartbeat may change on a camera row; ``modified`` moves only with the first three (the
# record's own state), not with its logs or live stream facts.
_OBSERVED_FIELDS = ("container_id", "state", "status", "logs", "stream")
_RECORD_FIELDS = {"container_id", "state", "status"}


def _heartbeat_changes(camera: Camera, observed: dict | None, stream: dict | None, now,
                       live_elsewhere: bool = False) -> list[str]:
    """Apply a heartbeat's observation; the fields to write, or none when nothing changed.

    A heartbeat every few seconds from every host must not rewrite every camera row: only what
    changed is written. ``observed_at`` is written with any change, and on the first observation
    after an operation ended (what reconciliation waits for) even without one. With
    ``live_elsewhere`` (the beat's stream facts are in Redis, ``processes.live``), a change of the
    live stream facts alone (fps, last frame) is no change."""
    before = {name: getattr(camera, name) for name in _OBSERVED_FIELDS}
    observed_before = camera.observed_at
    _apply_observation(camera, observed, stream, now)
    changed = [name for name in _OBSERVED_FIELDS if getattr(camera, name) != before[name]]
    if live_elsewhere and "stream" in changed and live.stable_part(camera.stream) == live.stable_part(before["stream"]):
        changed.remove("stream")
        if not changed:
            camera.stream = before["stream"]
    last = camera.last_operation
    first_since_operation = observed_before is None or bool(last and last.finished and observed_before <= last.finished)
    if not changed and not first_since_operation:
        camera.observed_at = observed_before
        return []
    return [*changed, "observed_at", *(["modified"] if _RECORD_FIELDS.intersection(changed) else [])]


class OperationNotFound(Exception):
    """A report names an operation the database does not hold. Edge tasks are sent only once their
    operation is committed (processes/dispatch.py), so it is one undone because the broker seemed
    to refuse its task (yet had taken it), or one removed with its camera. The control task retries
    shortly, then fails."""


def record_operation_started(operation_id: str) -> None:
    updated = Operation.objects.filter(id=operation_id, state=OperationState.PENDING).update(
        state=OperationState.RUNNING, started=timezone.now()
    )
    if not updated and not Operation.objects.filter(id=operation_id).exists():
        raise OperationNotFound(operation_id)


def _lock_camera_or_app_of(operation_id) -> Camera | None:
    """Lock the operation's camera (or app) row before the operation's, in the order _new_operation
    does: the other order deadlocks with a new operation queued on the same camera meanwhile (it
    waits on the one-active-operation index while holding the camera), or with a delete superseding
    the operation. Found by the API fuzz run. Answers the camera, locked and read whole (the result
    applies to it: one query, where a look-up of the operation's camera, a lock and a read again were
    three round trips on the path of every ``?wait=``)."""
    camera = (Camera.objects.select_for_update(of=("self",)).select_related("host")
              .filter(id=Subquery(Operation.objects.filter(id=operation_id).values("camera_id")[:1])).first())
    if camera is None:
        app_id = Operation.objects.filter(id=operation_id).values_list("app_id", flat=True).first()
        if app_id is not None:
            app_services.lock_app(app_id)
    return camera


def record_operation_result(operation_id: str, ok: bool, error: str = "", observed: dict | None = None,
                            stream: dict | None = None, removed: bool = False, result: dict | None = None,
                            with_record: bool = False) -> None:
    """Apply an operation's result. ``with_record``: the end's announcement carries the camera record
    (``_EndAnswer``), for a caller that records the result alone (the edge's report); a caller that may
    change the camera after this, in its own transaction, leaves it out (its waiters look at the database)."""
    now = timezone.now()
    with transaction.atomic():
        locked_camera = _lock_camera_or_app_of(operation_id)
        op = Operation.objects.select_for_update(of=("self",)).select_related("host").filter(id=operation_id).first()
        if op is None:
            raise OperationNotFound(operation_id)
        if not op.is_active:
            _late_result(op, ok, error, observed, stream, removed, now)
            return  # redelivered result of an operation already recorded, or a late one
        if op.kind == OperationKind.MOVE and op.progress.get("phase") == "removing" and ok:
            _continue_move(op, now)
            return
        op.state = OperationState.SUCCEEDED if ok else OperationState.FAILED
        op.error = "" if ok else (error or "failed")
        op.finished = now
        op.started = op.started or now
        if result:
            op.result = result
        op.save(update_fields=["state", "error", "finished", "started", "result"])
        answer = _EndAnswer()  # its camera, once updated below
        events.operation_finished(op, answer.encoded if with_record else None)  # (and wakes its waiters at the commit)
        if op.app_id is not None:  # an app process's operation (issue 16)
            app_services.apply_result(op, ok, observed, removed, now)
            return
        camera = locked_camera if locked_camera is not None and locked_camera.id == op.camera_id else None
        if camera is None:
            return
        if removed and ok and op.kind == OperationKind.DELETE:
            logger.info("camera %s: deleted (operation %s)", camera.name, op.id,
                        extra={"camera": camera.name, "operation": op.id})
            camera.delete()
            live.forget(camera.name)
            return
        camera.last_operation = op
        before = events.camera_state(camera)
        fields = _apply_observation(camera, observed, stream, now)
        if not ok and observed is None:
            camera.status = CameraStatus.ERROR
        camera.save(update_fields=fields + ["last_operation"])
        events.camera_changed(camera, before)
        answer.camera = camera
    if not ok:
        logger.warning("operation %s (%s %s) failed: %s", op.id, op.kind, op.camera_name, op.error,
                       extra={"camera": op.camera_name or None, "operation": op.id})


def _late_result(op: Operation, ok: bool, error: str, observed: dict | None, stream: dict | None, removed: bool,
                 now) -> None:
    """The result of an operation that had already ended past its deadline: its error says what came
    after all, and when nothing happened to the camera since, the camera shows it (a confirmed
    removal deletes the record)."""
    if not op.progress.get("missed_deadline") or op.progress.get("late_result"):
        return  # a redelivery, or the result of an operation a delete superseded
    late = int((now - op.finished).total_seconds()) if op.finished else 0
    op.error = f"{op.error}; its result came {late} s later: " + ("succeeded" if ok else f"failed: {error or 'failed'}")
    op.progress = {**op.progress, "late_result": True}
    op.save(update_fields=["error", "progress"])
    if not op.camera_id:
        return
    camera = Camera.objects.select_for_update().filter(id=op.camera_id, last_operation_id=op.id).first()
    if camera is None or camera.operations.filter(state__in=ACTIVE_STATES).exists():
        return
    if ok and removed and op.kind == OperationKind.DELETE:
        logger.info("camera %s: deleted (late result of operation %s)", camera.name, op.id,
                    extra={"camera": camera.name, "operation": op.id})
        camera.delete()
        live.forget(camera.name)
    elif observed is not None:
        before = events.camera_state(camera)
        camera.save(update_fields=_apply_observation(camera, observed, stream, now))
        events.camera_changed(camera, before)


# Per control-worker process, for each host: its cameras' version, the digest of the last report
# that changed none of them, their names, and the digest of each camera's logs as stored. The same
# report against the same cameras changes nothing again (``_heartbeat_changes`` depends on nothing
# else), so such a beat does not read them.
_QUIET_BEATS: dict[str, tuple[tuple, str, frozenset[str], dict[str, str]]] = {}


# A report's fingerprint: the digest of what can change a row, and of each camera's logs it carries.
_Observation = tuple[str, dict[str, str]]


def _observation_digest(report: dict) -> _Observation:
    """What of a report can change a row, and the digest of each logs it carries: the fingerprint
    its edge sent, or for an older edge's report, the same computed here (``contracts.heartbeats``).
    An edge leaves out the logs that did not change, and sends them all every tenth beat: a beat
    with the same logs as stored, or none, is as quiet as the one before (else one beat in five
    was recorded in full)."""
    sent = heartbeats.sent_fingerprint(report) or heartbeats.fingerprint(report)
    return sent["stable"], sent["logs"]


def _is_quiet(known, digest: str, logs: dict[str, str]) -> bool:
    """A beat that changes nothing the last quiet one did not: the same digest, and logs as stored."""
    return known is not None and known[1] == digest and all(known[3].get(name) == d for name, d in logs.items())


def record_heartbeat(host_name: str, report: dict, observation: _Observation | None = None) -> EdgeHost:
    """Register or refresh a host and apply the observed state of its cameras.

    Its database cost: 1 read of its cameras' version and 1 write of the host (``UPDATE ...
    RETURNING``); unless the same report was applied to the same cameras before with no change, 1
    read of its cameras, and a locked read and a write only for the cameras whose observation
    changed. The live stream facts of every camera go to Redis in one round trip (``processes.live``).
    ``observation``: the report's ``_observation_digest``, when the caller has it already."""
    now = timezone.now()
    defaults = {
        "queue": report.get("queue", ""),
        "runtime": report.get("runtime", ""),
        "facts": report.get("facts") or {},
        "frames_address": report.get("frames_address", ""),
        "public_key": report.get("public_key", ""),
        "last_heartbeat": now,
    }
    if "images" in report:
        defaults["images"] = report["images"]
    observed = {item["name"]: item for item in report.get("cameras", [])}
    streams = report.get("streams") or {}
    observed_at_ms = report.get("observed_at") or 0
    version = selectors.host_cameras_version(host_name)
    digest, logs = observation or _observation_digest(report)
    quiet = _QUIET_BEATS.get(host_name)
    if quiet and quiet[0] == version and _is_quiet(quiet, digest, logs):
        placed_names = quiet[2]
        defaults["strays"] = sorted(set(observed) - placed_names)
        host = _touch_host(host_name, defaults)
        if host is not None and live.write({name: streams.get(name) for name in placed_names}, now):
            _record_app_heartbeat(host, report, version)
            return host
    placed = list(Camera.objects.select_related("last_operation").filter(host__name=host_name))
    defaults["strays"] = sorted(set(observed) - {camera.name for camera in placed})
    host = _touch_host(host_name, defaults) or EdgeHost.objects.update_or_create(name=host_name, defaults=defaults)[0]
    _record_app_heartbeat(host, report, version)
    live_elsewhere = live.write({camera.name: streams.get(camera.name) for camera in placed}, now)
    # Unlocked first: most beats change nothing. What changed is read again under lock and applied.
    changed = [camera.id for camera in placed
               if _heartbeat_update(camera, observed, streams, observed_at_ms, now, live_elsewhere)]
    # Taken before an operation's result: a later report of the same is news, so it is not quiet.
    stale = any(c.last_operation and c.last_operation.finished and ms(c.last_operation.finished) > observed_at_ms
                for c in placed)
    if not changed:
        if live_elsewhere and not stale:
            # The logs as stored: those this beat carried, and those known before if no row changed since.
            known_logs = {**(quiet[3] if quiet and quiet[0] == version else {}), **logs}
            _QUIET_BEATS[host_name] = (version, digest, frozenset(camera.name for camera in placed), known_logs)
        return host
    _QUIET_BEATS.pop(host_name, None)
    with transaction.atomic():
        for camera in Camera.objects.select_related("last_operation").select_for_update(of=("self",)).filter(
                id__in=changed, host=host):
            before = events.camera_state(camera)
            fields = _heartbeat_update(camera, observed, streams, observed_at_ms, now, live_elsewhere)
            if fields:
                camera.save(update_fields=fields)
                events.camera_changed(camera, before, host=host.name)
    return host


def _touch_host(host_name: str, values: dict) -> EdgeHost | None:
    """Write a registered host's heartbeat values in one statement; None if it is not registered."""
    by_name = {field.name: field for field in EdgeHost._meta.concrete_fields}
    fields = [by_name[name] for name in values]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column or field.attname)} = %s" for field in fields)
    params = [field.get_db_prep_save(values[field.name], connection) for field in fields]
    table = quote(EdgeHost._meta.db_table)
    sql = f"UPDATE {table} SET {assignments} WHERE {quote('name')} = %s RETURNING *"  # noqa: S608 - names from the model
    found = list(EdgeHost.objects.raw(sql, [*params, host_name]))
    return found[0] if found else None


def _heartbeat_update(camera: Camera, observed: dict, streams: dict, observed_at_ms: int, now,
                      live_elsewhere: bool) -> list[str]:
    """Apply one camera's part of a heartbeat to ``camera``; the fields to write (none: no write)."""
    last = camera.last_operation
    if last and last.is_active:
        return []  # the operation's own result will say what happened
    seen = observed.get(camera.name)
    if last and last.finished and ms(last.finished) > observed_at_ms:
        # Taken before the last operation's result: only its logs are still news.
        if seen and seen.get("logs") is not None and seen["logs"] != camera.logs:
            camera.logs = seen["logs"]
            return ["logs"]
        return []
    return _heartbeat_changes(camera, seen, streams.get(camera.name), now, live_elsewhere)


def record_host_alive(host_name: str) -> None:
    """A host whose full report is slow to come says it is alive: online, nothing else changes."""
    EdgeHost.objects.filter(name=host_name).update(last_heartbeat=timezone.now())


# Quiet heartbeats waiting for their batched write (EDGEPROXY_HEARTBEAT_BATCH_SECONDS), in this
# control-worker process: host -> its last report, and when it came.
_PENDING_BEATS: dict[str, tuple[dict, datetime]] = {}
_pending_lock = threading.Lock()
_flusher: list[threading.Thread] = []


def absorb_heartbeat(host_name: str, report: dict) -> None:
    """A heartbeat from the control queue (``record_heartbeat``, batched when it can be).

    A quiet beat (the same report, but for the time and live stream facts, as the last one, which
    changed nothing) waits at most EDGEPROXY_HEARTBEAT_BATCH_SECONDS (and a fifth of the heartbeat
    interval) with the others; then one
    read checks that none of their hosts' cameras changed meanwhile, one statement refreshes their
    ``last_heartbeat`` (to the oldest beat's time: never later than a host was heard from) and one
    Redis round trip stores their live facts (``flush_quiet_heartbeats``).
    With a fleet beating every few seconds that is a fraction of a database write a beat, instead
    of two statements each. Any other beat is recorded at once, and replaces a waiting one."""
    for host, (loud, observation) in gather_quiet_heartbeats({host_name: report}).items():
        record_heartbeat(host, loud, observation)


def gather_quiet_heartbeats(beats: dict[str, dict]) -> dict[str, tuple[dict, _Observation | None]]:
    """``absorb_heartbeat`` for these beats (host -> report) but for recording the others: the quiet
    ones wait for the batched write; the others, with their ``_observation_digest``, are returned for
    ``record_heartbeat`` (a thread each: they wait on the database). A quiet beat costs a comparison of
    its fingerprint and no thread of its own."""
    # At most a fifth of the interval: a host's last_heartbeat must stay well inside its online window.
    seconds = min(settings.EDGEPROXY_HEARTBEAT_BATCH_SECONDS, settings.EDGEPROXY_HEARTBEAT_SECONDS / 5)
    now = timezone.now()
    loud: dict[str, tuple[dict, _Observation | None]] = {}
    with _pending_lock:
        for host_name, report in beats.items():
            try:
                observation = _observation_digest(report)
            except (AttributeError, TypeError, ValueError):  # not a report: refused on its own, not with the others
                loud[host_name] = (report, None)
                continue
            if seconds > 0 and _is_quiet(_QUIET_BEATS.get(host_name), *observation):
                _PENDING_BEATS[host_name] = (report, now)
            else:
                _PENDING_BEATS.pop(host_name, None)  # this one is newer
                loud[host_name] = (report, observation)
        if len(loud) < len(beats) and (not _flusher or not _flusher[0].is_alive()):
            _flusher[:] = [threading.Thread(target=_flush_forever, args=(seconds,), name="heartbeat-batch",
                                            daemon=True)]
            _flusher[0].start()
    return loud


def flush_quiet_heartbeats() -> int:
    """Write the waiting quiet beats (``absorb_heartbeat``); a host whose cameras changed meanwhile
    gets its beat recorded in full. The number of beats written."""
    with _pending_lock:
        batch = dict(_PENDING_BEATS)
        _PENDING_BEATS.clear()
    if not batch:
        return 0
    versions = selectors.hosts_cameras_versions(list(batch))
    quiet = {host: known for host in batch if (known := _QUIET_BEATS.get(host)) is not None}
    unchanged = [host for host, known in quiet.items() if versions.get(host) == known[0]]
    now = min(at for _report, at in batch.values())
    streams = {}
    for host in unchanged:
        reported = batch[host][0].get("streams") or {}
        streams.update({name: reported.get(name) for name in quiet[host][2]})
    refreshed = EdgeHost.objects.filter(name__in=unchanged).update(last_heartbeat=now) if unchanged else 0
    if refreshed != len(unchanged) or not live.write(streams, now):
        unchanged = []  # (a host forgotten meanwhile, or no Redis): each recorded in full
    for host in batch.keys() - set(unchanged):
        _QUIET_BEATS.pop(host, None)
        record_heartbeat(host, batch[host][0])
    return len(batch)


def _flush_forever(seconds: float) -> None:
    from django.db import close_old_connections

    while True:
        time.sleep(seconds)
        try:
            close_old_connections()
            flush_quiet_heartbeats()
        except Exception as exc:  # noqa: BLE001 - the hosts' next beats replace these
            logger.warning("quiet heartbeats not recorded (%s); the next ones replace them", exc)


def host_restarted(host: EdgeHost) -> None:
    """An edge worker (re)started: what it was doing may be lost with it, so send its unfinished
    operations again (every edge task is idempotent), then reconcile the rest."""
    for op in Operation.objects.select_related("camera", "camera__host").filter(host=host, state__in=ACTIVE_STATES):
        try:
            _redispatch(op)
        except Exception as exc:  # noqa: BLE001 - one bad operation must not stop the others
            logger.warning("operation %s not sent again: %s", op.id, exc)
    reconcile_host(host)


def _redispatch(op: Operation) -> None:
    assert op.host is not None  # only operations of a known host are sent again
    if op.app_id is not None or op.progress.get("app"):  # an app process's operation (issue 16)
        app_services.redispatch(op)
        return
    camera = op.camera
    kind = op.kind
    if kind == OperationKind.PULL:
        repository, _, tag = op.progress.get("image", "").rpartition(":")
        send(messages.PullImage(operation_id=str(op.id), repository=repository, tag=tag), op.host)
    elif kind == OperationKind.MOVE and camera is not None:
        if op.progress.get("phase") == "removing":
            send(messages.Remove(operation_id=str(op.id), camera_name=camera.name),
                 EdgeHost.objects.get(name=op.progress["from"]))
        else:
            send(_ensure_running(camera, op), camera.host)
    elif camera is None or kind == OperationKind.DELETE:
        send(messages.Remove(operation_id=str(op.id), camera_name=op.camera_name), op.host)
    elif kind == OperationKind.STOP or (
            kind == OperationKind.RECONCILE and camera.desired_state == DesiredState.STOPPED):
        send(messages.Stop(operation_id=str(op.id), camera_name=camera.name), op.host)
    elif kind in (OperationKind.CONNECT, OperationKind.START, OperationKind.RECONCILE):
        send(_ensure_running(camera, op), camera.host)
    elif kind == OperationKind.UPGRADE and camera is not None:
        # idempotent on the edge
        send(_upgrade_message(camera, op, op.progress.get("image") or camera.image_tag), camera.host)
    elif kind == OperationKind.RECORDING and camera is not None:
        send(recording_message(camera, op), op.host)


def recording_message(camera: Camera, op: Operation) -> messages.SetRecording:
    """The edge task that switches the camera's recording as its record says (idempotent)."""
    wanted = camera.recording or {}
    return messages.SetRecording(operation_id=str(op.id), camera_name=camera.name,
                                 enabled=bool(wanted.get("enabled")),
                                 retention_hours=float(wanted.get("retention_hours") or 0))


# --- reconciliation ----------------------------------------------------------------------------

# A correction that failed is not retried at every pass: it would flood the host with operations.
RECONCILE_RETRY_SECONDS = 30


def _needs_correction(camera: Camera) -> str | None:
    """``start``, ``stop`` or None, from the camera's newest observation (taken after its last operation)."""
    last = camera.last_operation
    if last and last.is_active:
        return None
    if camera.observed_at is None or (last and last.finished and camera.observed_at <= last.finished):
        return None  # nothing observed since the last operation ended
    if (last and last.kind == OperationKind.RECONCILE and last.state == OperationState.FAILED
            and last.finished and (timezone.now() - last.finished).total_seconds() < RECONCILE_RETRY_SECONDS):
        return None
    running = camera.container_id and camera.state.get("Status") in RUNNING_STATUSES
    if camera.desired_state == DesiredState.RUNNING and not running:
        return "start"
    if camera.desired_state == DesiredState.STOPPED and running:
        return "stop"
    return None


def reconcile_host(host: EdgeHost, cameras=None) -> list[Operation]:
    """Drive one host towards the database: start what should run and does not, stop what should
    not run, remove containers with our labels that no camera of the database owns (strays).
    Every correction is an operation. Unlabelled containers are never seen, so never touched."""
    corrections = []
    if cameras is None:
        cameras = Camera.objects.select_related("host", "last_operation").filter(host=host)
    for camera in cameras:
        action = _needs_correction(camera)
        if action is None:
            continue
        outbox = EdgeOutbox()  # a refused task leaves the operation pending: it is sent again later
        try:
            with transaction.atomic():
                op = _new_operation(camera, OperationKind.RECONCILE)
                op.progress = {"action": action}
                op.save(update_fields=["progress"])
                camera.save(update_fields=["last_operation"])
                outbox.add(_ensure_running(camera, op) if action == "start"
                           else messages.Stop(operation_id=str(op.id), camera_name=camera.name), host)
        except Busy:
            continue  # a user's operation got there first
        outbox.deliver()
        logger.info("reconcile: %s camera %s on %s (operation %s)", action, camera.name, host.name, op.id,
                    extra={"camera": camera.name, "host": host.name, "operation": op.id})
        corrections.append(op)
    if not host.strays:
        return corrections
    busy = set(Operation.objects.filter(host=host, camera__isnull=True, kind=OperationKind.RECONCILE,
                                        state__in=ACTIVE_STATES).values_list("camera_name", flat=True))
    owned = set(Camera.objects.filter(name__in=host.strays, host=host).values_list("name", flat=True))
    for stray in set(host.strays) - busy - owned:
        op = Operation.objects.create(kind=OperationKind.RECONCILE, host=host, camera_name=stray,
                                      progress={"action": "remove stray"})
        EdgeOutbox([(messages.Remove(operation_id=str(op.id), camera_name=stray), host)]).deliver()
        logger.info("reconcile: removing stray camera process %s on %s (operation %s)", stray, host.name, op.id,
                    extra={"camera": stray, "host": host.name, "operation": op.id})
        corrections.append(op)
    return corrections


def _record_app_heartbeat(host: EdgeHost, report: dict, version: tuple = ()) -> None:
    if report.get("apps") is None:  # app processes (issue 16)
        return
    if not report["apps"] and version and version[-1] == 0:
        return  # no app container seen, no app placed here: nothing to apply (a locked read saved)
    app_services.record_heartbeat(host, report["apps"], report.get("observed_at") or 0)


def reconcile_fleet() -> int:
    """One reconcile pass over every online host (Celery beat runs it)."""
    hosts = {host.id: host for host in selectors.online_hosts()}
    by_host: dict[int, list[Camera]] = {host_id: [] for host_id in hosts}
    # Only a camera whose desired state and observed process disagree can need a correction: the
    # database finds those (a pass over 50,000 cameras reads none when all is well); _needs_correction decides.
    observed_status = Coalesce(KT("state__Status"), Value(""), output_field=TextField())
    running = Q(container_id__gt="", observed_status__in=RUNNING_STATUSES)
    disagree = (Q(desired_state=DesiredState.RUNNING) & ~running) | (Q(desired_state=DesiredState.STOPPED) & running)
    candidates = Camera.objects.alias(observed_status=observed_status).filter(disagree, host_id__in=hosts)
    for camera in candidates.select_related("last_operation"):
        camera.host = hosts[camera.host_id]
        by_host[camera.host_id].append(camera)
    corrected = sum(len(reconcile_host(hosts[host_id], cameras)) for host_id, cameras in by_host.items())
    return corrected + len(app_services.reconcile_apps(hosts, RECONCILE_RETRY_SECONDS))  # apps (issue 16)


def operation_deadline(kind: str) -> float:
    """Seconds an operation of ``kind`` may take from its creation to its result (docs/api.md)."""
    base = settings.EDGEPROXY_OPERATION_DEADLINE_SECONDS
    if kind == OperationKind.PULL:
        return settings.EDGEPROXY_PULL_DEADLINE_SECONDS
    if kind == OperationKind.UPGRADE:
        return base + settings.EDGEPROXY_UPGRADE_TIMEOUT_SECONDS + settings.EDGEPROXY_UPGRADE_STEADY_SECONDS
    if kind == OperationKind.MOVE:
        return 2 * base
    return base


def _missed_deadline(op: Operation, deadline: float) -> str:
    """What really happened to an operation with no result after its deadline, in one sentence."""
    host = op.host
    name = host.name if host else "?"
    if host is None or not host.is_online:
        heard = (f"last heard from {int((timezone.now() - host.last_heartbeat).total_seconds())} s ago"
                 if host and host.last_heartbeat else "never heard from")
        return f"edge host {name} is offline ({heard}); the {op.kind} was not confirmed within {deadline:g} s"
    sent = op.progress.get("sent_again", 0)
    if op.state == OperationState.PENDING:
        return (f"edge host {name} is online but did not take up the {op.kind} within {deadline:g} s (sent "
                f"{sent + 1} times): its worker is stuck or overloaded")
    return f"edge host {name} took up the {op.kind} but reported no result within {deadline:g} s"


def expire_operations(now=None) -> int:
    """Look after operations nobody seems to work on (beat runs it every few seconds).

    Pending on an online host for a third of its deadline: the task message may be lost (a worker
    killed while holding it), so it is sent again (edge tasks are idempotent), every third of the
    deadline. Past its deadline with no result: failed, with what really happened as the error,
    so that no camera stays busy; a camera's state is then reconciled from its host's heartbeats.
    A delete past its deadline on a host that is offline deletes the record: the camera process
    left on that host is removed as a stray when the host returns."""
    now = now or timezone.now()
    handled = 0
    shortest = min(operation_deadline(kind) for kind in OperationKind.values) / 3
    stale = Operation.objects.filter(state__in=ACTIVE_STATES, created__lt=now - timedelta(seconds=shortest))
    for op in stale.select_related("host", "camera", "camera__host"):
        deadline = operation_deadline(op.kind)
        age = (now - op.created).total_seconds()
        online = op.host is not None and op.host.is_online
        if age >= deadline:
            message = _missed_deadline(op, deadline)
            with transaction.atomic():
                if op.kind == OperationKind.DELETE and not online:
                    record_operation_result(str(op.id), True, removed=True, result={"message": message + (
                        "; the record is deleted, and the camera process is removed when the host returns")})
                else:
                    record_operation_result(str(op.id), False, message)
                # (not when a result came in meanwhile: that one ended it)
                Operation.objects.filter(id=op.id, finished__gte=now).update(
                    progress={**op.progress, "missed_deadline": True})
            handled += 1
        elif online and op.state == OperationState.PENDING and age >= deadline / 3:
            last_sent = op.progress.get("sent_again_at", 0)
            if time.time() - last_sent >= deadline / 3:
                op.progress = {**op.progress, "sent_again_at": time.time(),
                               "sent_again": op.progress.get("sent_again", 0) + 1}
                op.save(update_fields=["progress"])
                logger.warning("operation %s (%s %s) still pending on %s: sent again", op.id, op.kind,
                               op.camera_name, op.host.name)  # type: ignore[union-attr]  # online: it has one
                _redispatch(op)
                handled += 1
    return handled


# --- moving a camera between hosts -------------------------------------------------------------


def move_camera(camera: Camera, host_name: str) -> Camera:
    """Stop and remove the camera on its host, then run it on ``host_name`` (operation ``move``)."""
    target = selectors.host_by_name(host_name)
    if target is None:
        raise NotFound(f"host: no edge host named {host_name!r} has registered.", {"host": ["unknown host"]})
    if target.id == camera.host_id:
        raise Conflict(f"host: camera {camera.name} already runs on {host_name}.", {"host": ["same host"]})
    if not target.public_key:
        raise Unavailable(f"Edge host {host_name} has not reported its key yet; try again shortly.")
    source = camera.host
    before = {"status": camera.status}
    with transaction.atomic():
        op = _new_operation(camera, OperationKind.MOVE)
        app_services.refuse_change_of_camera_read_by_apps(camera, "move")  # the camera row is held
        op.host = target
        op.progress = {"phase": "removing", "from": source.name, "to": target.name}
        op.save(update_fields=["host", "progress"])
        camera.status = CameraStatus.PENDING
        camera.save(update_fields=["last_operation", "status", "modified"])
    EdgeOutbox([(messages.Remove(operation_id=str(op.id), camera_name=camera.name), source)]).deliver(
        undo=lambda refused: fail_refused(refused, restore=before), what=f"the move of camera {camera.name}")
    logger.info("camera %s: move from %s to %s queued (operation %s)", camera.name, source.name, target.name, op.id,
                extra={"camera": camera.name, "host": target.name, "operation": op.id})
    return camera


def _continue_move(op: Operation, now) -> None:
    """The old host removed the camera: place it on the new host and start it there."""
    assert op.camera_id is not None and op.host is not None  # a move has both
    camera = Camera.objects.select_for_update().select_related("host").get(id=op.camera_id)
    camera.host = op.host
    camera.container_id = ""
    camera.state = {}
    camera.stream = None
    camera.status = CameraStatus.PENDING
    camera.observed_at = None
    camera.save(update_fields=["host", "container_id", "state", "stream", "status", "observed_at", "modified"])
    op.progress = {**op.progress, "phase": "starting"}
    op.started = op.started or now
    op.save(update_fields=["progress", "started"])
    # Inside the report's transaction: the operation exists already; if this commit fails, the
    # report is retried and sends it again (the edge task is idempotent).
    send(_ensure_running(camera, op), camera.host)


# --- images ------------------------------------------------------------------------------------


def pull_image(repository: str, version: str, host_name: str | None = None) -> list[Operation]:
    """One pull operation per target host: the named one, or every online host."""
    if host_name:
        host = selectors.host_by_name(host_name)
        if host is None:
            raise NotFound(f"No edge host named {host_name!r}.")
        targets = [host]
    else:
        targets = list(selectors.online_hosts())
    if not targets:
        raise Unavailable("No edge host is online to pull the image.")
    ops = []
    outbox = EdgeOutbox()
    with transaction.atomic():
        for host in targets:
            op = Operation.objects.create(kind=OperationKind.PULL, host=host, camera_name="",
                                          progress={"image": f"{repository}:{version}"})
            outbox.add(messages.PullImage(operation_id=str(op.id), repository=repository, tag=version), host)
            ops.append(op)
    refused = outbox.deliver(undo=fail_refused, what=f"the pull of {repository}:{version}")
    if refused:  # some hosts got theirs: the others' operations show why not
        ops = list(Operation.objects.select_related("host").filter(id__in=[op.id for op in ops]).order_by("created"))
    return ops


def record_operation_progress(operation_id: str, progress: dict) -> None:
    """Store an operation's progress. Reports carrying a ``seq`` may arrive out of order (several
    control threads): an older one never overwrites a newer one, so progress never goes back."""
    operations = Operation.objects.filter(id=operation_id, state__in=ACTIVE_STATES)
    seq = progress.get("seq") if isinstance(progress, dict) else None
    if isinstance(seq, int):
        operations = operations.filter(Q(progress__seq__isnull=True) | Q(progress__seq__lt=seq))
    operations.update(progress=progress)


# --- annotations -------------------------------------------------------------------------------


def record_annotation(fields: dict, host: str = ""):
    """Store an event from the frame API (validated there like the original; checked again here).
    An event without its required fields is dropped with a warning: there is nobody to answer."""
    from processes.models import Annotation

    camera_name = str(fields.get("device_name") or "")[:63]
    event_type = str(fields.get("type") or "")[:255]
    start = fields.get("start_timestamp")
    if not camera_name or not event_type or not isinstance(start, int):
        logger.warning("annotation from host %s dropped: device_name, type and start_timestamp are required", host)
        return None
    end = fields.get("end_timestamp")
    confidence = fields.get("confidence")
    with transaction.atomic():
        annotation = Annotation.objects.create(
            camera_name=camera_name,
            host=host,
            type=event_type,
            start_timestamp=start,
            end_timestamp=end if isinstance(end, int) and end > 0 else None,
            object_type=str(fields.get("object_type") or "")[:255],
            confidence=float(confidence) if isinstance(confidence, int | float) else None,
            data=fields,
        )
        events.annotation_created(annotation)
    return annotation


# --- upgrades ----------------------------------------------------------------------------------
# Pull results and camera image upgrades (operation kinds ``pull`` and ``upgrade``). The edge side
# is worker/upgrade.py; the image inventories come from heartbeats (EdgeHost.images).


def record_pull_result(operation_id: str, ok: bool, error: str = "", result: dict | None = None,
                       progress: dict | None = None, images: list | None = None) -> None:
    """The end of a pull: final progress, the host's new image inventory and the result, together."""
    with transaction.atomic():
        op = Operation.objects.select_for_update().filter(id=operation_id).first()
        if op is None:
            raise OperationNotFound(operation_id)
        if not op.is_active:
            return  # redelivered
        if progress:
            op.progress = {**op.progress, **progress}
            op.save(update_fields=["progress"])
        if ok and images is not None and op.host_id:
            EdgeHost.objects.filter(id=op.host_id).update(images=images)
        record_operation_result(operation_id, ok, error, result=result)


def record_upgrade_result(operation_id: str, ok: bool, error: str = "", observed: dict | None = None,
                          stream: dict | None = None, result: dict | None = None,
                          progress: dict | None = None) -> None:
    """The end of an upgrade. Only a success changes the camera's ``image_tag`` (to ``result.image``).

    A success reported after its operation was closed (a repeated delivery that ran after all)
    still moves the record to the image the camera now runs: the edge only says so once it does."""
    image = (result or {}).get("image")
    with transaction.atomic():
        _lock_camera_or_app_of(operation_id)
        op = Operation.objects.select_for_update().filter(id=operation_id).first()
        if op is None:
            raise OperationNotFound(operation_id)
        if not op.is_active:
            if ok and image and op.camera_id and Camera.objects.filter(id=op.camera_id).exclude(
                    image_tag=image).update(image_tag=image, modified=timezone.now()):
                logger.info("camera %s: now on image %s (late result of operation %s)", op.camera_name, image,
                            op.id)
            return
        if progress:
            op.progress = {**op.progress, **progress}
            op.save(update_fields=["progress"])
        record_operation_result(operation_id, ok, error, observed, stream, result=result)
        if ok and image and op.camera_id:
            Camera.objects.filter(id=op.camera_id).update(image_tag=image, modified=timezone.now())
            logger.info("camera %s: now on image %s (operation %s)", op.camera_name, image, op.id)


def _upgrade_message(camera: Camera, op: Operation, image: str) -> messages.Upgrade:
    if not camera.host.public_key:
        raise Unavailable(f"Edge host {camera.host.name} has not reported its key yet; try again shortly.")
    spec = {**_camera_spec(camera), "image": image}
    return messages.Upgrade(operation_id=str(op.id), camera_name=camera.name,
                            spec=sealing.seal(camera.host.public_key, spec))


def upgrade_camera(camera: Camera, newer_version: str | None = None, image_tag: str | None = None) -> Camera:
    """Run the camera on another local image of its host (operation ``upgrade``).

    ``newer_version``: a tag of the camera's repository (of ``image_tag``'s, when given) present on
    the camera's host; without it, the highest local version, which must be newer than the current
    one. The record's ``image_tag`` changes only when the edge reports success."""
    host = camera.host
    if host.runtime == "local":
        raise Conflict(f"Camera {camera.name} runs on edge host {host.name} as a local process, which has no "
                       "images: upgrades need the Docker runtime.")
    if camera.desired_state != DesiredState.RUNNING:
        raise Conflict(f"Camera {camera.name} is stopped; start it before upgrading it.")
    repository, current = split_image(image_tag or camera.image_tag)
    versions = [t for t in sort_tags(local_tags(host.images or [], repository)) if t != "latest"]
    listed = ", ".join(versions) if versions else "none"
    version: str | None
    if newer_version:
        if newer_version not in local_tags(host.images or [], repository):
            raise ImageNotOnHost(f"Image {repository}:{newer_version} is not on edge host {host.name}; versions there: "
                                 f"{listed}. Pull it first.", repository, newer_version,
                                 extra={"versions": versions, "host": host.name})
        version = newer_version
    else:
        version = highest_version(versions)
        if version is None or not is_newer(version, current):
            raise Conflict(f"Edge host {host.name} has no version of {repository} newer than {current or 'the current'}"
                           f" one; versions there: {listed}.", extra={"versions": versions, "host": host.name})
    target = f"{repository}:{version}"
    if target == camera.image_tag:
        raise Conflict(f"Camera {camera.name} already runs {target}.", extra={"versions": versions, "host": host.name})
    with transaction.atomic():
        op = _new_operation(camera, OperationKind.UPGRADE)
        op.progress = {"phase": "queued", "image": target, "from": camera.image_tag}
        op.save(update_fields=["progress"])
        camera.save(update_fields=["last_operation", "modified"])
        message = _upgrade_message(camera, op, target)
    EdgeOutbox([(message, camera.host)]).deliver(undo=fail_refused, what=f"the upgrade of camera {camera.name}")
    logger.info("camera %s: upgrade from %s to %s queued (operation %s)", camera.name, camera.image_tag, target, op.id,
                extra={"camera": camera.name, "operation": op.id})
    return camera

