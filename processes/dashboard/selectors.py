"""Reads for the dashboard: the fleet, one camera, operations and settings as the pages show them.

Built on ``processes.selectors`` (the same status rules as the API); nothing here writes or waits
on an edge host. Every function returns plain dicts and lists that templates only format.
"""

import base64
import binascii
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from edgeproxy.contracts.statuses import BAD_STATUSES, CameraStatus, DesiredState
from processes import live, selectors
from processes.models import ACTIVE_STATES, Camera, EdgeHost, Operation, OperationState
from settings_app import outputs as settings_outputs
from settings_app import selectors as settings_selectors
from settings_app.versions import is_newer, local_tags, parse_version, sort_tags, split_image

# How a status looks: ok (green), warn (amber), bad (red), idle (grey).
STREAM_PROBLEMS = ("reconnecting", "error")
BUSY_STATUSES = (CameraStatus.PENDING, CameraStatus.CREATED, CameraStatus.RESTARTING, CameraStatus.REMOVING,
                 CameraStatus.PAUSED)
LOG_LINES = 60
FAILED_OPERATION_WINDOW = timedelta(hours=1)


def camera_tone(status: str, desired_state: str, stream: dict | None) -> str:
    stream_state = (stream or {}).get("state")
    if status in BAD_STATUSES:
        return "bad"
    if status == CameraStatus.STOPPED:
        return "idle"
    if status == CameraStatus.EXITED:
        return "idle" if desired_state == DesiredState.STOPPED else "bad"
    if status in BUSY_STATUSES:
        return "warn"
    if status == CameraStatus.RUNNING:
        if stream_state == "streaming":
            return "ok"
        if stream_state in STREAM_PROBLEMS:
            return "bad"  # the camera does not deliver: that stands out, even while it retries
        return "warn"  # connecting, or no stream report yet
    return "warn"


def operation_tone(state: str) -> str:
    return {OperationState.SUCCEEDED: "ok", OperationState.FAILED: "bad", OperationState.RUNNING: "warn",
            OperationState.PENDING: "warn"}.get(state, "idle")


def _ms_to_datetime(value):
    if not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def _stream_row(stream: dict | None) -> dict | None:
    if not stream:
        return None
    width, height = stream.get("width"), stream.get("height")
    return {
        "state": stream.get("state") or "unknown",
        "fps": stream.get("fps"),
        "resolution": f"{width}×{height}" if width and height else None,
        "codec": stream.get("codec") or None,
        "last_frame_at": _ms_to_datetime(stream.get("last_frame_at")),
        "reconnects": stream.get("reconnects") or 0,
        "last_error": stream.get("last_error") or None,
        "transport": stream.get("transport") or None,
        "rtmp_streaming": bool(stream.get("rtmp_streaming")),
    }


def operation_row(op: Operation) -> dict:
    progress = op.progress or {}
    percent = progress.get("percent")
    if not isinstance(percent, int | float):
        percent = None
    if percent is None and op.state == OperationState.SUCCEEDED and "bytes_total" in progress:
        percent = 100.0
    phase = progress.get("phase") or progress.get("action") or progress.get("status") or None
    return {
        "id": str(op.id),
        "kind": op.kind,
        "state": op.state,
        "tone": operation_tone(op.state),
        "active": op.state in ACTIVE_STATES,
        "camera": op.camera_name or None,
        "camera_exists": op.camera_id is not None,
        "host": op.host.name if op.host_id and op.host else None,
        "error": op.error or None,
        "created": op.created,
        "started": op.started,
        "finished": op.finished,
        "duration": (op.finished - (op.started or op.created)).total_seconds() if op.finished else None,
        "image": progress.get("image") or None,
        "phase": phase,
        "percent": max(0.0, min(100.0, float(percent))) if percent is not None else None,
        "bytes_done": progress.get("bytes_done"),
        "bytes_total": progress.get("bytes_total"),
        "layers_done": progress.get("layers_done"),
        "layers_total": progress.get("layers_total"),
    }


