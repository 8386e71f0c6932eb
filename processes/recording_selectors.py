"""Reads about recordings: the camera record's ``recording`` and an annotation's clip URL."""

from __future__ import annotations

from urllib.parse import urlencode

from worker.recordings import host_settings

RECORDING_STATES = ("off", "waiting", "recording", "stopped", "unknown")


def recording_status(wanted: dict | None, stream: dict | None) -> dict:
    """What the camera record shows: recording as wanted, and as the camera process reports it."""
    wanted = wanted or {}
    enabled = bool(wanted.get("enabled"))
    observed = (stream or {}).get("recording") if isinstance(stream, dict) else None
    if not isinstance(observed, dict):
        observed = {}
    if not enabled:
        state = "off"
    elif observed.get("enabled"):
        state = observed.get("state") if observed.get("state") in RECORDING_STATES else "unknown"
    else:
        state = "waiting"  # the host has not applied it yet, or the camera is not running
    return {
        "enabled": enabled,
        "retention_hours": wanted.get("retention_hours"),
        "state": state,
        "problem": observed.get("problem") if enabled else None,
        "bytes_written": observed.get("bytes_written", 0),
        "segments": observed.get("segments", 0),
        "errors": observed.get("errors", 0),
        "retention_deleted": observed.get("retention_deleted", 0),
    }


def clip_url(camera_name: str, start_ms: int, end_ms: int | None = None) -> str:
    """The clip of an event: its time plus the seconds kept before and after it (settings)."""
    settings = host_settings()
    end_ms = end_ms if end_ms and end_ms >= start_ms else start_ms
    query = urlencode({"from": int(start_ms - settings.event_before_s * 1000),
                       "to": int(end_ms + settings.event_after_s * 1000)})
    return f"/api/v1/process/{camera_name}/clip.mp4?{query}"


def segment_url(camera_name: str, file: str) -> str:
    return f"/api/v1/process/{camera_name}/recordings/{file}"


def recording_cameras() -> set[str]:
    """Names of the cameras whose recording is switched on."""
    from processes.models import Camera

    return set(Camera.objects.filter(recording__enabled=True).values_list("name", flat=True))
