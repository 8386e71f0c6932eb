"""App processes in process (issue 16): every rule of an install, what is stored and sent to the
host, how results, heartbeats, reconciliation and restarts drive an app."""

from __future__ import annotations

import pytest

from processes import services
from processes.models import AppImageRule, AppProcess, Event, Operation

RTSP = "rtsp://admin:S3cretPass-9x@127.0.0.1:8554/test"
SECRET = "tok-Very-Secret-42"
MARKED = "marked-plain-looking-9"


@pytest.fixture
def allowed(db):
    AppImageRule.objects.create(repository="acme/detector")
    AppImageRule.objects.create(repository="trusted/*", host_network=True)


def camera(api, name, host="edge-a"):
    response = api.post("/api/v1/process", {"name": name, "rtsp_endpoint": RTSP, "host": host}, format="json")
    assert response.status_code == 202, response.content
    return name


def body(**fields):
    """The original portal's AppProcess body (read-only fields included, as it sends them back)."""
    return {"name": "detector-1", "docker_user": "acme", "docker_repository": "detector", "docker_version": "1.2.0",
            "env_vars": [{"name": "API_TOKEN", "value": SECRET}, {"name": "MODE", "value": "fast"},
                         {"name": "OPAQUE", "value": MARKED, "secret": True}],
            "arguments": [{"name": "--threshold", "value": "0.5"}],
            "port_mappings": [{"exposed": 18080, "map_to": 8080}],
            "mount": [{"name": "models", "value": "/models"}],
            "runtime": "", "cameras": ["door-cam"],
            "container_id": "", "status": "", "upgrade_available": False, "newer_version": "", **fields}


def install(api, **fields):
    return api.post("/api/v1/appprocess", body(**fields), format="json")


def finish(app_name: str, *, ok=True, observed=None, removed=False, error="") -> None:
    op = Operation.objects.get(app__name=app_name, state__in=("pending", "running"))
    services.record_operation_result(str(op.id), ok, error, observed=observed, removed=removed)


RUNNING = {"name": "detector-1", "container_id": "c0ffee", "status": "running",
           "state": {"Status": "running", "Running": True}, "logs": {"stdout": None, "stderr": None}}


def test_install_stores_masks_seals_and_answers_like_the_original(api, edge, online_host, broker, allowed):
    camera(api, "door-cam")
    broker.redis.flushdb()
    response = install(api)

    assert response.status_code == 202, response.content
    record = response.json()
    assert record["host"] == "edge-a" and record["cameras"] == ["door-cam"]
    assert record["status"] == "pending" and record["operation"]["kind"] == "connect"
    assert {"name": "API_TOKEN", "value": "***", "secret": True} in record["env_vars"]
    assert {"name": "OPAQUE", "value": "***", "secret": True} in record["env_vars"]
    assert {"name": "MODE", "value": "fast"} in record["env_vars"]
    assert record["cpus"] == 1.0 and record["memory_mb"] == 512  # the documented defaults
    for key in ("name", "docker_user", "docker_repository", "docker_version", "env_vars", "arguments",
                "port_mappings", "mount", "runtime", "container_id", "status", "state", "logs", "created",
                "modified", "upgrade_available", "newer_version"):
        assert key in record, key
    stored = AppProcess.objects.get(name="detector-1")
    assert SECRET not in str(stored.env_vars) and MARKED not in str(stored.env_vars)

    [message] = broker.host_messages("edge-a")
    assert message.task == "edge.app_ensure_running" and message.kwargs["app_name"] == "detector-1"
    assert SECRET.encode() not in message.raw and MARKED.encode() not in message.raw
    spec = edge.open("edge-a", message.kwargs["spec"])
    assert {"name": "API_TOKEN", "value": SECRET, "secret": True} in spec["env"]
    assert spec["image"] == "acme/detector:1.2.0" and spec["mount"] == [{"name": "models", "value": "/models"}]
    assert spec["command"] == ["--threshold", "0.5"] and spec["host_network"] is False

    for answer in (api.get("/api/v1/appprocesslist"), api.get("/api/v1/appprocess/detector-1")):
        assert answer.status_code == 200
        assert SECRET not in answer.content.decode() and MARKED not in answer.content.decode()
    assert [a["name"] for a in api.get("/api/v1/appprocesslist").json()] == ["detector-1"]
    assert [a["name"] for a in api.get("/api/v1/appprocesslist?host=edge-a").json()] == ["detector-1"]
    assert api.get("/api/v1/appprocesslist?host=edge-b").json() == []
    # A host name PostgreSQL cannot compare (the fuzz run got a 503 for it): a 400 naming the parameter.
    refused = api.get("/api/v1/appprocesslist?host=%00")
    assert refused.status_code == 400 and refused.json()["code"] == 400 and "host" in refused.json()["message"]


