"""Writes: connect, start, stop and delete cameras; apply what edge workers report.

API views and control tasks call these; nothing else writes cameras, hosts or operations.
Every change that needs an edge host is an Operation row plus a Celery task on that host's
queue, sent inside the same transaction: if the broker refuses, nothing is stored.
"""

import logging
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from edgeproxy import crypto
from edgeproxy.api.errors import ApiError, Conflict, Invalid, NotFound, Unavailable
from edgeproxy.celery import app as celery_app
from processes import selectors
from processes.models import ACTIVE_STATES, Camera, DesiredState, EdgeHost, Operation, OperationKind, OperationState
from settings_app.selectors import default_camera_image
from worker import sealing
from worker.redaction import mask_url

logger = logging.getLogger("edgeproxy.processes")

# Publishing must fail fast when the broker is down: the API then answers 503 and stores nothing.
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


# --- placement and dispatch ------------------------------------------------------------------


def place_camera(host_name: str | None) -> EdgeHost:
    """The named host, or the online host with the fewest cameras."""
    if host_name:
        host = selectors.host_by_name(host_name)
        if host is None:
            raise Invalid(f"host: no edge host named {host_name!r} has registered.", {"host": ["unknown host"]})
        return host
    host = selectors.online_hosts().order_by("camera_count", "name").first()
    if host is None:
        raise Unavailable("No edge host is online to run the camera; start an edge worker and try again.")
    return host


def _send(task_name: str, host: EdgeHost, operation: Operation, **kwargs) -> None:
    celery_app.send_task(
        task_name,
        kwargs={"operation_id": str(operation.id), **kwargs},
        queue=host.queue,
        task_id=str(operation.id),
        retry=True,
        retry_policy=_PUBLISH_RETRY,
    )


def _camera_spec(camera: Camera) -> dict:
    return {
        "camera_id": str(camera.id),
        "name": camera.name,
        "image": camera.image_tag,
        "rtsp_url": crypto.decrypt(camera.rtsp_endpoint_encrypted),
        "rtmp_url": camera.rtmp_endpoint,
        "transport": camera.rtsp_transport,
        "buffer_seconds": settings.EDGEPROXY_CAMERA_BUFFER_SECONDS,
    }


def _sealed_spec(camera: Camera) -> str:
    if not camera.host.public_key:
        raise Unavailable(f"Edge host {camera.host.name} has not reported its key yet; try again shortly.")
    return sealing.seal(camera.host.public_key, _camera_spec(camera))


def _new_operation(camera: Camera, kind: str) -> Operation:
    try:
        with transaction.atomic():
            op = Operation.objects.create(kind=kind, camera=camera, camera_name=camera.name, host=camera.host)
    except IntegrityError:
        active = camera.operations.filter(state__in=ACTIVE_STATES).first()
        what = f"a {active.kind} operation ({active.id})" if active else "another operation"
        raise Conflict(f"Camera {camera.name} is busy with {what}; try again when it has finished.") from None
    camera.last_operation = op
    return op


def _dispatch_ensure_running(camera: Camera, op: Operation) -> None:
    _send("edge.ensure_running", camera.host, op, camera_name=camera.name, spec=_sealed_spec(camera))


# --- camera lifecycle ------------------------------------------------------------------------


def connect_camera(*, name: str, rtsp_endpoint: str, rtmp_endpoint: str = "", host: str | None = None,
                   image_tag: str | None = None, rtsp_transport: str = "tcp") -> Camera:
    """Create a camera record and ask its host to run it (operation ``connect``)."""
    if Camera.objects.filter(name=name).exists():
        raise Conflict(f"A camera named {name!r} already exists.", {"name": ["already exists"]})
    placed_on = place_camera(host)
    with transaction.atomic():
        try:
            with transaction.atomic():
                camera = Camera.objects.create(
                    name=name,
                    rtsp_endpoint_encrypted=crypto.encrypt(rtsp_endpoint),
                    rtsp_endpoint_masked=mask_url(rtsp_endpoint),
                    rtmp_endpoint=rtmp_endpoint or "",
                    rtsp_transport=rtsp_transport,
                    image_tag=image_tag or default_camera_image(),
                    host=placed_on,
                    desired_state=DesiredState.RUNNING,
                    status="pending",
                )
        except IntegrityError:
            raise Conflict(f"A camera named {name!r} already exists.", {"name": ["already exists"]}) from None
        op = _new_operation(camera, OperationKind.CONNECT)
        camera.save(update_fields=["last_operation"])
        _dispatch_ensure_running(camera, op)
    logger.info("camera %s: connect queued on host %s (operation %s)", name, placed_on.name, op.id)
    return camera


