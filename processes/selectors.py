"""Reads: cameras, hosts and operations as the API shows them. Never waits on an edge host."""

from django.db.models import Count, QuerySet

from processes.models import Camera, EdgeHost, Operation
from settings_app.versions import highest_version, is_newer, local_tags, split_image
from worker.runtimes.base import STATE_KEYS, ZERO_TIME


def ms(dt) -> int | None:
    return int(dt.timestamp() * 1000) if dt else None


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
            "host": op.host.name if op.host_id else None,
            "started": ms(op.started),
            "progress": op.progress or {},
        }
    )
    body.update(op.result or {})
    return body


def _empty_state(status: str) -> dict:
    state = dict.fromkeys(STATE_KEYS, False)
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
    if camera.rtmp_endpoint:
        body["rtmp_endpoint"] = camera.rtmp_endpoint
    if newer:
        body["newer_version"] = newer
    return body


def cameras(host: str | None = None, status: str | None = None) -> QuerySet[Camera]:
    qs = Camera.objects.select_related("host", "last_operation").order_by("name")
    if host:
        qs = qs.filter(host__name=host)
    return qs


def camera_list_payload(host: str | None = None, status: str | None = None) -> list[dict]:
    upgrades = UpgradeIndex()
    cutoff = EdgeHost.online_cutoff()
    rows = []
    for camera in cameras(host=host):
        online = camera.host.last_heartbeat is not None and camera.host.last_heartbeat >= cutoff
        payload = camera_payload(camera, upgrades, host_online=online)
        if status and payload["status"] != status:
            continue
        rows.append(payload)
    return rows


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


def hosts() -> QuerySet[EdgeHost]:
    return EdgeHost.objects.annotate(camera_count=Count("cameras")).order_by("name")


def online_hosts() -> QuerySet[EdgeHost]:
    return hosts().filter(last_heartbeat__gte=EdgeHost.online_cutoff())


def host_by_name(name: str) -> EdgeHost | None:
    return hosts().filter(name=name).first()


def operation_by_id(operation_id) -> Operation | None:
    return Operation.objects.select_related("host").filter(id=operation_id).first()