BAD_INSTALLS = [
    # (fields, status, words the message must hold)
    ({"docker_user": "evil", "docker_repository": "miner"}, 403, ["docker_repository", "allow-list"]),
    ({"host_network": True}, 403, ["host_network", "acme/detector"]),
    ({"mount": [{"name": "/etc", "value": "/etc"}]}, 400, ["mount"]),
    ({"mount": [{"name": "../../etc", "value": "/x"}]}, 400, ["mount", ".."]),
    ({"mount": [{"name": "data/../../x", "value": "/x"}]}, 400, ["mount"]),
    ({"mount": [{"name": "data", "value": "relative"}]}, 400, ["mount"]),
    ({"port_mappings": [{"exposed": 70000, "map_to": 80}]}, 400, ["port_mappings", "out of range"]),
    ({"port_mappings": [{"exposed": 80, "map_to": 0}]}, 400, ["port_mappings", "out of range"]),
    ({"port_mappings": [{"exposed": 9000, "map_to": 80}, {"exposed": 9000, "map_to": 81}]}, 400,
     ["port_mappings", "twice"]),
    ({"cameras": ["no-such-cam"]}, 400, ["cameras", "no-such-cam"]),
    ({"cameras": ["door-cam", "yard-cam"]}, 400, ["cameras", "different edge hosts"]),
    ({"runtime": "kata"}, 400, ["runtime", "kata"]),
    ({"env_vars": [{"name": "EDGEPROXY_FRAMES_ADDRESS", "value": "evil:1"}]}, 400, ["env_vars", "reserved"]),
    ({"env_vars": [{"name": "bad name", "value": "x"}]}, 400, ["env_vars"]),
    ({"cpus": 64}, 400, ["cpus"]),
    ({"memory_mb": 1}, 400, ["memory_mb"]),
    ({"name": "x"}, 400, ["name"]),
    ({"docker_version": ""}, 400, ["docker_version"]),
    ({"host": "edge-b"}, 400, ["host", "edge-a"]),
]


@pytest.mark.parametrize(("fields", "status", "words"), BAD_INSTALLS, ids=[str(b[0])[:40] for b in BAD_INSTALLS])
def test_bad_install_names_the_field_and_stores_nothing(api, edge, online_host, broker, allowed, fields, status,
                                                        words):
    edge.register("edge-b")
    camera(api, "door-cam")
    camera(api, "yard-cam", host="edge-b")
    broker.redis.flushdb()
    response = install(api, **fields)

    assert response.status_code == status, response.content
    answer = response.json()
    assert answer["code"] == status
    for word in words:
        assert word in answer["message"], answer
    assert not AppProcess.objects.exists() and not Operation.objects.filter(app__isnull=False).exists()
    assert broker.host_messages("edge-a") == [] and broker.host_messages("edge-b") == []


def test_a_host_port_in_use_by_another_app_is_refused(api, edge, online_host, broker, allowed):
    camera(api, "door-cam")
    assert install(api).status_code == 202
    response = install(api, name="detector-2")
    assert response.status_code == 400 and "18080" in response.json()["message"]
    assert "port_mappings" in response.json()["message"]
    assert install(api, name="detector-3", port_mappings=[{"exposed": 18081, "map_to": 8080}]).status_code == 202
    assert install(api, name="detector-3").status_code == 409


