"""Reads for the dashboard: the fleet, one camera, operations and settings as the pages show them.

Built on ``processes.selectors`` (the same status rules as the API); nothing here writes or waits
on an edge host. Every function returns plain dicts and lists that templates only format.
"""

import base64
import binascii
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db.models import BooleanField, Case, Count, Q, Value, When
from django.db.models.fields.json import KT
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


# The fleet page at scale (issue 13): one page of cards, the fleet's counts from one aggregate, and only
# the first problems and hosts; what the page shows never costs a query or a render per camera of the fleet.
FLEET_PAGE_SIZE = 48  # camera cards per page (docs/dashboard.md)
PROBLEMS_SHOWN = 10
HOSTS_SHOWN = 8  # a fleet of many hosts must not push the cameras below the fold
# The fleet's counts by tone are one aggregate over every camera (~0.1-0.2 s at 50,000 on 2 cores): kept this
# long in the process's cache, so that refreshes every two seconds from many browsers do not each pay it.
TONE_COUNTS_SECONDS = 5
TONE_COUNTS_KEY = "dashboard:fleet-tone-groups"


def _tone_groups() -> list[dict]:
    """The cameras counted by what decides their tone: stored status, desired state, the stream's state
    (in the row: it is not a live fact, ``live.LIVE_KEYS``) and whether their host is online. One
    aggregate query; a few dozen groups whatever the size of the fleet."""
    online = Case(When(host__last_heartbeat__gte=EdgeHost.online_cutoff(), then=Value(True)), default=Value(False),
                  output_field=BooleanField())
    rows = (Camera.objects.order_by().values("status", "desired_state")
            .annotate(stream_state=KT("stream__state"), host_online=online)
            .values("status", "desired_state", "stream_state", "host_online").annotate(count=Count("id")))
    groups = []
    for row in rows:
        shown = selectors.camera_status(Camera(status=row["status"]), row["host_online"])
        stream = {"state": row["stream_state"]} if row["stream_state"] and shown != CameraStatus.OFFLINE else None
        tone = camera_tone(shown, row["desired_state"], stream)
        problem = shown != CameraStatus.OFFLINE and (tone == "bad" or (stream or {}).get("state") in STREAM_PROBLEMS)
        groups.append({**row, "tone": tone, "problem": problem})
    return groups


def _group_query(group: dict) -> Q:
    """The cameras of one of ``_tone_groups``' groups."""
    online = Q(host__last_heartbeat__gte=EdgeHost.online_cutoff())
    state = (Q(stream__state=group["stream_state"]) if group["stream_state"] is not None  # (KT's NULL: no
             else Q(stream__isnull=True) | Q(stream__state__isnull=True) | Q(stream__state=None))  # row, key, value)
    return (Q(status=group["status"], desired_state=group["desired_state"]) & state
            & (online if group["host_online"] else ~online))


def _problem_cards(groups: list[dict], upgrades: selectors.UpgradeIndex, limit: int) -> list[dict]:
    """Cards of the first ``limit`` cameras (by name) that are problems."""
    problem_groups = [g for g in groups if g["problem"]]
    if not problem_groups or limit <= 0:
        return []
    query = Q()
    for group in problem_groups:
        query |= _group_query(group)
    cameras = list(selectors.cameras().filter(query)[:limit])
    live.overlay(cameras)
    return [_camera_card(c, c.host.is_online, upgrades) for c in cameras]


