"""Events the fleet tells other systems about (webhooks, MQTT): one definition of each.

Each event is a type, a time, ids and the facts a receiver needs, as a JSON object (docs/events.md
shows one of each). No event ever carries a secret: cameras are named, never their URLs.

Also here: the camera status an event reports (from a camera's stored status and stream facts),
the MQTT topic layout, and the webhook signature. Django-free.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from edgeproxy.contracts.statuses import CameraStatus, DesiredState


class EventType(StrEnum):
    CAMERA_STATUS = "camera.status"
    HOST_ONLINE = "host.online"
    HOST_OFFLINE = "host.offline"
    OPERATION_FINISHED = "operation.finished"
    ANNOTATION_CREATED = "annotation.created"
    UPGRADE_AVAILABLE = "upgrade.available"
    CAMERA_RECORDING_PROBLEM = "camera.recording_problem"


EVENT_TYPES = tuple(t.value for t in EventType)


class CameraEventStatus(StrEnum):
    """What a camera does, as events report it (fewer states than the API's status)."""

    STARTING = "starting"  # created, pending, its process up but no stream yet
    STREAMING = "streaming"  # frames arrive
    RECONNECTING = "reconnecting"  # the source went away; the camera process retries
    ERROR = "error"  # a failure retrying does not cure (wrong credentials, process exited)
    STOPPED = "stopped"
    OFFLINE = "offline"  # its edge host is silent
    REMOVING = "removing"


def camera_event_status(status: str, desired_state: str, stream: dict | None) -> str:
    """The event status of a camera from its stored ``status``, ``desired_state`` and ``stream``."""
    stream_state = (stream or {}).get("state") if isinstance(stream, dict) else None
    if status == CameraStatus.OFFLINE:
        return CameraEventStatus.OFFLINE
    if status == CameraStatus.REMOVING:
        return CameraEventStatus.REMOVING
    if status == CameraStatus.STOPPED or (desired_state == DesiredState.STOPPED and status in (
            CameraStatus.EXITED, CameraStatus.CREATED, CameraStatus.DEAD)):
        return CameraEventStatus.STOPPED
    if status in (CameraStatus.ERROR, CameraStatus.DEAD, CameraStatus.EXITED):
        return CameraEventStatus.ERROR
    if status == CameraStatus.RUNNING:
        if stream_state == "streaming":
            return CameraEventStatus.STREAMING
        if stream_state == "reconnecting":
            return CameraEventStatus.RECONNECTING
        if stream_state == "error":
            return CameraEventStatus.ERROR
    return CameraEventStatus.STARTING


def _time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Event:
    """One event: ``type``, ``time`` and ``data`` (the facts); ``camera`` and ``host`` name what it
    is about (the ordering key and the MQTT topic). ``id`` is its outbox id (a receiver's dedup key)."""

    type: str
    time: datetime
    data: dict
    camera: str = ""
    host: str = ""

    def payload(self, event_id: int) -> dict:
        return {"id": event_id, "type": self.type, "time": _time(self.time), "host": self.host or None,
                "camera": self.camera or None, "data": self.data}


def camera_status(*, camera: str, camera_id: str, host: str, status: str, previous: str | None,
                  at: datetime) -> Event:
    return Event(EventType.CAMERA_STATUS, at, {"camera_id": camera_id, "status": status, "previous": previous},
                 camera=camera, host=host)


def host_presence(*, host: str, online: bool, last_heartbeat: datetime | None, at: datetime) -> Event:
    return Event(EventType.HOST_ONLINE if online else EventType.HOST_OFFLINE, at,
                 {"online": online, "last_heartbeat": _time(last_heartbeat) if last_heartbeat else None}, host=host)


def operation_finished(*, operation_id: str, kind: str, state: str, error: str, camera: str, host: str,
                       started: datetime | None, at: datetime) -> Event:
    return Event(EventType.OPERATION_FINISHED, at, {
        "operation_id": operation_id, "kind": kind, "state": state, "succeeded": state == "succeeded",
        "error": error or None, "started": _time(started) if started else None}, camera=camera, host=host)


# Fields of an annotation an event carries (the frame API's AnnotateRequest has more; see the API).
ANNOTATION_FIELDS = ("type", "start_timestamp", "end_timestamp", "object_type", "object_id", "object_tracking_id",
                     "confidence", "ml_model", "ml_model_version", "object_bouding_box", "location")


def annotation_created(*, annotation_id: int, camera: str, host: str, fields: dict, at: datetime) -> Event:
    data = {"annotation_id": annotation_id, **{k: fields.get(k) for k in ANNOTATION_FIELDS if k in fields}}
    return Event(EventType.ANNOTATION_CREATED, at, data, camera=camera, host=host)


def upgrade_available(*, camera: str, host: str, image: str, version: str, at: datetime) -> Event:
    return Event(EventType.UPGRADE_AVAILABLE, at, {"image": image, "newer_version": version}, camera=camera,
                 host=host)


class RecordingProblemState(StrEnum):
    STARTED = "started"  # a problem where there was none
    CHANGED = "changed"  # another problem replaced the one before
    CLEARED = "cleared"  # no problem any more (recording works again, or was switched off)


def recording_problem(*, camera: str, camera_id: str, host: str, problem: str | None, previous: str | None,
                      at: datetime) -> Event:
    """The camera's recording problem (its record's ``recording.problem``) appeared, changed or cleared."""
    state = (RecordingProblemState.CLEARED if not problem else
             RecordingProblemState.CHANGED if previous else RecordingProblemState.STARTED)
    return Event(EventType.CAMERA_RECORDING_PROBLEM, at, {
        "camera_id": camera_id, "state": state.value, "problem": problem or None, "previous": previous or None},
        camera=camera, host=host)


# --- MQTT topic layout (docs/events.md) -----------------------------------------------------------


def mqtt_event_topic(prefix: str, event_type: str, host: str, camera: str) -> str:
    """``<prefix>/hosts/<host>[/cameras/<camera>]/events/<type>``."""
    base = f"{prefix}/hosts/{host or '-'}"
    if camera:
        base += f"/cameras/{camera}"
    return f"{base}/events/{event_type}"


def mqtt_camera_status_topic(prefix: str, host: str, camera: str) -> str:
    """Retained: the camera's latest event status (Home Assistant's state topic)."""
    return f"{prefix}/hosts/{host}/cameras/{camera}/status"


def mqtt_host_status_topic(prefix: str, host: str) -> str:
    """Retained: ``online`` or ``offline``."""
    return f"{prefix}/hosts/{host}/status"


def mqtt_bridge_status_topic(prefix: str) -> str:
    """Retained: ``online`` while the publisher is connected (its will says ``offline``)."""
    return f"{prefix}/status"


# --- webhook signature -------------------------------------------------------------------------

SIGNATURE_HEADER = "X-Edgeproxy-Signature"
TIMESTAMP_HEADER = "X-Edgeproxy-Timestamp"
EVENT_HEADER = "X-Edgeproxy-Event"
DELIVERY_HEADER = "X-Edgeproxy-Delivery"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>`` with the webhook's secret."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signature_valid(secret: str, timestamp: int, body: bytes, header: str, now: float, tolerance: float = 300) -> bool:
    """What a receiver checks: the signature, and a timestamp within ``tolerance`` seconds (replay)."""
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(signature(secret, timestamp, body), header)
