"""Reads: cameras, hosts and operations as the API shows them. Never waits on an edge host."""

from typing import TYPE_CHECKING, TypedDict

from django.db import connection
from django.db.models import Count, Q, QuerySet

from edgeproxy.contracts.statuses import STATE_KEYS, ZERO_TIME, shown_status
from processes.models import Annotation, AppProcess, Camera, EdgeHost, Operation
from settings_app.versions import highest_version, is_newer, local_tags, split_image

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class HostCounts(TypedDict):
    """What ``hosts()`` annotates each host with."""

    camera_count: int


def empty_state(status: str) -> dict:
    """The ContainerState of a camera with no process observed."""
    state: dict[str, object] = dict.fromkeys(STATE_KEYS, False)
    state.update({"Status": status, "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": ZERO_TIME,
                  "FinishedAt": ZERO_TIME})
    return state


class UpgradeIndex:
    """Highest local version per (host, repository), computed once per request."""

    def __init__(self):
        self._cache: dict[tuple[int, str], str | None] = {}

    def newer_version(self, camera: Camera) -> str | None:
        return self.newer_for(camera.host_id, camera.host.images, camera.image_tag)

    def newer_for(self, host_id: int, host_images: list | None, image_tag: str) -> str | None:
        """The highest version of ``image_tag``'s repository among the host's images, if newer."""
        repository, current = split_image(image_tag)
        key = (host_id, repository)
        if key not in self._cache:
            self._cache[key] = highest_version(local_tags(host_images or [], repository))
        best = self._cache[key]
        return best if is_newer(best, current) else None


def camera_status(camera: Camera, host_online: bool) -> str:
    return shown_status(camera.status, host_online)


def rtmp_stream_status(stream: dict | None, storing: bool) -> dict:
    """What the camera process really does with RTMP (its stream facts), else the stored flag."""
    return {
        "streaming": bool(stream and stream.get("rtmp_streaming")),
        "storing": bool(stream.get("storing")) if stream and "storing" in stream else storing,
    }


def cameras(host: str | None = None, status: str | None = None) -> QuerySet[Camera]:
    qs = Camera.objects.select_related("host", "last_operation").order_by("name")
    if host:
        qs = qs.filter(host__name=host)
    return qs


def camera_shown_status_filter(status: str) -> Q:
    """Cameras whose shown status (``shown_status``) is ``status``, as a query."""
    host_online = Q(host__last_heartbeat__gte=EdgeHost.online_cutoff())
    if status == "offline":
        return ~host_online & ~Q(status="pending")
    return Q(status=status) & (host_online | Q(status="pending"))


def host_cameras_version(host_name: str) -> tuple:
    """What moves whenever a camera of the host, or its last operation, is written: their number, newest
    times and the newest last operation, and the number of the host's app processes (one small read;
    the heartbeat compares it with the last one). An empty tuple for an unknown host."""
    return hosts_cameras_versions([host_name]).get(host_name, ())


def hosts_cameras_versions(host_names: list[str]) -> dict[str, tuple]:
    """``host_cameras_version`` of many hosts in one read (the batched heartbeat path)."""
    if not host_names:
        return {}
    quote = connection.ops.quote_name
    camera, host, op, app = (quote(model._meta.db_table) for model in (Camera, EdgeHost, Operation, AppProcess))
    with connection.cursor() as cursor:
        sql = ("SELECT h.name, count(c.id), max(c.modified), max(c.observed_at), max(c.created), max(o.created), "  # noqa: S608
               f"max(o.finished), (SELECT count(*) FROM {app} a WHERE a.host_id = h.id) "  # (names from the models)
               f"FROM {host} h LEFT JOIN {camera} c ON c.host_id = h.id "
               f"LEFT JOIN {op} o ON o.id = c.last_operation_id "
               f"WHERE h.name IN ({', '.join(['%s'] * len(host_names))}) GROUP BY h.id, h.name")
        cursor.execute(sql, list(host_names))
        return {row[0]: tuple(row[1:]) for row in cursor.fetchall()}


def camera_list_version() -> tuple | None:
    """What moves whenever a camera row or its last operation's row is written, inserted or deleted
    (committed by anyone, or written earlier in this transaction): PostgreSQL's own identity of each
    row version (``ctid``, ``xmin``), hashed and summed over the cameras, in one small read. The full
    list's cache is keyed by it (``outputs.camera_list_json``). None on other databases (no cache)."""
    if connection.vendor != "postgresql":
        return None
    quote = connection.ops.quote_name
    camera, op = quote(Camera._meta.db_table), quote(Operation._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(  # (names from the models)
            "SELECT count(*), coalesce(sum(hashtextextended(c.ctid::text || c.xmin::text "  # noqa: S608
            "|| coalesce(o.ctid::text || o.xmin::text, ''), 0)), 0) "
            f"FROM {camera} c LEFT JOIN {op} o ON o.id = c.last_operation_id")
        return tuple(cursor.fetchone())


def camera_by_name(name: str) -> Camera | None:
    return Camera.objects.select_related("host", "last_operation").filter(name=name).first()


def hosts() -> "QuerySet[WithAnnotations[EdgeHost, HostCounts]]":
    return EdgeHost.objects.annotate(camera_count=Count("cameras")).order_by("name")


def online_hosts() -> "QuerySet[WithAnnotations[EdgeHost, HostCounts]]":
    return hosts().filter(last_heartbeat__gte=EdgeHost.online_cutoff())


def host_by_name(name: str) -> EdgeHost | None:
    return hosts().filter(name=name).first()


def operation_list() -> QuerySet[Operation]:
    return Operation.objects.select_related("host").order_by("-created")


def operation_by_id(operation_id) -> Operation | None:
    return Operation.objects.select_related("host").filter(id=operation_id).first()


def annotations(camera: str | None = None, type: str | None = None, start: int | None = None,  # noqa: A002 - the API's name
                end: int | None = None, limit: int = 1000) -> list[Annotation]:
    qs = Annotation.objects.all()
    if camera:
        qs = qs.filter(camera_name=camera)
    if type:
        qs = qs.filter(type=type)
    if start is not None:
        qs = qs.filter(start_timestamp__gte=start)
    if end is not None:
        qs = qs.filter(start_timestamp__lte=end)
    return list(qs.order_by("-start_timestamp", "-id")[:limit])