def fleet_summary() -> dict:
    """The fleet's counts by tone, the problems to show first (the first PROBLEMS_SHOWN) and how many
    hosts are online. Exact counts as of at most TONE_COUNTS_SECONDS ago (``_tone_groups``)."""
    groups = cache.get_or_set(TONE_COUNTS_KEY, _tone_groups, TONE_COUNTS_SECONDS)
    counts = dict.fromkeys(("ok", "warn", "bad", "idle"), 0)
    for group in groups:
        counts[group["tone"]] += group["count"]
    cutoff = EdgeHost.online_cutoff()
    hosts_total = EdgeHost.objects.count()
    hosts_online = EdgeHost.objects.filter(last_heartbeat__gte=cutoff).count()
    offline_hosts = list(EdgeHost.objects.exclude(last_heartbeat__gte=cutoff)
                         .annotate(camera_count=Count("cameras")).order_by("name")[:PROBLEMS_SHOWN])
    problems = [{"kind": "host", "subject": h.name, "text": "edge host is offline"
                 + (f" ({h.camera_count} cameras)" if h.camera_count else "")} for h in offline_hosts]
    problem_total = (hosts_total - hosts_online) + sum(g["count"] for g in groups if g["problem"])
    upgrades = selectors.UpgradeIndex()
    cards = _problem_cards(groups, upgrades, PROBLEMS_SHOWN - len(problems))
    for card in cards:
        stream_state = (card["stream"] or {}).get("state")
        detail = card["status"]
        if stream_state in STREAM_PROBLEMS:
            detail = f"stream {stream_state}"
            if card["stream"]["last_error"]:
                detail += f": {card['stream']['last_error']}"
        elif card["operation"] and card["operation"]["error"]:
            detail += f": {card['operation']['error']}"
        problems.append({"kind": "camera", "subject": card["name"], "text": detail})
    since = timezone.now() - FAILED_OPERATION_WINDOW
    listed = {p["subject"] for p in problems if p["kind"] == "camera"}
    failed = list(Operation.objects.select_related("host").filter(state=OperationState.FAILED, finished__gte=since)
                  .order_by("-finished")[:20])
    # Whether each failed operation is still its camera's last one: a query for these 20, not the fleet.
    still_last = set(Camera.objects.filter(last_operation__in=[op.id for op in failed if op.camera_id])
                     .values_list("last_operation_id", flat=True))
    for op in failed:
        if op.camera_id is not None and (op.id not in still_last or op.camera_name in listed):
            continue  # the camera has moved on (a later operation), or it is listed already
        row = operation_row(op)
        problem_total += 1
        if len(problems) >= PROBLEMS_SHOWN:
            continue
        subject = row["camera"] or row["image"] or row["host"] or row["id"]
        problems.append({"kind": "operation", "subject": subject, "text": f"{row['kind']} failed: {row['error']}",
                         "operation": row})
    return {
        "counts": counts,
        "cameras": sum(counts.values()),
        "problems": problems,
        "more_problems": max(0, problem_total - len(problems)),
        "hosts_total": hosts_total,
        "hosts_online": hosts_online,
    }


def fleet_hosts() -> dict:
    """The first HOSTS_SHOWN edge hosts, offline ones first, with their camera counts."""
    offline_first = Case(When(last_heartbeat__gte=EdgeHost.online_cutoff(), then=Value(1)), default=Value(0))
    hosts = list(EdgeHost.objects.order_by(offline_first, "name")[:HOSTS_SHOWN])
    counts = dict(Camera.objects.filter(host__in=hosts).order_by().values_list("host_id").annotate(n=Count("id")))
    total = EdgeHost.objects.count() if len(hosts) == HOSTS_SHOWN else len(hosts)
    return {"hosts": [_host_row(h, counts.get(h.id, 0)) for h in hosts], "more": total - len(hosts)}


def fleet_page(filterset, page_number) -> dict:
    """One page (FLEET_PAGE_SIZE) of camera cards matching a valid ``filters.CameraFilter``: one
    query for the page, one count, one Redis read for the page's live stream facts."""
    queryset = filterset.qs
    ordering = list(queryset.query.order_by)
    if not any(field.lstrip("-") == "name" for field in ordering):  # (``?ordering=status``: a stable order)
        queryset = queryset.order_by(*ordering, "name")
    page = Paginator(queryset, FLEET_PAGE_SIZE).get_page(page_number)
    cameras = list(page.object_list)
    live.overlay(cameras)
    upgrades = selectors.UpgradeIndex()
    return {"page": page, "cards": [_camera_card(c, c.host.is_online, upgrades) for c in cameras]}


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
