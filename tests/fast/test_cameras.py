"""Camera routes in process: what each answers, what it stores, and what it sends the camera's host."""

from __future__ import annotations

import pytest
from django.test import override_settings

from processes import services
from processes.models import Camera, Operation
from tests.fast.conftest import make_offline
from tests.processes.test_validation import BAD_CONNECTS

RTSP = "rtsp://admin:S3cretPass-9x@127.0.0.1:8554/test"


def connect(api, name="front-door", **fields):
    return api.post("/api/v1/process", {"name": name, "rtsp_endpoint": RTSP, **fields}, format="json")


def finish(camera_name: str, *, ok=True, observed=None, removed=False, error="") -> None:
    """Report the result of the camera's current operation as its edge host does."""
    op = Operation.objects.get(camera__name=camera_name, state__in=("pending", "running"))
    services.record_operation_result(str(op.id), ok, error, observed=observed, removed=removed)


RUNNING = {"status": "running", "container_id": "c0ffee", "state": {"Status": "running", "Running": True},
           "logs": {"stdout": "ok", "stderr": ""}}


# --- connect -------------------------------------------------------------------------------------


def test_connect_answers_202_stores_the_camera_and_sends_its_host_a_sealed_spec(api, edge, online_host, broker):
    response = connect(api, rtmp_endpoint="rtmp://live.example.com/app/streamkey-123")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["name"] == "front-door" and body["host"] == "edge-a"
    assert body["status"] == "pending" and body["desired_state"] == "running"
    assert body["rtsp_endpoint"] == "rtsp://admin:***@127.0.0.1:8554/test"
    assert body["operation"]["kind"] == "connect" and body["operation"]["state"] == "pending"
    camera = Camera.objects.get(name="front-door")
    assert camera.host == online_host and str(camera.last_operation_id) == body["operation"]["id"]

    [message] = broker.host_messages("edge-a")
    assert message.task == "edge.ensure_running"
    assert message.id == body["operation"]["id"] == message.kwargs["operation_id"]
    assert message.kwargs["camera_name"] == "front-door"
    spec = edge.open("edge-a", message.kwargs["spec"])
    assert spec["rtsp_url"] == RTSP and spec["rtmp_url"] == "rtmp://live.example.com/app/streamkey-123"
    assert spec["name"] == "front-door" and spec["image"] == camera.image_tag
    # Secrets travel sealed: neither the password nor the stream key is readable in the message.
    assert b"S3cretPass-9x" not in message.raw and b"streamkey-123" not in message.raw
    assert "S3cretPass-9x" not in response.content.decode() and "streamkey-123" not in response.content.decode()


def test_connect_places_the_camera_on_the_online_host_with_fewest_cameras(api, edge, broker):
    edge.register("edge-a")
    edge.register("edge-b")
    assert connect(api, "cam-one", host="edge-a").status_code == 202
    assert connect(api, "cam-two").json()["host"] == "edge-b"
    assert [m.kwargs["camera_name"] for m in broker.host_messages("edge-b")] == ["cam-two"]