def start_camera(camera: Camera) -> Camera:
    with transaction.atomic():
        op = _new_operation(camera, OperationKind.START)
        camera.desired_state = DesiredState.RUNNING
        camera.status = "pending"
        camera.save(update_fields=["desired_state", "status", "last_operation", "modified"])
        _dispatch_ensure_running(camera, op)
    logger.info("camera %s: start queued (operation %s)", camera.name, op.id)
    return camera


def stop_camera(camera: Camera) -> Camera:
    with transaction.atomic():
        op = _new_operation(camera, OperationKind.STOP)
        camera.desired_state = DesiredState.STOPPED
        camera.save(update_fields=["desired_state", "last_operation", "modified"])
        _send("edge.stop", camera.host, op, camera_name=camera.name)
    logger.info("camera %s: stop queued (operation %s)", camera.name, op.id)
    return camera


def delete_camera(camera: Camera) -> Camera:
    """Ask the host to remove the camera's process and frame keys; the record goes when it confirms."""
    with transaction.atomic():
        op = _new_operation(camera, OperationKind.DELETE)
        camera.desired_state = DesiredState.STOPPED
        camera.status = "removing"
        camera.save(update_fields=["desired_state", "status", "last_operation", "modified"])
        _send("edge.remove", camera.host, op, camera_name=camera.name)
    logger.info("camera %s: delete queued (operation %s)", camera.name, op.id)
    return camera


def camera_snapshot(camera: Camera, keyframe_only: bool = False) -> bytes:
    """The camera's newest frame as JPEG, from the frame server of its edge host."""
    from edgeproxy import client as frames

    address = camera.host.frames_address
    if not address or not camera.host.is_online:
        raise Unavailable(f"Edge host {camera.host.name} is offline; no frame can be fetched.")
    try:
        return frames.latest_jpeg(address, camera.name, keyframe_only=keyframe_only, timeout=5.0,
                                  token=settings.EDGEPROXY_FRAMES_TOKEN or None)
    except frames.CameraNotFound:
        raise NotFound(f"Camera {camera.name} is not running on edge host {camera.host.name}.") from None
    except frames.ServerUnavailable:
        raise Unavailable(f"The frame server of edge host {camera.host.name} does not answer.") from None
    except frames.CameraUnavailable:
        raise Unavailable(f"Camera {camera.name} is not streaming; no frame is available.") from None
    except frames.FrameTimeout:
        raise ApiError(f"No frame of camera {camera.name} arrived in time.", status_code=504) from None
    except frames.FrameError as exc:
        raise Unavailable(f"No frame of camera {camera.name}: {exc}") from None


def get_camera(name: str) -> Camera:
    camera = selectors.camera_by_name(name)
    if camera is None:
        raise NotFound(f"No camera named {name!r}.")
    return camera


def wait_for_operation(operation_id, seconds: float) -> Operation:
    """Poll the database until the operation ends or ``seconds`` pass (the workers update it).

    Every 10 ms for the first two seconds (most operations end within them), then every 50 ms."""
    started = time.monotonic()
    while True:
        op = Operation.objects.get(id=operation_id)
        waited = time.monotonic() - started
        if op.state not in ACTIVE_STATES or waited >= seconds:
            return op
        time.sleep(0.01 if waited < 2 else 0.05)


# --- reports from edge workers (applied by control tasks) ------------------------------------


def _status_from_observation(camera: Camera, observed: dict | None) -> str:
    if camera.status == "removing":
        return "removing"
    if observed is None:
        if camera.last_operation_id and camera.last_operation and camera.last_operation.is_active:
            return "pending"
        return "stopped" if camera.desired_state == DesiredState.STOPPED else "error"
    status = observed.get("status") or "created"
    if camera.desired_state == DesiredState.STOPPED and status in ("exited", "created", "dead"):
        return "stopped"
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