def test_result_heartbeat_reconcile_restart_and_delete(api, edge, online_host, broker, allowed):
    camera(api, "door-cam")
    assert install(api).status_code == 202
    finish("detector-1", observed=RUNNING)
    app = api.get("/api/v1/appprocess/detector-1").json()
    assert app["status"] == "running" and app["container_id"] == "c0ffee"
    assert app["operation"]["state"] == "succeeded"

    # A heartbeat without the app's container: reconciliation starts it again (an operation).
    report = {"queue": "host.edge-a", "public_key": online_host.public_key, "cameras": [], "apps": [],
              "observed_at": 10 ** 13}
    services.record_heartbeat("edge-a", report)
    assert api.get("/api/v1/appprocess/detector-1").json()["status"] == "error"
    broker.redis.flushdb()
    services.reconcile_fleet()
    messages = [m for m in broker.host_messages("edge-a") if m.task.startswith("edge.app_")]
    assert [m.task for m in messages] == ["edge.app_ensure_running"]
    assert Operation.objects.get(id=messages[0].id).kind == "reconcile"

    # The worker restarts with the operation unfinished: it is sent again.
    broker.redis.flushdb()
    services.host_restarted(online_host)
    assert [m.id for m in broker.host_messages("edge-a") if m.task == "edge.app_ensure_running"] == [messages[0].id]
    finish("detector-1", observed=RUNNING)

    # Stop, start, and delete: each an operation on the host's queue; the record goes when removed.
    broker.redis.flushdb()
    assert api.post("/api/v1/appprocess/detector-1/stop").status_code == 202
    assert api.post("/api/v1/appprocess/detector-1/start").status_code == 409  # busy
    finish("detector-1", observed={**RUNNING, "status": "exited", "state": {"Status": "exited"}})
    assert api.get("/api/v1/appprocess/detector-1").json()["status"] == "stopped"
    response = api.delete("/api/v1/appprocess/detector-1")
    assert response.status_code == 202 and response.json()["status"] == "removing"
    assert [m.task for m in broker.host_messages("edge-a")] == ["edge.app_stop", "edge.app_remove"]
    finish("detector-1", removed=True)
    assert api.get("/api/v1/appprocess/detector-1").status_code == 404
    assert api.delete("/api/v1/appprocess/detector-1").status_code == 404


def test_read_only_token_reads_but_cannot_install(read_only_api, api, edge, online_host, broker, allowed):
    assert read_only_api.get("/api/v1/appprocesslist").status_code == 200
    assert read_only_api.post("/api/v1/appprocess", body(cameras=[]), format="json").status_code == 403
    assert not AppProcess.objects.exists()


def test_dashboard_lists_shows_and_stops_an_app_and_the_camera_page_links_it(api, edge, online_host, broker, allowed):
    from django.contrib.auth.models import User
    from django.test import Client

    camera(api, "door-cam")
    assert install(api).status_code == 202
    finish("detector-1", observed={**RUNNING, "logs": {"stdout": None, "stderr": "aGVsbG8gZnJvbSB0aGUgYXBwCg=="}})
    browser = Client()
    browser.force_login(User.objects.create_superuser("admin", password="x"))

    listing = browser.get("/apps/?host=edge-a").content.decode()
    assert "detector-1" in listing and "acme/detector:1.2.0" in listing and "door-cam" in listing
    page = browser.get("/apps/detector-1/").content.decode()
    assert "hello from the app" in page and "running" in page
    assert SECRET not in page and "(secret)" in page
    assert "detector-1" in browser.get("/cameras/door-cam/").content.decode()

    response = browser.post("/apps/detector-1/stop")
    assert response.status_code == 302
    assert Operation.objects.get(app__name="detector-1", state="pending").kind == "stop"
    assert AppProcess.objects.get(name="detector-1").desired_state == "stopped"


