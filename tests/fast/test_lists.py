"""Lists and reads in process: the camera list (its fast path against the one-camera record), hosts,
operations, annotations."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from processes import outputs, selectors, services
from processes.models import Camera, Operation
from tests.fast.conftest import make_offline
from tests.fast.test_cameras import IMAGES, RUNNING, connect, finish

CAMERA_KEYS = {"name", "rtsp_endpoint", "container_id", "image_tag", "created", "modified", "status", "state", "logs",
               "rtmp_stream_status", "upgrade_available", "host", "desired_state", "operation", "stream"}


@pytest.fixture
def fleet(api, edge, broker):
    """Four cameras on two hosts in different states; edge-b then goes offline."""
    edge.register("edge-a", images=IMAGES)
    edge.register("edge-b")
    connect(api, "cam-running", host="edge-a", rtmp_endpoint="rtmp://live.example.com/app/key-1")
    finish("cam-running", observed={**RUNNING, "logs": {"stdout": "line\n\"quoted\"", "stderr": "é"}})
    edge.register("edge-a", images=IMAGES, cameras=[{"name": "cam-running", **RUNNING}],
                  streams={"cam-running": {"rtmp_streaming": True, "storing": True}})
    connect(api, "cam-pending", host="edge-a")
    connect(api, "cam-stopped", host="edge-b")
    finish("cam-stopped", observed=RUNNING)
    api.post("/api/v1/process/cam-stopped/stop")
    finish("cam-stopped", observed=None)
    connect(api, "cam-offline", host="edge-b")
    finish("cam-offline", observed=RUNNING)
    make_offline(edge.register("edge-b"))
    return api


def test_processlist_is_every_camera_record_as_get_shows_it(fleet):
    listed = fleet.get("/api/v1/processlist").json()
    assert [c["name"] for c in listed] == ["cam-offline", "cam-pending", "cam-running", "cam-stopped"]
    for camera in listed:
        assert set(camera) >= CAMERA_KEYS
        assert camera == fleet.get(f"/api/v1/process/{camera['name']}").json()
    by_name = {c["name"]: c for c in listed}
    assert by_name["cam-running"]["status"] == "running"
    assert by_name["cam-running"]["rtmp_stream_status"] == {"streaming": True, "storing": True}
    assert by_name["cam-running"]["rtmp_endpoint"] == "rtmp://live.example.com/app/***"
    assert by_name["cam-pending"]["status"] == "pending"
    assert by_name["cam-offline"]["status"] == "offline"  # its host stopped beating
    assert by_name["cam-stopped"]["status"] == "offline"  # same host: offline wins over stopped


def test_the_fast_list_path_gives_the_bytes_of_the_record_path(fleet):
    """The list is built from rows instead of serializing each record: it must give the same bytes."""
    from rest_framework.renderers import JSONRenderer

    fast = outputs.camera_list_json()
    records = [outputs.camera_record(c) for c in selectors.cameras()]
    assert len(json.loads(fast)) == len(records) > 0
    assert fast == JSONRenderer().render(records)


@override_settings(EDGEPROXY_CAMERA_IMAGE="edgeproxy/camera:0.1.0")
def test_processlist_filters_by_host_and_status(fleet):
    def names(query):
        response = fleet.get(f"/api/v1/processlist?{query}")
        assert response.status_code == 200
        return [c["name"] for c in response.json()]

    assert names("host=edge-a") == ["cam-pending", "cam-running"]
    assert names("status=offline") == ["cam-offline", "cam-stopped"]
    assert names("host=edge-a&status=running") == ["cam-running"]
    assert names("host=no-such-host") == []


def test_an_empty_fleet_lists_nothing(api):
    assert api.get("/api/v1/processlist").json() == []
    assert api.get("/api/v1/hosts").json() == []


def test_hosts_list_online_state_and_camera_counts(fleet):
    hosts = fleet.get("/api/v1/hosts").json()
    assert [(h["name"], h["online"], h["cameras"]) for h in hosts] == [("edge-a", True, 2), ("edge-b", False, 2)]
    edge_a = fleet.get("/api/v1/hosts/edge-a").json()
    assert edge_a == hosts[0]
    assert edge_a["queue"] == "host.edge-a" and edge_a["runtime"] == "docker"
    assert edge_a["images"] == IMAGES and "public_key" not in edge_a


def test_task_shows_the_operation_from_queued_to_done(api, online_host, broker):
    op_id = connect(api).json()["operation"]["id"]
    queued = api.get(f"/api/v1/tasks/{op_id}").json()
    assert queued["id"] == op_id and queued["kind"] == "connect" and queued["state"] == "pending"
    assert queued["camera"] == "front-door" and queued["host"] == "edge-a"
    assert queued["finished"] is None and queued["error"] is None

    services.record_operation_started(op_id)
    assert api.get(f"/api/v1/tasks/{op_id}").json()["state"] == "running"
    finish("front-door", observed=RUNNING)
    done = api.get(f"/api/v1/tasks/{op_id}").json()
    assert done["state"] == "succeeded" and done["finished"] >= done["started"] >= done["created"]


def test_a_task_answers_its_result_after_its_own_keys(api, db):
    """A pull's log (and any other key of the stored result) comes after the operation's keys; a task
    without camera, host or progress answers null, null and {}. (The stored keys' own order is the
    database's: PostgreSQL's jsonb sorts them.)"""
    op = Operation.objects.create(kind="pull", state="succeeded",
                                  result={"response": "Pulled edgeproxy/camera:0.2.0", "layers": 3})
    body = api.get(f"/api/v1/tasks/{op.id}").json()
    assert list(body)[:10] == ["id", "kind", "state", "error", "created", "finished", "camera", "host", "started",
                               "progress"]
    assert sorted(list(body)[10:]) == ["layers", "response"]
    assert (body["camera"], body["host"], body["started"], body["progress"]) == (None, None, None, {})
    assert body["response"] == "Pulled edgeproxy/camera:0.2.0" and body["layers"] == 3
    assert api.get("/api/v1/tasks").json() == [body]


def test_a_task_id_that_is_not_a_uuid_is_404(api):
    assert api.get("/api/v1/tasks/not-a-uuid").status_code == 404


def test_heartbeat_applies_the_observed_state_of_idle_cameras(api, edge, broker):
    edge.register("edge-a")
    connect(api)
    finish("front-door", observed=RUNNING)
    edge.register("edge-a", cameras=[{"name": "front-door", **RUNNING, "status": "restarting"},
                                     {"name": "stray-cam", "status": "running"}])
    assert api.get("/api/v1/process/front-door").json()["status"] == "restarting"
    assert Camera.objects.get().host.strays == ["stray-cam"]


def test_a_heartbeat_writes_only_the_cameras_whose_observation_changed(api, edge, broker):
    """Every host beats every few seconds: a camera whose observation did not change costs no write,
    and its ``modified`` (and so its ETag) stays."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    names = ("cam-1", "cam-2", "cam-3")
    edge.register("edge-a")
    for name in names:
        assert connect(api, name).status_code == 202
        finish(name, observed=RUNNING)
    seen = [{"name": name, **RUNNING} for name in names]
    edge.register("edge-a", cameras=seen)  # the first observation after the operations is recorded
    modified = {c.name: c.modified for c in Camera.objects.all()}

    def camera_writes(cameras: list[dict]) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            edge.register("edge-a", cameras=cameras)
        return [q["sql"] for q in queries if q["sql"].startswith('UPDATE "processes_camera"')]

    assert camera_writes(seen) == []
    assert {c.name: c.modified for c in Camera.objects.all()} == modified
    assert len(camera_writes([seen[0], {**seen[1], "status": "restarting"}, seen[2]])) == 1
    assert api.get("/api/v1/process/cam-2").json()["status"] == "restarting"
    assert Camera.objects.get(name="cam-2").modified > modified["cam-2"]
    assert Camera.objects.get(name="cam-1").modified == modified["cam-1"]


def test_annotations_filter_and_limit(api, db):
    for i, (camera, kind) in enumerate([("cam-a", "person"), ("cam-a", "car"), ("cam-b", "person")]):
        services.record_annotation({"device_name": camera, "type": kind, "start_timestamp": 1000 + i})
    assert services.record_annotation({"device_name": "cam-a", "type": "person"}) is None  # no start: dropped
    assert [a["start_timestamp"] for a in api.get("/api/v1/annotations").json()] == [1002, 1001, 1000]
    assert [a["device_name"] for a in api.get("/api/v1/annotations?type=person").json()] == ["cam-b", "cam-a"]
    assert len(api.get("/api/v1/annotations?camera=cam-a&from=1001").json()) == 1
    assert len(api.get("/api/v1/annotations?limit=1").json()) == 1
    for bad in ("limit=0", "limit=x", "from=-1", "to=1.5"):
        response = api.get(f"/api/v1/annotations?{bad}")
        assert response.status_code == 400, bad
        assert bad.split("=")[0] in response.json()["errors"]