def record_operation_started(operation_id: str) -> None:
    Operation.objects.filter(id=operation_id, state=OperationState.PENDING).update(
        state=OperationState.RUNNING, started=timezone.now()
    )


def record_operation_result(operation_id: str, ok: bool, error: str = "", observed: dict | None = None,
                            stream: dict | None = None, removed: bool = False, result: dict | None = None) -> None:
    now = timezone.now()
    with transaction.atomic():
        op = Operation.objects.select_for_update().filter(id=operation_id).first()
        if op is None or not op.is_active:
            return  # redelivered result of an operation already recorded
        op.state = OperationState.SUCCEEDED if ok else OperationState.FAILED
        op.error = "" if ok else (error or "failed")
        op.finished = now
        op.started = op.started or now
        if result:
            op.result = result
        op.save(update_fields=["state", "error", "finished", "started", "result"])
        camera = Camera.objects.select_for_update().filter(id=op.camera_id).first() if op.camera_id else None
        if camera is None:
            return
        if removed and ok:
            logger.info("camera %s: deleted (operation %s)", camera.name, op.id)
            camera.delete()
            return
        camera.last_operation = op
        fields = _apply_observation(camera, observed, stream, now)
        if not ok and observed is None:
            camera.status = "error"
        camera.save(update_fields=fields + ["last_operation"])
    if not ok:
        logger.warning("operation %s (%s %s) failed: %s", op.id, op.kind, op.camera_name, op.error)


def record_heartbeat(host_name: str, report: dict) -> EdgeHost:
    """Register or refresh a host and apply the observed state of its cameras."""
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
    host, _ = EdgeHost.objects.update_or_create(name=host_name, defaults=defaults)
    observed = {item["name"]: item for item in report.get("cameras", [])}
    streams = report.get("streams") or {}
    observed_at_ms = report.get("observed_at") or 0
    with transaction.atomic():
        for camera in Camera.objects.select_related("last_operation").select_for_update(of=("self",)).filter(host=host):
            last = camera.last_operation
            if last and last.is_active:
                continue  # the operation's own result will say what happened
            seen = observed.get(camera.name)
            if last and last.finished and selectors.ms(last.finished) > observed_at_ms:
                # Taken before the last operation's result: only its logs are still news.
                if seen and seen.get("logs") is not None:
                    camera.logs = seen["logs"]
                    camera.save(update_fields=["logs"])
                continue
            fields = _apply_observation(camera, seen, streams.get(camera.name), now)
            camera.save(update_fields=fields)
    return host


def resend_desired_state(host: EdgeHost) -> int:
    """After an edge worker (re)starts: ask it to run every camera that should run there."""
    count = 0
    for camera in Camera.objects.select_related("host", "last_operation").filter(
        host=host, desired_state=DesiredState.RUNNING
    ):
        if camera.last_operation and camera.last_operation.is_active:
            continue
        try:
            with transaction.atomic():
                op = _new_operation(camera, OperationKind.RECONCILE)
                camera.save(update_fields=["last_operation"])
                _dispatch_ensure_running(camera, op)
            count += 1
        except Conflict:
            continue
    return count


# --- images ------------------------------------------------------------------------------------


def pull_image(repository: str, version: str, host_name: str | None = None) -> list[Operation]:
    """One pull operation per target host: the named one, or every online host."""
    targets = [selectors.host_by_name(host_name)] if host_name else list(selectors.online_hosts())
    if not targets:
        raise Unavailable("No edge host is online to pull the image.")
    ops = []
    with transaction.atomic():
        for host in targets:
            op = Operation.objects.create(kind=OperationKind.PULL, host=host, camera_name="",
                                          progress={"image": f"{repository}:{version}"})
            _send("edge.pull_image", host, op, repository=repository, tag=version)
            ops.append(op)
    return ops


def record_operation_progress(operation_id: str, progress: dict) -> None:
    Operation.objects.filter(id=operation_id, state__in=ACTIVE_STATES).update(progress=progress)


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
    return Annotation.objects.create(
        camera_name=camera_name,
        host=host,
        type=event_type,
        start_timestamp=start,
        end_timestamp=end if isinstance(end, int) and end > 0 else None,
        object_type=str(fields.get("object_type") or "")[:255],
        confidence=float(confidence) if isinstance(confidence, int | float) else None,
        data=fields,
    )
