"""Reads: cameras, hosts and operations as the API shows them. Never waits on an edge host."""

import json
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict, overload

from django.db.models import Count, QuerySet, TextField
from django.db.models.functions import Cast

from processes.models import Camera, EdgeHost, Operation
from settings_app.versions import highest_version, is_newer, local_tags, split_image
from worker.runtimes.base import STATE_KEYS, ZERO_TIME

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class HostCounts(TypedDict):
    """What ``hosts()`` annotates each host with."""

    camera_count: int


@overload
def ms(dt: datetime) -> int: ...
@overload
def ms(dt: datetime | None) -> int | None: ...


def ms(dt: datetime | None) -> int | None:
    return int(dt.timestamp() * 1000) if dt else None


@overload
def operation_payload(op: Operation) -> dict: ...
@overload
def operation_payload(op: Operation | None) -> dict | None: ...


def operation_payload(op: Operation | None) -> dict | None:
    if op is None:
        return None
    return {
        "id": str(op.id),
        "kind": op.kind,
        "state": op.state,
        "error": op.error or None,
        "created": ms(op.created),
        "finished": ms(op.finished),
    }


def operation_detail(op: Operation) -> dict:
    body = operation_payload(op)
    body.update(
        {
            "camera": op.camera_name or None,
            "host": op.host.name if op.host else None,
            "started": ms(op.started),
            "progress": op.progress or {},
        }
    )
    body.update(op.result or {})
    return body


