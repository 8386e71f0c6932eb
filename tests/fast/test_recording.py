"""Recording (issue 15) in process: the switch (an operation and its message), what connect seals
into the spec, the range rules of clips, and the edge's retention sweep on real files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from processes.models import Camera
from tests.fast.test_cameras import connect, finish
from worker import recordings
from worker.camera import keys


def test_switching_recording_is_an_operation_with_its_message(api, edge, online_host, broker):
    assert connect(api).status_code == 202
    finish("front-door")
    response = api.put("/api/v1/process/front-door/recording", {"enabled": True, "retention_hours": 12},
                       format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["operation"]["kind"] == "recording" and body["operation"]["state"] == "pending"
    assert body["recording"] == {**body["recording"], "enabled": True, "retention_hours": 12.0, "state": "waiting"}
    message = broker.host_messages("edge-a")[-1]
    assert message.task == "edge.set_recording" and message.id == body["operation"]["id"]
    assert message.kwargs == {"operation_id": body["operation"]["id"], "camera_name": "front-door", "enabled": True,
                              "retention_hours": 12.0}
    # One operation at a time; bad bodies change nothing.
    assert api.put("/api/v1/process/front-door/recording", {"enabled": False}, format="json").status_code == 409
    finish("front-door")
    for bad in ({}, {"enabled": "maybe"}, {"enabled": True, "retention_hours": 0}, {"enabled": True,
                                                                                  "retention_hours": 1e9}):
        response = api.put("/api/v1/process/front-door/recording", bad, format="json")
        assert response.status_code == 400 and {"code", "message"} <= response.json().keys(), bad
    assert Camera.objects.get(name="front-door").recording == {"enabled": True, "retention_hours": 12.0}
    assert api.put("/api/v1/process/nobody/recording", {"enabled": True}, format="json").status_code == 404


def test_recording_at_connect_travels_in_the_sealed_spec(api, edge, online_host, broker):
    response = connect(api, recording={"enabled": True})
    assert response.status_code == 202 and response.json()["recording"]["enabled"] is True
    [message] = broker.host_messages("edge-a")
    spec = edge.open("edge-a", message.kwargs["spec"])
    assert spec["recording"] == {"enabled": True, "retention_hours": 72.0}


def test_clip_ranges_are_checked_before_any_host_is_asked(api, edge, online_host, broker):
    assert connect(api).status_code == 202
    now = int(time.time() * 1000)
    for query, status in ((f"from={now}&to={now - 1}", 404), (f"from={now + 60_000}&to={now + 61_000}", 404),
                          ("from=x&to=1", 400), ("from=-1&to=1", 400), (f"to={now}", 400)):
        response = api.get(f"/api/v1/process/front-door/clip.mp4?{query}")
        assert response.status_code == status and {"code", "message"} <= response.json().keys(), query


class _Frames:
    """The frame bus as the sweep uses it: control keys written in a pipeline (pure logic under test)."""

    def __init__(self):
        self.values: dict[str, str] = {}

    def pipeline(self):
        frames = self

        class Pipe:
            def set(self, key, value):
                frames.values[key] = value

            def execute(self):
                return []

        return Pipe()


def _segment(folder: Path, start: int, end: int, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{start}-{end}.h264.mp4"
    path.write_bytes(b"\0" * size)
    return path


def test_retention_by_age_and_quota_oldest_first_keeping_event_footage(tmp_path):
    now = int(time.time() * 1000)
    settings = recordings.HostRecordingSettings.from_env({"EDGEPROXY_RECORDINGS_DIR": str(tmp_path),
                                                          "EDGEPROXY_RECORDING_QUOTA_MB": "0.01"})  # 10485 bytes
    frames = _Frames()
    control = recordings.RecordingControl(settings, tmp_path / "state.json", frames)
    control.set("old", True, 1.0)
    control.set("new", True, 72.0)
    hour = 3600_000
    aged = _segment(tmp_path / "old", now - 3 * hour, now - 3 * hour + 2000, 1000)
    kept = _segment(tmp_path / "old", now - 2 * hour, now - 2 * hour + 2000, 1000)
    recordings.keep_event(settings, "old", now - 2 * hour + 500, None)
    young = [_segment(tmp_path / "new", now - 100_000 + i * 2000, now - 98_000 + i * 2000, 1500) for i in range(8)]
    os.utime(young[-1])

    result = control.sweep(now)
    assert not aged.exists() and kept.exists()  # by age, except what an event keeps
    # Quota: 10485 bytes less room for one more segment per recording camera (1000 + 1500).
    remaining = [p for p in young if p.exists()]
    assert remaining == young[-len(remaining):], "the oldest go first"
    assert sum(p.stat().st_size for p in [kept, *remaining]) + 2500 <= 10485
    assert result["blocked"] is None and control.deleted_by_camera == {"old": 1, "new": len(young) - len(remaining)}
    assert json.loads(frames.values[keys.recording("new")]) == {"enabled": True, "retention_hours": 72.0,
                                                               "blocked": None}

    # Footage kept for events fills the quota: recording stops on every camera of the host, and says why.
    for i in range(6):
        _segment(tmp_path / "old", now - hour + i * 2000, now - hour + i * 2000 + 2000, 1500)
    recordings.keep_event(settings, "old", now - hour, now - hour + 12_000)
    assert "quota" in control.sweep(now)["blocked"]
    assert "quota" in json.loads(frames.values[keys.recording("new")])["blocked"]
    assert not [p for p in young if p.exists()], "every unkept segment went first"