@pytest.mark.parametrize("body,field", BAD_CONNECTS, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_CONNECTS)])
def test_bad_connect_is_400_naming_the_field_and_changes_nothing(api, online_host, broker, body, field):
    response = api.post("/api/v1/process", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()
    assert error["code"] == 400 and field in error["message"] and field in error["errors"]
    assert not Camera.objects.exists() and not Operation.objects.exists()
    assert broker.queues() == set()


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'"a string"', b"null"])
def test_malformed_bodies_are_400(api, raw):
    response = api.post("/api/v1/process", raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == 400 and response.json()["message"]


def test_connect_with_a_taken_name_is_409_and_sends_nothing_more(api, online_host, broker):
    assert connect(api).status_code == 202
    response = connect(api, rtsp_endpoint="rtsp://127.0.0.1/other")
    assert response.status_code == 409
    assert response.json()["errors"] == {"name": ["already exists"]}
    assert len(broker.host_messages("edge-a")) == 1
    assert Camera.objects.get().rtsp_endpoint_masked == "rtsp://admin:***@127.0.0.1:8554/test"


def test_connect_to_an_unknown_host_is_404_naming_it(api, online_host, broker):
    response = connect(api, host="no-such-host")
    assert response.status_code == 404
    assert "no-such-host" in response.json()["message"] and "host" in response.json()["errors"]
    assert not Camera.objects.exists() and broker.queues() == set()


def test_connect_with_no_host_online_is_503_and_stores_nothing(api, online_host, broker):
    make_offline(online_host)
    response = connect(api)
    assert response.status_code == 503 and response.json()["code"] == 503
    assert not Camera.objects.exists() and broker.queues() == set()


def test_connect_to_a_host_without_its_key_is_503_and_stores_nothing(api, edge, broker):
    edge.register("edge-a", public_key=False)
    response = connect(api)
    assert response.status_code == 503 and "key" in response.json()["message"]
    assert not Camera.objects.exists() and not Operation.objects.exists()


def test_connect_while_the_broker_is_down_is_503_and_stores_nothing(api, online_host, broker, broker_redis):
    """The task is sent once the camera is committed: a refused publish removes it again."""
    broker_redis.stop()
    try:
        response = connect(api)
    finally:
        broker_redis.start()
    assert response.status_code == 503, response.content
    assert "broker" in response.json()["message"]
    assert not Camera.objects.exists() and not Operation.objects.exists()
    # With the broker back, the same request goes through.
    assert connect(api).status_code == 202
    assert [m.kwargs["camera_name"] for m in broker.host_messages("edge-a")] == ["front-door"]


# --- start, stop, delete ---------------------------------------------------------------------------


@pytest.fixture
def running_camera(api, online_host, broker) -> str:
    """``front-door`` on edge-a, its connect confirmed running; the queue emptied."""
    assert connect(api).status_code == 202
    finish("front-door", observed=RUNNING)
    broker.redis.flushdb()
    return "front-door"


def test_get_shows_the_observed_state_after_the_host_confirms(api, running_camera):
    body = api.get("/api/v1/process/front-door").json()
    assert body["status"] == "running" and body["container_id"] == "c0ffee"
    assert body["operation"]["state"] == "succeeded"
    assert body["state"]["Running"] is True and body["logs"] == {"stdout": "ok", "stderr": ""}
    assert api.get("/api/v1/process/info/front-door").json() == body


def test_a_camera_on_an_offline_host_shows_offline(api, online_host, running_camera):
    make_offline(online_host)
    assert api.get("/api/v1/process/front-door").json()["status"] == "offline"


@pytest.mark.parametrize("method,path", [
    ("post", "/api/v1/process/front-door/stop"),
    ("post", "/api/v1/process/stop/front-door"),
    ("delete", "/api/v1/process/stop/front-door"),
])
def test_stop_keeps_the_record_and_sends_edge_stop(api, running_camera, broker, method, path):
    response = getattr(api, method)(path)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["desired_state"] == "stopped" and body["operation"]["kind"] == "stop"
    [message] = broker.host_messages("edge-a")
    assert message.task == "edge.stop" and message.kwargs == {"operation_id": body["operation"]["id"],
                                                              "camera_name": "front-door"}
    finish("front-door", observed={**RUNNING, "status": "exited"})
    assert api.get("/api/v1/process/front-door").json()["status"] == "stopped"


@pytest.mark.parametrize("path,kind", [("/api/v1/process/front-door/stop", "stop"),
                                       ("/api/v1/process/front-door", "delete")])
def test_a_change_the_broker_refuses_is_503_and_leaves_the_camera_as_it_was(api, running_camera, broker, broker_redis,
                                                                           path, kind):
    """The edge task goes out only after its operation is committed; refused, the operation ends
    failed saying why, and the camera keeps its desired state and status."""
    broker_redis.stop()
    try:
        response = api.post(path) if kind == "stop" else api.delete(path)
    finally:
        broker_redis.start()
    assert response.status_code == 503, response.content
    assert "broker" in response.json()["message"] and kind in response.json()["message"]
    camera = api.get("/api/v1/process/front-door").json()
    assert camera["desired_state"] == "running" and camera["status"] == "running"
    assert camera["operation"]["kind"] == kind and camera["operation"]["state"] == "failed"
    assert "broker" in camera["operation"]["error"]
    assert broker.host_messages("edge-a") == []
    # Nothing is left busy: the same request goes through with the broker back.
    assert (api.post(path) if kind == "stop" else api.delete(path)).status_code == 202


def test_start_sends_edge_ensure_running_with_the_spec(api, edge, running_camera, broker):
    api.post("/api/v1/process/front-door/stop")
    finish("front-door", observed=None)
    broker.redis.flushdb()
    for path, body in (("/api/v1/process/front-door/start", None),
                       ("/api/v1/process/startrtsp", {"name": "front-door"})):
        response = api.post(path, body, format="json")
        assert response.status_code == 202, response.content
        assert response.json()["desired_state"] == "running" and response.json()["status"] == "pending"
        [message] = broker.host_messages("edge-a")
        assert message.task == "edge.ensure_running"
        assert edge.open("edge-a", message.kwargs["spec"])["rtsp_url"] == RTSP
        finish("front-door", observed=RUNNING)
        broker.redis.flushdb()


def test_startrtsp_with_a_full_body_connects_a_new_camera(api, online_host, broker):
    response = api.post("/api/v1/process/startrtsp", {"name": "new-cam", "rtsp_endpoint": RTSP}, format="json")
    assert response.status_code == 202 and response.json()["operation"]["kind"] == "connect"
    assert Camera.objects.filter(name="new-cam").exists()


def test_a_busy_camera_answers_409_and_keeps_its_operation(api, online_host, broker):
    connect_op = connect(api).json()["operation"]["id"]
    for path in ("/api/v1/process/front-door/stop", "/api/v1/process/front-door/start"):
        response = api.post(path)
        assert response.status_code == 409, response.content
        assert connect_op in response.json()["message"]
    assert [m.task for m in broker.host_messages("edge-a")] == ["edge.ensure_running"]
    assert Camera.objects.get().desired_state == "running"


def test_delete_sends_edge_remove_and_the_record_goes_when_the_host_confirms(api, running_camera, broker):
    response = api.delete("/api/v1/process/front-door")
    assert response.status_code == 202
    assert response.json()["status"] == "removing" and response.json()["operation"]["kind"] == "delete"
    [message] = broker.host_messages("edge-a")
    assert message.task == "edge.remove" and message.kwargs["camera_name"] == "front-door"
    assert Camera.objects.filter(name="front-door").exists()  # until the host confirms

    # A second delete while the first is under way answers with that same operation.
    again = api.delete("/api/v1/process/front-door")
    assert again.status_code == 202 and again.json()["operation"]["id"] == message.id
    assert len(broker.host_messages("edge-a")) == 1

    finish("front-door", removed=True)
    assert api.get("/api/v1/process/front-door").status_code == 404
    task = api.get(f"/api/v1/tasks/{message.id}").json()
    assert task["state"] == "succeeded" and task["kind"] == "delete" and task["camera"] == "front-door"


def test_delete_cuts_short_a_pending_connect(api, online_host, broker):
    connect_op = connect(api).json()["operation"]["id"]
    response = api.delete("/api/v1/process/front-door")
    assert response.status_code == 202
    superseded = api.get(f"/api/v1/tasks/{connect_op}").json()
    assert superseded["state"] == "failed" and "superseded by delete" in superseded["error"]
    assert [m.task for m in broker.host_messages("edge-a")] == ["edge.ensure_running", "edge.remove"]


def test_a_failed_operation_shows_its_error(api, online_host, broker):
    op_id = connect(api).json()["operation"]["id"]
    finish("front-door", ok=False, error="image not found")
    body = api.get("/api/v1/process/front-door").json()
    assert body["status"] == "error" and body["operation"]["error"] == "image not found"
    assert api.get(f"/api/v1/tasks/{op_id}").json()["state"] == "failed"


@pytest.mark.parametrize("method,path", [
    ("get", "/api/v1/process/no-such-cam"),
    ("get", "/api/v1/process/info/no-such-cam"),
    ("post", "/api/v1/process/no-such-cam/start"),
    ("post", "/api/v1/process/no-such-cam/stop"),
    ("post", "/api/v1/process/stop/no-such-cam"),
    ("delete", "/api/v1/process/no-such-cam"),
    ("post", "/api/v1/process/startrtsp"),
    ("get", "/api/v1/hosts/no-such-host"),
    ("get", "/api/v1/tasks/00000000-0000-4000-8000-000000000000"),
])
def test_unknown_names_are_404_in_the_error_shape(api, online_host, broker, method, path):
    body = {"name": "no-such-cam"} if path.endswith("startrtsp") else None
    response = getattr(api, method)(path, body, format="json")
    assert response.status_code == 404, response.content
    assert response.json()["code"] == 404 and response.json()["message"]
    assert broker.queues() == set()


@pytest.mark.parametrize("wait", ["x", "-1", "61", "1_0", " 1", ""])
def test_a_bad_wait_is_400_and_changes_nothing(api, running_camera, broker, wait):
    response = api.post(f"/api/v1/process/front-door/stop?wait={wait}")
    assert response.status_code == 400 and "wait" in response.json()["errors"]
    assert Camera.objects.get().desired_state == "running" and broker.queues() == set()


def test_wait_gives_504_with_the_record_when_no_result_comes(api, running_camera):
    response = api.post("/api/v1/process/front-door/stop?wait=0.2")
    assert response.status_code == 504
    assert response.json()["operation"]["state"] == "pending"


# --- move --------------------------------------------------------------------------------------------


def test_move_removes_the_camera_on_its_host_then_runs_it_on_the_new_one(api, edge, running_camera, broker):
    edge.register("edge-b")
    response = api.patch("/api/v1/process/front-door", {"host": "edge-b"}, format="json")
    assert response.status_code == 202, response.content
    [remove] = broker.host_messages("edge-a")
    assert remove.task == "edge.remove"
    finish("front-door", removed=True)  # the old host removed it: now it starts on edge-b
    [start] = broker.host_messages("edge-b")
    assert start.task == "edge.ensure_running" and start.id == remove.id
    assert edge.open("edge-b", start.kwargs["spec"])["rtsp_url"] == RTSP
    assert api.get("/api/v1/process/front-door").json()["host"] == "edge-b"


@pytest.mark.parametrize("host,status", [("edge-a", 409), ("no-such-host", 404), ("", 400)])
def test_move_to_a_bad_host_is_refused(api, running_camera, broker, host, status):
    response = api.post("/api/v1/process/front-door/move", {"host": host}, format="json")
    assert response.status_code == status, response.content
    assert "host" in response.json()["errors"]
    assert broker.queues() == set()


# --- images: upgrades and pulls ----------------------------------------------------------------------


IMAGES = [{"repository": "edgeproxy/camera", "tag": t, "id": f"sha256:{t}", "size": 1, "created": ""}
          for t in ("0.1.0", "0.2.0")]


@override_settings(EDGEPROXY_CAMERA_IMAGE="edgeproxy/camera:0.1.0")
def test_upgrade_list_and_upgrade_to_the_newest_local_version(api, edge, broker):
    edge.register("edge-a", images=IMAGES)
    connect(api)
    finish("front-door", observed=RUNNING)
    broker.redis.flushdb()
    [listed] = api.get("/api/v1/processupgrades/findrtspupgrades").json()
    assert listed["upgrade_available"] is True and listed["newer_version"] == "0.2.0"

    response = api.post("/api/v1/processupgrades/upgradecontainer", {"name": "front-door"}, format="json")
    assert response.status_code == 202, response.content
    [message] = broker.host_messages("edge-a")
    assert message.task == "edge.upgrade"
    assert edge.open("edge-a", message.kwargs["spec"])["image"] == "edgeproxy/camera:0.2.0"
    assert Camera.objects.get().image_tag == "edgeproxy/camera:0.1.0"  # until the host reports success


@pytest.mark.parametrize("body,runtime,phrase", [
    ({"name": "front-door", "newer_version": "9.9.9"}, "docker", "Pull it first"),
    ({"name": "front-door", "newer_version": "0.1.0"}, "docker", "already runs"),
    ({"name": "front-door"}, "local", "Docker runtime"),
])
@override_settings(EDGEPROXY_CAMERA_IMAGE="edgeproxy/camera:0.1.0")
def test_impossible_upgrades_are_409_and_send_nothing(api, edge, broker, body, runtime, phrase):
    edge.register("edge-a", images=IMAGES, runtime=runtime)
    connect(api)
    finish("front-door", observed=RUNNING)
    broker.redis.flushdb()
    response = api.post("/api/v1/processupgrades/upgradecontainer", body, format="json")
    assert response.status_code == 409, response.content
    assert phrase in response.json()["message"]
    assert broker.queues() == set()


def test_pull_sends_one_operation_to_each_online_host(api, edge, broker):
    edge.register("edge-a")
    edge.register("edge-b")
    make_offline(edge.register("edge-c"))
    response = api.get("/api/v1/dockerpull?tag=edgeproxy/camera&version=0.3.0")
    assert response.status_code == 202, response.content
    operations = response.json()["operations"]
    assert sorted(op["host"] for op in operations) == ["edge-a", "edge-b"]
    for host in ("edge-a", "edge-b"):
        [message] = broker.host_messages(host)
        assert message.task == "edge.pull_image"
        assert (message.kwargs["repository"], message.kwargs["tag"]) == ("edgeproxy/camera", "0.3.0")
    assert broker.host_messages("edge-c") == []


@pytest.mark.parametrize("query,field", [("tag=Not%20An%20Image", "tag"), ("tag=edgeproxy/camera&version=bad%20tag",
                                                                              "version")])
def test_a_bad_pull_is_400_and_sends_nothing(api, online_host, broker, query, field):
    response = api.get(f"/api/v1/dockerpull?{query}")
    assert response.status_code == 400 and field in response.json()["errors"]
    assert broker.queues() == set()
