"""Writes of events: one small call at each point of change, inside the caller's transaction.

An event row (``processes.models.Event``) is written in the same transaction as the change it
tells of: if the change commits, so does its event; nothing is sent from here (the relay does).
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from edgeproxy.contracts import events as contract
from edgeproxy.contracts.statuses import host_is_online
from processes import live
from processes.models import Camera, EdgeHost, Event, HostPresence, Operation, UpgradeNotice
from processes.recording_selectors import recording_status
from worker.redaction import redact


def record(event: contract.Event) -> Event:
    return Event.objects.create(type=event.type, time=event.time, camera=event.camera, host=event.host,
                                data=event.data)


@dataclass(frozen=True)
class CameraFacts:
    """What camera events report of a camera: its event status and its recording problem."""

    status: str
    recording_problem: str | None


def _event_status(camera: Camera) -> str:
    return contract.camera_event_status(camera.status, camera.desired_state, camera.stream)


def _recording_problem(camera: Camera) -> str | None:
    """The problem its record shows (``recording.problem``: only while recording is wanted), redacted."""
    problem = recording_status(camera.recording, camera.stream)["problem"]
    return redact(str(problem)) if problem else None


def camera_state(camera: Camera) -> CameraFacts:
    """The camera's facts now (call before a change, pass them to ``camera_changed`` after)."""
    return CameraFacts(_event_status(camera), _recording_problem(camera))


def camera_changed(camera: Camera, before: CameraFacts, host: str | None = None) -> None:
    """Record ``camera.status`` when the camera's event status differs from ``before``, and
    ``camera.recording_problem`` when its recording problem does."""
    after = camera_state(camera)
    if after == before:
        return
    host_name = host if host is not None else camera.host.name
    if after.status != before.status:
        record(contract.camera_status(camera=camera.name, camera_id=str(camera.id), host=host_name,
                                      status=after.status, previous=before.status, at=timezone.now()))
    if after.recording_problem != before.recording_problem:
        record(contract.recording_problem(camera=camera.name, camera_id=str(camera.id), host=host_name,
                                          problem=after.recording_problem, previous=before.recording_problem,
                                          at=timezone.now()))


def operation_finished(op: Operation, answer: Callable[[], bytes | None] | None = None) -> None:
    """Every end of an operation passes here: its event, and the wake-up of whoever waits for it
    (``?wait=``, processes.live) once the end is committed; ``answer`` gives, at the commit, what
    the wake-up carries for them (``live.announce_end``)."""
    transaction.on_commit(lambda: live.announce_end(op.id, answer))
    record(contract.operation_finished(
        operation_id=str(op.id), kind=op.kind, state=op.state, error=redact(op.error or ""),
        camera=op.camera_name, host=op.host.name if op.host_id and op.host else "", started=op.started,
        at=op.finished or timezone.now()))


def annotation_created(annotation) -> None:
    record(contract.annotation_created(annotation_id=annotation.id, camera=annotation.camera_name,
                                       host=annotation.host, fields=annotation.data, at=timezone.now()))


# --- noticed by looking (the relay runs these periodically) ---------------------------------------


def notice_host_presence() -> int:
    """Hosts that came online or fell silent since the last look: ``host.online``/``host.offline``,
    and a ``camera.status`` for each of their cameras (``offline``, or what it is again). A host seen
    for the first time gets its ``host.online`` (or offline) too. Returns the number of events recorded."""
    cutoff = EdgeHost.online_cutoff()
    known = dict(HostPresence.objects.values_list("host_id", "online"))
    recorded = 0
    now = timezone.now()
    for host in EdgeHost.objects.all():
        online = host_is_online(host.last_heartbeat, cutoff)
        if known.get(host.id) == online:
            continue
        with transaction.atomic():
            updated = HostPresence.objects.filter(host=host).exclude(online=online).update(online=online)
            if not updated:
                _, created = HostPresence.objects.get_or_create(host=host, defaults={"online": online})
                if not created:
                    continue  # another relay noticed it first
            record(contract.host_presence(host=host.name, online=online, last_heartbeat=host.last_heartbeat, at=now))
            recorded += 1
            for camera in Camera.objects.filter(host=host).only("id", "name", "status", "desired_state", "stream"):
                current = _event_status(camera)
                offline = contract.CameraEventStatus.OFFLINE.value
                record(contract.camera_status(camera=camera.name, camera_id=str(camera.id), host=host.name,
                                              status=current if online else offline,
                                              previous=offline if online else current, at=now))
                recorded += 1
    return recorded


def notice_upgrades() -> int:
    """Cameras whose host now has a newer version of their image than the one last announced."""
    from processes.selectors import UpgradeIndex

    index = UpgradeIndex()
    announced = dict(UpgradeNotice.objects.values_list("camera_id", "version"))
    recorded = 0
    for camera in Camera.objects.select_related("host").only("id", "name", "image_tag", "host__id", "host__name",
                                                            "host__images"):
        newer = index.newer_version(camera)
        if newer is None or announced.get(camera.id) == newer:
            continue
        with transaction.atomic():
            UpgradeNotice.objects.update_or_create(camera=camera, defaults={"version": newer})
            record(contract.upgrade_available(camera=camera.name, host=camera.host.name, image=camera.image_tag,
                                              version=newer, at=timezone.now()))
        recorded += 1
    return recorded