def _host_row(host: EdgeHost, camera_count: int) -> dict:
    facts = host.facts or {}
    return {
        "name": host.name,
        "online": host.is_online,
        "runtime": host.runtime or facts.get("runtime") or "",
        "cameras": camera_count,
        "cpus": facts.get("cpus"),
        "memory": facts.get("memory"),
        # Load figures, when an edge worker reports them (not every runtime does).
        "cpu_percent": facts.get("cpu_percent"),
        "memory_used": facts.get("memory_used"),
        "os": facts.get("os") or "",
        "server_version": facts.get("server_version") or "",
        "last_heartbeat": host.last_heartbeat,
    }


def _camera_card(camera: Camera, online: bool, upgrades: selectors.UpgradeIndex) -> dict:
    status = selectors.camera_status(camera, online)
    stream = camera.stream if status != CameraStatus.OFFLINE else None
    op = camera.last_operation
    return {
        "name": camera.name,
        "status": status,
        "tone": camera_tone(status, camera.desired_state, stream),
        "desired_state": camera.desired_state,
        "host": camera.host.name,
        "host_online": online,
        "image_tag": camera.image_tag,
        "stream": _stream_row(stream),
        "operation": operation_row(op) if op else None,
        "newer_version": upgrades.newer_version(camera),
    }


def fleet() -> dict:
    """Hosts, camera cards and the problems to show first."""
    hosts = list(selectors.hosts())
    host_rows = [_host_row(h, h.camera_count) for h in hosts]
    online = {h.id: h.is_online for h in hosts}
    upgrades = selectors.UpgradeIndex()
    cameras = list(selectors.cameras())
    live.overlay(cameras)  # the newest stream facts are in Redis
    cards = [_camera_card(c, online.get(c.host_id, False), upgrades) for c in cameras]

    problems = []
    for host in host_rows:
        if not host["online"]:
            problems.append({"kind": "host", "subject": host["name"], "text": "edge host is offline"
                             + (f" ({host['cameras']} cameras)" if host["cameras"] else "")})
    for card in cards:
        stream_state = (card["stream"] or {}).get("state")
        if card["status"] == CameraStatus.OFFLINE:
            continue  # said once, by its host
        if card["tone"] == "bad" or stream_state in STREAM_PROBLEMS:
            detail = card["status"]
            if stream_state in STREAM_PROBLEMS:
                detail = f"stream {stream_state}"
                if card["stream"]["last_error"]:
                    detail += f": {card['stream']['last_error']}"
            elif card["operation"] and card["operation"]["error"]:
                detail += f": {card['operation']['error']}"
            problems.append({"kind": "camera", "subject": card["name"], "text": detail})
    since = timezone.now() - FAILED_OPERATION_WINDOW
    last_ops = {c["operation"]["id"] for c in cards if c["operation"]}
    listed = {p["subject"] for p in problems if p["kind"] == "camera"}
    failed = Operation.objects.select_related("host").filter(state=OperationState.FAILED, finished__gte=since)
    for op in failed.order_by("-finished")[:20]:
        if op.camera_id is not None and (str(op.id) not in last_ops or op.camera_name in listed):
            continue  # the camera has moved on (a later operation), or it is listed already
        row = operation_row(op)
        subject = row["camera"] or row["image"] or row["host"] or row["id"]
        problems.append({"kind": "operation", "subject": subject, "text": f"{row['kind']} failed: {row['error']}",
                         "operation": row})

    counts = {tone: sum(1 for c in cards if c["tone"] == tone) for tone in ("ok", "warn", "bad", "idle")}
    return {
        "hosts": host_rows,
        "cameras": cards,
        "problems": problems,
        "counts": counts,
        "hosts_online": sum(1 for h in host_rows if h["online"]),
    }


def decode_log(value) -> list[str]:
    """The last lines of one base64 log stream (redacted by the edge), as text lines."""
    if not value:
        return []
    try:
        raw = base64.b64decode(value, validate=False)
    except (binascii.Error, ValueError, TypeError):
        return ["(the log could not be decoded)"]
    lines = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines[-LOG_LINES:]


