"""Recording: switch it per camera (an operation on the camera's host), and fetch footage from
whichever edge host holds it (its frame server's recordings service, ``worker/frames/recordings.py``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import transaction

from edgeproxy.contracts.errors import Invalid, NotFound, Unavailable
from processes import recording_selectors
from processes.dispatch import EdgeOutbox, fail_refused
from processes.events import services as events
from processes.models import Camera, OperationKind
from processes.services import _new_operation, recording_message
from worker.recordings import host_settings

logger = logging.getLogger("edgeproxy.processes")

DEFAULT_RETENTION_HOURS = 72.0
MAX_RETENTION_HOURS = 24 * 365.0
MAX_LISTING_MS = 7 * 24 * 3600 * 1000  # one listing covers at most 7 days
DEFAULT_LISTING_MS = 3600 * 1000  # without ?from: the last hour


def set_recording(camera: Camera, enabled: bool, retention_hours: float | None) -> Camera:
    """Switch recording of ``camera`` on or off (operation ``recording`` on its host)."""
    hours = DEFAULT_RETENTION_HOURS if retention_hours is None else float(retention_hours)
    if not 0 < hours <= MAX_RETENTION_HOURS:
        raise Invalid(f"retention_hours: must be more than 0 and at most {MAX_RETENTION_HOURS:g}.",
                      field="retention_hours")
    with transaction.atomic():
        op = _new_operation(camera, OperationKind.RECORDING)
        camera.refresh_from_db(fields=["stream", "recording"])  # as locked: a heartbeat may have changed them
        before = events.camera_state(camera)
        previous = {"recording": camera.recording}  # put back if the broker refuses the task
        camera.recording = {"enabled": bool(enabled), "retention_hours": hours}
        camera.save(update_fields=["recording", "last_operation", "modified"])
        events.camera_changed(camera, before)  # switched off: its problem, if any, is cleared
    EdgeOutbox([(recording_message(camera, op), camera.host)]).deliver(
        undo=lambda refused: fail_refused(refused, restore=previous),
        what=f"the recording switch of camera {camera.name}")
    logger.info("camera %s: recording %s queued (operation %s)", camera.name, "on" if enabled else "off", op.id,
                extra={"camera": camera.name, "operation": op.id})
    return camera


def check_range(start_ms: int | None, end_ms: int | None, longest_ms: int, what: str) -> tuple[int, int]:
    """A time range of footage: ``to`` defaults to now, ``from`` to an hour before ``to``; a longer
    range than ``longest_ms`` is cut to its first ``longest_ms`` (docs/recording.md). A range that
    cannot hold footage (empty, reversed, in the future) is a 404 that says why: the request itself
    is well formed."""
    now = int(time.time() * 1000)
    end_ms = now if end_ms is None else end_ms
    start_ms = max(0, end_ms - min(DEFAULT_LISTING_MS, longest_ms)) if start_ms is None else start_ms
    if start_ms < 0 or end_ms < 0:
        raise Invalid("from and to: must be ms since the epoch.", field="from")
    if end_ms <= start_ms:
        raise NotFound(f"No footage from {start_ms} to {end_ms}: from must be before to.")
    if start_ms > now:
        raise NotFound(f"No footage from {start_ms}: that is in the future.")
    return start_ms, min(end_ms, start_ms + longest_ms)


def _call(camera: Camera, method: str, request: dict, timeout: float = 10.0):
    from edgeproxy import client as frames

    host = camera.host
    if not host.frames_address or not host.is_online:
        raise Unavailable(f"Edge host {host.name} is offline; its recordings cannot be reached.")
    try:
        return frames.recordings_call(host.frames_address, method, {"camera": camera.name, **request},
                                      timeout=timeout, token=settings.EDGEPROXY_FRAMES_TOKEN or None,
                                      tls=settings.EDGEPROXY_FRAMES_TLS,
                                      root_certificates=settings.EDGEPROXY_FRAMES_TLS_CA_PEM)
    except frames.FrameError as exc:
        raise _domain_error(camera, exc) from None


def _domain_error(camera: Camera, exc) -> Exception:
    from edgeproxy import client as frames

    if isinstance(exc, frames.CameraNotFound):
        return NotFound(f"No footage of camera {camera.name} there: {exc.details or exc}")
    if isinstance(exc, frames.InvalidRequest):
        return Invalid(exc.details or str(exc))
    if isinstance(exc, frames.ServerUnavailable):
        return Unavailable(f"The frame server of edge host {camera.host.name} does not answer.")
    return Unavailable(f"Recordings of camera {camera.name} unavailable: {exc.details or exc}")


def list_recordings(camera: Camera, start_ms: int | None, end_ms: int | None) -> list[dict]:
    """The camera's segments overlapping the range, oldest first, each with its URL."""
    start_ms, end_ms = check_range(start_ms, end_ms, MAX_LISTING_MS, "a listing")
    segments = _call(camera, "List", {"from": start_ms, "to": end_ms}).get("segments", [])
    return [{"start": s["start"], "end": s["end"], "duration_ms": s["duration_ms"], "size": s["size"],
             "codec": s["codec"], "url": recording_selectors.segment_url(camera.name, s["file"])}
            for s in segments]


def _first_then_rest(camera: Camera, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Take the first chunk now (an error is still an answer with a status), stream the rest."""
    from edgeproxy import client as frames

    try:
        first = next(chunks, b"")
    except frames.FrameError as exc:
        raise _domain_error(camera, exc) from None

    def stream() -> Iterator[bytes]:
        if first:
            yield first
        try:
            yield from chunks
        except frames.FrameError as exc:  # the answer has started: it can only end short
            logger.warning("camera %s: footage stream ended early: %s", camera.name, exc)

    return stream()


def segment_bytes(camera: Camera, file: str) -> Iterator[bytes]:
    return _first_then_rest(camera, _call(camera, "Segment", {"file": file}, timeout=120))


def clip(camera: Camera, start_ms: int | None, end_ms: int | None) -> Iterator[bytes]:
    """One MP4 of the range, from the keyframe at or before ``from`` (at most
    EDGEPROXY_RECORDING_CLIP_MAX_SECONDS long), streamed as the edge host makes it."""
    if start_ms is None or end_ms is None:
        raise Invalid("from and to: both are required (ms since the epoch).", field="from")
    longest = host_settings().clip_max_s * 1000
    start_ms, end_ms = check_range(start_ms, end_ms, longest, "a clip")
    return _first_then_rest(camera, _call(camera, "Clip", {"from": start_ms, "to": end_ms}, timeout=300))
