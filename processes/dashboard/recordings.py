"""Dashboard: a camera's recordings (issue 15): a timeline of its segments over the last hour and a
player, fed through the session (the same services as the API's recording routes)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from edgeproxy.contracts.errors import DomainError
from processes import recording_selectors, recording_services
from processes import selectors as process_selectors
from worker.camera.recorder import SEGMENT_RULE

TIMELINE_MS = 3600 * 1000
NEWEST_LISTED = 8  # the newest segments also listed as links: on an hour's timeline, segments are slivers


@never_cache
@login_required
@require_GET
def recording_panel(request, name):
    """The recording panel's fragment: state, problem, and the last hour's segments on a timeline."""
    camera = process_selectors.camera_by_name(name)
    if camera is None:
        return HttpResponse(f"No camera named {name!r}.", status=404, content_type="text/plain; charset=utf-8")
    status = recording_selectors.recording_status(camera.recording, camera.stream)
    now = int(time.time() * 1000)
    segments, problem = [], None
    if camera.recording:
        try:
            segments = recording_services.list_recordings(camera, now - TIMELINE_MS, now)
        except DomainError as exc:
            problem = exc.message
    for segment in segments:
        segment["left"] = max(0.0, (segment["start"] - (now - TIMELINE_MS)) / TIMELINE_MS * 100)
        segment["width"] = max(0.1, min(segment["end"], now) - max(segment["start"], now - TIMELINE_MS)) \
            / TIMELINE_MS * 100
        segment["src"] = f"/cameras/{camera.name}/recordings/{segment['url'].rsplit('/', 1)[1]}"
        segment["open"] = "-open." in segment["src"]  # still being written
        segment["started"] = datetime.fromtimestamp(segment["start"] / 1000, tz=UTC)
    return render(request, "dashboard/_camera_recording.html",
                  {"camera": camera, "recording": status, "segments": segments, "problem": problem,
                   "newest": segments[::-1][:NEWEST_LISTED], "timeline_from": now - TIMELINE_MS, "timeline_to": now})


@never_cache
@login_required
@require_GET
def recording_segment(request, name, file):
    camera = process_selectors.camera_by_name(name)
    if camera is None or not SEGMENT_RULE.fullmatch(file):
        return HttpResponse("No such segment.", status=404, content_type="text/plain; charset=utf-8")
    try:
        chunks = recording_services.segment_bytes(camera, file)
    except DomainError as exc:
        return HttpResponse(exc.message, status=404, content_type="text/plain; charset=utf-8")
    return StreamingHttpResponse(chunks, content_type="video/mp4")