def _empty_state(status: str) -> dict:
    state: dict[str, object] = dict.fromkeys(STATE_KEYS, False)
    state.update({"Status": status, "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME})
    return state


class UpgradeIndex:
    """Highest local version per (host, repository), computed once per request."""

    def __init__(self):
        self._cache: dict[tuple[int, str], str | None] = {}

    def newer_version(self, camera: Camera) -> str | None:
        repository, current = split_image(camera.image_tag)
        key = (camera.host_id, repository)
        if key not in self._cache:
            self._cache[key] = highest_version(local_tags(camera.host.images or [], repository))
        best = self._cache[key]
        return best if is_newer(best, current) else None


def camera_status(camera: Camera, host_online: bool) -> str:
    if not host_online and camera.status not in ("pending",):
        return "offline"
    return camera.status


def camera_payload(camera: Camera, upgrades: UpgradeIndex | None = None, host_online: bool | None = None) -> dict:
    """The StreamProcess object of the API."""
    if host_online is None:
        host_online = camera.host.is_online
    status = camera_status(camera, host_online)
    stream = camera.stream or None
    newer = (upgrades or UpgradeIndex()).newer_version(camera)
    body = {
        "name": camera.name,
        "rtsp_endpoint": camera.rtsp_endpoint_masked,
        "container_id": camera.container_id,
        "image_tag": camera.image_tag,
        "created": ms(camera.created),
        "modified": ms(camera.modified),
        "status": status,
        "state": camera.state or _empty_state(status),
        "logs": {"stdout": (camera.logs or {}).get("stdout"), "stderr": (camera.logs or {}).get("stderr")},
        "rtmp_stream_status": {
            "streaming": bool(stream and stream.get("rtmp_streaming")),
            "storing": bool(stream.get("storing")) if stream and "storing" in stream else camera.storing,
        },
        "upgrade_available": newer is not None,
        "host": camera.host.name,
        "desired_state": camera.desired_state,
        "operation": operation_payload(camera.last_operation),
        "stream": stream,
    }
    if camera.rtmp_endpoint_masked:
        body["rtmp_endpoint"] = camera.rtmp_endpoint_masked
    if newer:
        body["newer_version"] = newer
    return body


def cameras(host: str | None = None, status: str | None = None) -> QuerySet[Camera]:
    qs = Camera.objects.select_related("host", "last_operation").order_by("name")
    if host:
        qs = qs.filter(host__name=host)
    return qs


_LIST_COLUMNS = (
    "name", "rtsp_endpoint_masked", "rtmp_endpoint_masked", "container_id", "image_tag", "created", "modified", "status",
    "desired_state", "storing", "host_id", "state_json", "logs_json", "stream_json",
    "last_operation__id", "last_operation__kind", "last_operation__state", "last_operation__error",
    "last_operation__created", "last_operation__finished",
)


def camera_list_json(host: str | None = None, status: str | None = None) -> bytes:
    """The camera list as JSON bytes, built for 2,000+ cameras: no model objects, and the JSON
    columns (state, logs, stream) are spliced in as the database's text instead of parsed and
    re-encoded."""
    hosts_by_id = {h.id: h for h in EdgeHost.objects.only("id", "name", "last_heartbeat", "images")}
    cutoff = EdgeHost.online_cutoff()
    online = {hid: h.last_heartbeat is not None and h.last_heartbeat >= cutoff for hid, h in hosts_by_id.items()}
    best: dict[tuple[int, str], str | None] = {}
    qs = Camera.objects.order_by("name").annotate(
        state_json=Cast("state", TextField()), logs_json=Cast("logs", TextField()),
        stream_json=Cast("stream", TextField()),
    )
    if host:
        qs = qs.filter(host__name=host)
    dumps = json.dumps
    parts = []
    for row in qs.values_list(*_LIST_COLUMNS):
        (name, masked, rtmp, container_id, image_tag, created, modified, stored_status, desired, storing, host_id,
         state_json, logs_json, stream_json, op_id, op_kind, op_state, op_error, op_created, op_finished) = row
        edge = hosts_by_id[host_id]
        shown_status = stored_status if online[host_id] or stored_status == "pending" else "offline"
        if status and shown_status != status:
            continue
        repository, current = split_image(image_tag)
        key = (host_id, repository)
        if key not in best:
            best[key] = highest_version(local_tags(edge.images or [], repository))
        newer = best[key] if is_newer(best[key], current) else None
        stream = json.loads(stream_json) if stream_json and "rtmp_streaming" in stream_json else None
        head = {
            "name": name,
            "rtsp_endpoint": masked,
            "container_id": container_id,
            "image_tag": image_tag,
            "created": ms(created),
            "modified": ms(modified),
            "status": shown_status,
        }
        tail = {
            "rtmp_stream_status": {
                "streaming": bool(stream and stream.get("rtmp_streaming")),
                "storing": bool(stream.get("storing")) if stream and "storing" in stream else storing,
            },
            "upgrade_available": newer is not None,
            "host": edge.name,
            "desired_state": desired,
            "operation": None if op_id is None else {
                "id": str(op_id), "kind": op_kind, "state": op_state, "error": op_error or None,
                "created": ms(op_created), "finished": ms(op_finished),
            },
        }
        if rtmp:
            tail["rtmp_endpoint"] = rtmp
        if newer:
            tail["newer_version"] = newer
        state_text = state_json if state_json and state_json != "{}" else dumps(_empty_state(shown_status))
        if logs_json and '"stdout"' in logs_json and '"stderr"' in logs_json:
            logs_text = logs_json  # the runtimes always store both keys
        else:
            logs = json.loads(logs_json) if logs_json else {}
            logs_text = dumps({"stdout": logs.get("stdout"), "stderr": logs.get("stderr")})
        parts.append(
            f'{dumps(head)[:-1]},"state":{state_text},"logs":{logs_text},"stream":{stream_json or "null"},'
            f"{dumps(tail)[1:]}"
        )
    return ("[" + ",".join(parts) + "]").encode()


def camera_by_name(name: str) -> Camera | None:
    return Camera.objects.select_related("host", "last_operation").filter(name=name).first()


def host_payload(host: EdgeHost, camera_count: int | None = None) -> dict:
    return {
        "name": host.name,
        "queue": host.queue,
        "online": host.is_online,
        "last_heartbeat": ms(host.last_heartbeat),
        "runtime": host.runtime,
        "facts": host.facts,
        "frames_address": host.frames_address or None,
        "cameras": camera_count if camera_count is not None else host.cameras.count(),
        "images": host.images,
        "created": ms(host.created),
    }


def hosts() -> "QuerySet[WithAnnotations[EdgeHost, HostCounts]]":
    return EdgeHost.objects.annotate(camera_count=Count("cameras")).order_by("name")


def online_hosts() -> "QuerySet[WithAnnotations[EdgeHost, HostCounts]]":
    return hosts().filter(last_heartbeat__gte=EdgeHost.online_cutoff())


def host_by_name(name: str) -> EdgeHost | None:
    return hosts().filter(name=name).first()


def operation_by_id(operation_id) -> Operation | None:
    return Operation.objects.select_related("host").filter(id=operation_id).first()


def annotation_payload(annotation) -> dict:
    return {
        "id": annotation.id,
        "device_name": annotation.camera_name,
        "host": annotation.host or None,
        "type": annotation.type,
        "start_timestamp": annotation.start_timestamp,
        "end_timestamp": annotation.end_timestamp,
        "object_type": annotation.object_type or None,
        "confidence": annotation.confidence,
        "data": annotation.data,
        "created": ms(annotation.created),
    }


def annotations(camera: str | None = None, type: str | None = None, start: int | None = None,
                end: int | None = None, limit: int = 1000) -> list[dict]:
    from processes.models import Annotation

    qs = Annotation.objects.all()
    if camera:
        qs = qs.filter(camera_name=camera)
    if type:
        qs = qs.filter(type=type)
    if start is not None:
        qs = qs.filter(start_timestamp__gte=start)
    if end is not None:
        qs = qs.filter(start_timestamp__lte=end)
    return [annotation_payload(a) for a in qs.order_by("-start_timestamp", "-id")[:limit]]