def test_upgrade_to_a_newer_local_version_changes_the_version_when_the_host_runs_it(api, edge, broker, allowed):
    images = [{"repository": "acme/detector", "tag": tag, "id": f"sha256:{tag}"} for tag in ("1.2.0", "1.3.0")]
    edge.register("edge-a", images=images)
    camera(api, "door-cam")
    assert install(api).status_code == 202
    finish("detector-1", observed=RUNNING)
    [listed] = api.get("/api/v1/appprocessupgrades").json()
    assert listed["upgrade_available"] is True and listed["newer_version"] == "1.3.0"

    broker.redis.flushdb()
    response = api.post("/api/v1/appprocessupgrades", {"name": "detector-1"}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["operation"]["kind"] == "upgrade" and response.json()["docker_version"] == "1.2.0"
    [message] = broker.host_messages("edge-a")
    assert edge.open("edge-a", message.kwargs["spec"])["image"] == "acme/detector:1.3.0"
    finish("detector-1", observed=RUNNING)
    after = api.get("/api/v1/appprocess/detector-1").json()
    assert after["docker_version"] == "1.3.0" and after["upgrade_available"] is False

    missing = api.post("/api/v1/appprocessupgrades", {"name": "detector-1", "newer_version": "9.9.9"}, format="json")
    assert missing.status_code == 409 and "9.9.9" in missing.json()["message"]


def test_the_original_portals_requests_get_the_shapes_it_reads(api, edge, online_host, broker, allowed):
    """As the portal's app-add form and edge.service.ts send them: no camera, ``docker_user`` and
    ``runtime`` null when not filled in, port numbers as numbers; then the list, the app, the delete."""
    AppImageRule.objects.create(repository="nginx")
    form = {"name": "web-app", "docker_user": None, "docker_repository": "nginx", "docker_version": "1.25",
            "env_vars": [{"name": "GREETING", "value": "hi"}], "mount": [],
            "port_mappings": [{"exposed": 8088, "map_to": 80}], "runtime": None}
    installed = api.post("/api/v1/appprocess", form, format="json")
    assert installed.status_code == 202, installed.content
    assert installed.json()["host"] == "edge-a" and installed.json()["docker_user"] == ""
    finish("web-app", observed={**RUNNING, "name": "web-app", "logs": {"stdout": "aGk=", "stderr": None}})

    [listed] = api.get("/api/v1/appprocesslist").json()
    one = api.get("/api/v1/appprocess/web-app").json()
    for record in (listed, one):  # what the portal's AppProcess model and pages read
        assert record["name"] == "web-app" and record["docker_repository"] == "nginx"
        assert record["env_vars"] == [{"name": "GREETING", "value": "hi"}] and record["mount"] == []
        assert record["port_mappings"] == [{"exposed": 8088, "map_to": 80}]
        assert record["container_id"] == "c0ffee" and record["status"] == "running"
        assert record["state"]["Running"] is True and record["logs"]["stdout"] == "aGk="
        assert isinstance(record["created"], int) and isinstance(record["modified"], int)
        assert record["upgrade_available"] is False and record["newer_version"] == ""
    removed = api.delete("/api/v1/appprocess/web-app")
    assert removed.status_code == 202 and removed.json()["status"] == "removing"


def test_a_stray_app_container_is_removed_once(api, edge, online_host, broker, allowed):
    report = {"queue": "host.edge-a", "public_key": online_host.public_key, "cameras": [],
              "apps": [{"name": "ghost-app", "container_id": "dead", "status": "running", "state": {}, "logs": None}],
              "observed_at": 10 ** 13}
    services.record_heartbeat("edge-a", report)
    services.record_heartbeat("edge-a", report)  # the removal under way is not asked twice
    [message] = broker.host_messages("edge-a")
    assert message.task == "edge.app_remove" and message.kwargs["app_name"] == "ghost-app"
    op = Operation.objects.get(id=message.id)
    assert op.kind == "reconcile" and op.app is None
    broker.redis.flushdb()
    services.host_restarted(online_host)  # sent again after a worker restart
    assert [m.task for m in broker.host_messages("edge-a")] == ["edge.app_remove"]
    services.record_operation_result(str(op.id), True, removed=True)
    assert Operation.objects.get(id=op.id).state == "succeeded"


def finish_camera(name: str) -> None:
    """The camera's host reports its pending operation done, the camera running."""
    op = Operation.objects.get(camera__name=name, state__in=("pending", "running"))
    services.record_operation_result(str(op.id), True, observed={"container_id": f"c-{name}", "status": "running",
                                                                 "state": {"Status": "running", "Running": True}})


def test_a_camera_an_app_reads_stays_until_the_app_goes(api, edge, online_host, broker, allowed):
    """An app runs on its cameras' host: moving or deleting a camera an app reads is a 409 naming the
    app, and nothing changes; an app is not installed on a camera that is moving away."""
    edge.register("edge-b")
    camera(api, "door-cam")
    finish_camera("door-cam")
    assert install(api).status_code == 202
    finish("detector-1", observed=RUNNING)
    broker.redis.flushdb()
    operations = Operation.objects.count()

    for response in (api.post("/api/v1/process/door-cam/move", {"host": "edge-b"}, format="json"),
                     api.patch("/api/v1/process/door-cam", {"host": "edge-b"}, format="json"),
                     api.delete("/api/v1/process/door-cam")):
        assert response.status_code == 409, response.content
        refusal = response.json()
        assert refusal["code"] == 409 and refusal["apps"] == ["detector-1"], refusal
        assert "detector-1" in refusal["message"] and "delete the app" in refusal["message"], refusal
    door = api.get("/api/v1/process/door-cam").json()
    assert door["host"] == "edge-a" and door["status"] == "running"
    assert Operation.objects.count() == operations and broker.host_messages("edge-b") == []
    assert broker.host_messages("edge-a") == []

    # A camera on its way to another host: an app reading it is refused, and nothing is stored.
    camera(api, "yard-cam")
    finish_camera("yard-cam")
    assert api.post("/api/v1/process/yard-cam/move", {"host": "edge-b"}, format="json").status_code == 202
    moving = install(api, name="yard-app", cameras=["yard-cam"], port_mappings=[])
    assert moving.status_code == 409, moving.content
    assert "yard-cam is moving to edge host edge-b" in moving.json()["message"]
    assert not AppProcess.objects.filter(name="yard-app").exists()

    # Once the app is gone, the camera moves.
    assert api.delete("/api/v1/appprocess/detector-1").status_code == 202
    finish("detector-1", removed=True)
    moved = api.post("/api/v1/process/door-cam/move", {"host": "edge-b"}, format="json")
    assert moved.status_code == 202, moved.content


def test_delete_cuts_short_a_busy_app_like_a_cameras(api, edge, online_host, broker, allowed):
    camera(api, "door-cam")
    installed = install(api)
    connect_op = installed.json()["operation"]["id"]

    response = api.delete("/api/v1/appprocess/detector-1")
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "removing" and response.json()["operation"]["kind"] == "delete"
    delete_op = response.json()["operation"]["id"]
    superseded = api.get(f"/api/v1/tasks/{connect_op}").json()
    assert superseded["state"] == "failed" and superseded["error"] == f"superseded by delete operation {delete_op}"
    [event] = [e for e in Event.objects.filter(type="operation.finished") if e.data["operation_id"] == connect_op]
    assert (event.host, event.data["kind"], event.data["state"]) == ("edge-a", "connect", "failed")
    assert [m.task for m in broker.host_messages("edge-a")] == ["edge.ensure_running", "edge.app_ensure_running",
                                                               "edge.app_remove"]

    # The superseded install's late result changes nothing; the host's removal deletes the record.
    services.record_operation_result(connect_op, True, observed=RUNNING)
    assert api.get("/api/v1/appprocess/detector-1").json()["status"] == "removing"
    again = api.delete("/api/v1/appprocess/detector-1")  # a delete under way answers another
    assert again.status_code == 202 and again.json()["operation"]["id"] == delete_op
    services.record_operation_result(delete_op, True, removed=True)
    assert api.get("/api/v1/appprocess/detector-1").status_code == 404


def test_a_container_docker_shows_removing_comes_back_running(api, edge, online_host, broker, allowed):
    """Docker's own "removing" (a container removed by hand) is not our delete: the next observation
    replaces it (tests/processes/test_apps.py saw an app stuck at "removing" after it came back)."""
    camera(api, "door-cam")
    assert install(api).status_code == 202
    finish("detector-1", observed=RUNNING)

    def beat(observed):
        services.record_heartbeat("edge-a", {"queue": "host.edge-a", "public_key": online_host.public_key,
                                             "cameras": [], "apps": [observed], "observed_at": 10 ** 13})
        return api.get("/api/v1/appprocess/detector-1").json()["status"]

    assert beat({**RUNNING, "status": "removing", "state": {"Status": "removing"}}) == "removing"
    assert beat({**RUNNING, "container_id": "c0ffee2"}) == "running"