def versions_for(camera: Camera) -> list[dict]:
    """Versions of the camera's image repository in its host's inventory, newest first."""
    repository, current = split_image(camera.image_tag)
    ordered = sort_tags(local_tags(camera.host.images or [], repository))
    tags = [t for t in reversed(ordered) if parse_version(t) is not None]
    tags += [t for t in ordered if parse_version(t) is None and t != "latest"]
    return [{"tag": t, "image": f"{repository}:{t}", "current": t == current, "newer": is_newer(t, current)}
            for t in tags]


def snapshot_unavailable(camera: Camera) -> str | None:
    """Why the camera can have no frame now, as far as the database knows (then the frame server
    is not asked: pages ask every second, for every camera on screen); None: ask it."""
    status = selectors.camera_status(camera, camera.host.is_online)
    if status == CameraStatus.OFFLINE:
        return f"Edge host {camera.host.name} is offline."
    if status == CameraStatus.STOPPED or (status == CameraStatus.EXITED
                                          and camera.desired_state == DesiredState.STOPPED):
        return f"Camera {camera.name} is stopped."
    if status in (CameraStatus.PENDING, CameraStatus.REMOVING):
        return f"Camera {camera.name} is {status}…"
    stream = camera.stream or {}
    if status == CameraStatus.RUNNING and stream.get("state") in STREAM_PROBLEMS:
        reason = f"The camera's stream is {stream['state']}"
        return reason + (f": {stream['last_error']}" if stream.get("last_error") else ".")
    if status != CameraStatus.RUNNING:
        return f"Camera {camera.name} is {status}; no frame is available."
    return None


def camera_detail(camera: Camera) -> dict:
    live.overlay([camera])
    online = camera.host.is_online
    card = _camera_card(camera, online, selectors.UpgradeIndex())
    state = camera.state or {}
    logs = camera.logs or {}
    history = [operation_row(op) for op in camera.operations.select_related("host").order_by("-created")[:20]]
    return {
        **card,
        "rtsp_endpoint": camera.rtsp_endpoint_masked,
        "rtmp_endpoint": camera.rtmp_endpoint_masked or None,
        "transport": camera.rtsp_transport,
        "container_id": camera.container_id or None,
        "state": {
            "Status": state.get("Status") or None,
            "Running": state.get("Running"),
            "Pid": state.get("Pid"),
            "ExitCode": state.get("ExitCode"),
            "Error": state.get("Error") or None,
            "StartedAt": state.get("StartedAt") or None,
            "FinishedAt": state.get("FinishedAt") or None,
            "OOMKilled": state.get("OOMKilled"),
        },
        "observed_at": camera.observed_at,
        "created": camera.created,
        "stdout": decode_log(logs.get("stdout")),
        "stderr": decode_log(logs.get("stderr")),
        "history": history,
        "busy": any(op["active"] for op in history[:1]),
        "versions": versions_for(camera),
    }


def operations(limit: int = 100) -> dict:
    active = [operation_row(op) for op in Operation.objects.select_related("host")
              .filter(state__in=ACTIVE_STATES).order_by("-created")[:limit]]
    recent = [operation_row(op) for op in Operation.objects.select_related("host")
              .exclude(state__in=ACTIVE_STATES).order_by("-created")[:limit]]
    return {"active": active, "recent": recent}


def host_names() -> list[str]:
    return [h.name for h in selectors.hosts()]


def settings_overview(request_host: str, secure: bool) -> dict:
    flower = settings.EDGEPROXY_FLOWER_URL
    if not flower:
        hostname = request_host.rsplit(":", 1)[0] if not request_host.endswith("]") else request_host
        flower = f"{'https' if secure else 'http'}://{hostname}:{settings.EDGEPROXY_FLOWER_PORT}/"
    hosts = list(selectors.hosts())
    images = [{"host": h.name, "online": h.is_online,
               "images": sorted(f"{i.get('repository')}:{i.get('tag')}"
                                for i in (h.images or []) if i.get("repository"))}
              for h in hosts]
    return {
        "fleet": settings_outputs.SettingsResponseSerializer(settings_selectors.edge_settings()).data,
        "flower_url": flower,
        "images": images,
    }
