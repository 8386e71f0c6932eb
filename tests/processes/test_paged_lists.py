"""Fleet-scale reads and writes: paged, filtered lists (cameras, hosts, operations) with ETag and
304, bulk onboarding, and the camera record answered with the same bytes by the full list's fast
path and by the serializer that also documents it.

A system of its own (own Redis and database) with one edge host whose camera processes are idle
local processes, plus an edge host that is only a database row (never heard from: offline) with
cameras of every shape: with an RTMP target, a newer image on the host, stream facts, non-ASCII logs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.services import REPO, RedisServer, wait_until
from tests.support.system import System, fresh_database_url

EDGE = "test-lists"
OFFLINE = "sim-offline"
BULK = 30


@pytest.fixture(scope="module")
def fleet(artifacts):
    server = RedisServer(artifacts / "lists-redis")
    system = System(artifacts / "lists", server.url, fresh_database_url("edgeproxy_lists"), runtime="local",
                    camera_image="edgeproxy/camera:0.0.9",
                    extra_env={"EDGEPROXY_LOCAL_CAMERA_COMMAND": "/bin/sleep 3600"})
    try:
        system.start_edge(EDGE)
        _seed_offline_host(system)
        yield system
    finally:
        system.stop()
        server.stop()
    crashes = [line for line in system.logs().splitlines() if "Traceback" in line or "Internal Server Error" in line]
    assert not crashes, "the system logged errors:\n" + "\n".join(crashes[:20])


def _seed_offline_host(system: System) -> None:
    """An edge host known to the database only, and cameras on it in every shape a record can take."""
    code = f"""
import django
django.setup()
from processes.models import Camera, EdgeHost
from edgeproxy import crypto
host = EdgeHost.objects.create(name={OFFLINE!r}, queue="host.{OFFLINE}", runtime="docker", last_heartbeat=None,
    images=[{{"repository": "edgeproxy/camera", "tag": v}} for v in ("0.0.9", "0.0.10")])
secret = crypto.encrypt("rtsp://user:pass@10.0.0.1/stream")
state = {{"Status": "running", "Running": True, "Pid": 1234, "ExitCode": 0}}
shapes = [
    dict(status="running", state=state, logs={{"stdout": "c3RyZWFtaW5n", "stderr": None}},
         stream={{"state": "streaming", "fps": 25.0, "width": 640, "height": 480, "codec": "h264",
                  "rtmp_streaming": True, "storing": True}}),
    dict(status="exited", rtmp_endpoint_masked="rtmp://user:***@10.0.0.2/live/***",
         logs={{"stdout": "caf\\u00e9 \\u2028"}}),
    dict(status="pending", image_tag="edgeproxy/camera:0.0.10", stream={{}}),
    dict(status="stopped", desired_state="stopped"),
]
for i, shape in enumerate(shapes):
    Camera.objects.create(name=f"sim-{{i}}", rtsp_endpoint_encrypted=secret,
                          rtsp_endpoint_masked="rtsp://user:***@10.0.0.1/stream",
                          image_tag=shape.pop("image_tag", "edgeproxy/camera:0.0.9"), host=host, **shape)
"""
    subprocess.run([sys.executable, "-c", code], env=system.env, cwd=REPO, check=True, timeout=60)


def _bulk_body(names, **extra) -> dict:
    return {"cameras": [{"name": n, "rtsp_endpoint": f"rtsp://user:pw@127.0.0.1:9/{n}", **extra} for n in names]}


def _names(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["name"] for c in response.json()]


def _assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status and isinstance(body["message"], str), body
    for word in words:
        assert word in body["message"], body


@pytest.fixture(scope="module")
def onboarded(fleet):
    """BULK cameras connected in one request on the edge host, all running."""
    names = [f"bulk-{i:03d}" for i in range(BULK)]
    body = _bulk_body(names, host=EDGE)
    body["cameras"][1]["rtmp_endpoint"] = "rtmp://user:secret@127.0.0.1:9/live/streamkey"
    response = fleet.post("/api/v1/cameras/bulk", body)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == BULK
    wait_until(lambda: fleet.get(f"/api/v1/cameras?host={EDGE}&status=running&limit=1").headers["X-Total-Count"]
               == str(BULK), 90, interval=0.5, message="the bulk cameras running")
    return response.json()


# --- bulk onboarding --------------------------------------------------------------------------


def test_bulk_connect_answers_per_camera_with_one_operation_each(fleet, onboarded):
    results = onboarded["cameras"]
    assert [r["index"] for r in results] == list(range(BULK))
    assert onboarded["refused"] == 0
    operations = set()
    for result in results:
        assert result["code"] == 202 and result["message"] is None, result
        assert result["operation"]["kind"] == "connect"
        operations.add(result["operation"]["id"])
        task = fleet.get(f"/api/v1/tasks/{result['operation']['id']}").json()
        assert task["camera"] == result["name"] and task["state"] == "succeeded", task
    assert len(operations) == BULK
    listed = fleet.get(f"/api/v1/tasks?kind=connect&host={EDGE}&limit=500")
    assert {t["id"] for t in listed.json()} == operations
    camera = fleet.camera("bulk-001")
    assert camera["rtmp_endpoint"] == "rtmp://user:***@127.0.0.1:9/live/***"  # masked like a single connect
    assert "secret" not in json.dumps(onboarded) and "streamkey" not in json.dumps(onboarded)


def test_bulk_connect_reports_duplicates_and_taken_names_per_camera_and_keeps_the_rest(fleet, onboarded):
    body = _bulk_body(["dup-new-1", "bulk-000", "dup-new-2", "dup-new-1", "dup-new-3"])
    body["cameras"][4]["host"] = "no-such-host"
    response = fleet.post("/api/v1/cameras/bulk", body)
    assert response.status_code == 202, response.text
    results = response.json()["cameras"]
    assert [r["code"] for r in results] == [202, 409, 202, 409, 404]
    assert "already exists" in results[1]["message"] and results[1]["name"] == "bulk-000"
    assert "twice" in results[3]["message"] and "camera 0" in results[3]["message"]
    assert "no-such-host" in results[4]["message"]
    assert response.json()["accepted"] == 2 and response.json()["refused"] == 3
    for result in results:
        assert (result["operation"] is not None) == (result["code"] == 202)
    for name in ("dup-new-1", "dup-new-2"):
        fleet.wait_camera(name, lambda c: c["status"] == "running", message="running")
    assert fleet.get("/api/v1/process/dup-new-3").status_code == 404
    # The camera that was there keeps its record and its one connect operation.
    assert len(fleet.get("/api/v1/tasks?camera=bulk-000").json()) == 1


@pytest.mark.parametrize("body,field,words", [
    (lambda: _bulk_body([f"over-{i:03d}" for i in range(201)]), "cameras", ("200",)),
    (lambda: {"cameras": []}, "cameras", ("at least 1",)),
    (lambda: _bulk_body(["fine-one", "Not Valid"]), "cameras[1].name", ("cameras[1].name",)),
    (lambda: {"cameras": [{"name": "fine-two", "rtsp_endpoint": "http://x/y"}]}, "cameras[0].rtsp_endpoint",
     ("rtsp://",)),
    (lambda: {"cameras": "fine-three"}, "cameras", ("cameras",)),
    (lambda: [{"name": "fine-four", "rtsp_endpoint": "rtsp://127.0.0.1/x"}], "non_field_errors", ()),
], ids=["over-limit", "empty", "bad-name", "bad-url", "not-a-list", "not-an-object"])
def test_bad_bulk_connect_is_400_naming_the_camera_and_stores_nothing(fleet, body, field, words):
    before = fleet.get("/api/v1/processlist").content
    response = fleet.post("/api/v1/cameras/bulk", body())
    _assert_error(response, 400, *words)
    assert field in response.json()["errors"], response.json()
    assert fleet.get("/api/v1/processlist").content == before


# --- paged, filtered lists --------------------------------------------------------------------


def test_pages_walk_every_camera_once_in_order(fleet, onboarded):
    everything = _names(fleet.get("/api/v1/processlist"))
    seen, url, pages = [], "/api/v1/cameras?limit=7&ordering=-name", 0
    while url:
        response = fleet.get(url)
        page = _names(response)
        assert len(page) <= 7 and response.headers["X-Total-Count"] == str(len(everything))
        seen += page
        pages += 1
        link = response.headers.get("Link", "")
        nexts = [part.split(";")[0].strip(" <>") for part in link.split(",") if 'rel="next"' in part]
        url = nexts[0].replace(fleet.base_url, "") if nexts else None
    assert seen == sorted(everything, reverse=True) and pages == -(-len(everything) // 7)
    default = fleet.get("/api/v1/cameras")
    assert _names(default) == sorted(everything)[:100]


def test_camera_filters(fleet, onboarded):
    assert _names(fleet.get(f"/api/v1/cameras?host={OFFLINE}")) == ["sim-0", "sim-1", "sim-2", "sim-3"]
    # status is the status shown: a camera on a host not heard from is offline, unless still queued.
    assert _names(fleet.get("/api/v1/cameras?status=offline")) == ["sim-0", "sim-1", "sim-3"]
    assert _names(fleet.get("/api/v1/cameras?status=pending")) == ["sim-2"]
    assert _names(fleet.get("/api/v1/cameras?status=running&name_prefix=bulk-00")) == [f"bulk-00{i}" for i in range(10)]
    assert _names(fleet.get("/api/v1/cameras?desired_state=stopped")) == ["sim-3"]
    assert _names(fleet.get("/api/v1/cameras?name_prefix=sim-&ordering=-status")) == ["sim-3", "sim-0", "sim-2",
                                                                                       "sim-1"]
    assert _names(fleet.get("/api/v1/cameras?host=no-such-host")) == []


def test_full_list_fast_path_answers_the_serializer_s_bytes(fleet, onboarded):
    """/processlist (rows, one encoding) and /cameras (the serializer that documents the record)."""
    for query in ("", f"host={OFFLINE}", "status=offline", f"host={EDGE}"):
        full_url = "/api/v1/processlist" + (f"?{query}" if query else "")
        paged_url = f"/api/v1/cameras?limit=500{'&' + query if query else ''}"

        def unchanged_meanwhile(full_url=full_url, paged_url=paged_url):
            # The edge host's heartbeats rewrite its cameras every second: compare answers taken
            # while the full list stayed the same.
            before, paged, after = fleet.get(full_url), fleet.get(paged_url), fleet.get(full_url)
            assert before.status_code == paged.status_code == 200
            return (before.content, paged.content) if before.content == after.content else None

        full, paged = wait_until(unchanged_meanwhile, 30, interval=0.1, message="a list that stays still")
        assert full == paged, query
    records = {c["name"]: c for c in fleet.get("/api/v1/processlist").json()}
    assert records["sim-0"]["rtmp_stream_status"] == {"streaming": True, "storing": True}
    assert records["sim-0"]["newer_version"] == "0.0.10" and records["sim-0"]["upgrade_available"] is True
    assert "newer_version" not in records["sim-2"] and records["sim-2"]["stream"] is None
    assert records["sim-1"]["rtmp_endpoint"] == "rtmp://user:***@10.0.0.2/live/***"
    assert records["sim-1"]["logs"] == {"stdout": "caf\u00e9 \u2028", "stderr": None}
    assert "rtmp_endpoint" not in records["sim-0"]
    assert fleet.get("/api/v1/process/sim-1").json() == records["sim-1"]


@pytest.mark.parametrize("path", ["/api/v1/cameras", "/api/v1/hosts", "/api/v1/tasks"])
@pytest.mark.parametrize("query,param", [
    ("limit=501", "limit"), ("limit=0", "limit"), ("limit=ten", "limit"), ("offset=-1", "offset"),
    ("offset=1.5", "offset"), ("colour=red", "colour"), ("ordering=password", "ordering"),
])
def test_bad_list_parameters_are_400_naming_them(fleet, path, query, param):
    response = fleet.get(f"{path}?{query}")
    _assert_error(response, 400, param)
    assert param in response.json()["errors"]


@pytest.mark.parametrize("query,param", [("status=sleeping", "status"), ("desired_state=paused", "desired_state"),
                                         ("name_prefix=UPPER", "name_prefix"), ("name_prefix=0.5", "name_prefix"),
                                         ("host=" + "h" * 64, "host")])
def test_bad_camera_filters_are_400_naming_them(fleet, query, param):
    _assert_error(fleet.get(f"/api/v1/cameras?{query}"), 400, param)


def test_hosts_list_stays_whole_and_pages_on_request(fleet):
    whole = fleet.get("/api/v1/hosts")
    assert [h["name"] for h in whole.json()] == sorted([EDGE, OFFLINE]) and "X-Total-Count" not in whole.headers
    first = fleet.get("/api/v1/hosts?limit=1")
    assert [h["name"] for h in first.json()] == [OFFLINE] and first.headers["X-Total-Count"] == "2"
    assert 'rel="next"' in first.headers["Link"]
    assert [h["name"] for h in fleet.get("/api/v1/hosts?online=false").json()] == [OFFLINE]
    assert [h["name"] for h in fleet.get("/api/v1/hosts?online=true&name_prefix=test-").json()] == [EDGE]
    _assert_error(fleet.get("/api/v1/hosts?online=maybe"), 400, "online")


def test_tasks_list_newest_first_with_filters(fleet, onboarded):
    connects = fleet.get("/api/v1/tasks?kind=connect&state=succeeded&limit=500").json()
    created = [t["created"] for t in connects]
    assert created == sorted(created, reverse=True) and len(connects) >= BULK
    oldest = fleet.get("/api/v1/tasks?kind=connect&ordering=created&limit=1").json()
    assert oldest[0]["created"] == min(created)
    _assert_error(fleet.get("/api/v1/tasks?state=asleep"), 400, "state")


# --- ETag and 304 -----------------------------------------------------------------------------
# On records nothing changes meanwhile: the cameras of the offline host (the edge host's are
# written at each heartbeat) and operations that have ended.


@pytest.mark.parametrize("path", [f"/api/v1/cameras?host={OFFLINE}", f"/api/v1/processlist?host={OFFLINE}",
                                  "/api/v1/process/sim-2", "/api/v1/hosts?online=false", f"/api/v1/hosts/{OFFLINE}",
                                  "/api/v1/tasks?camera=bulk-010"])
def test_lists_and_records_answer_etag_and_304(fleet, onboarded, path):
    first = fleet.get(path)
    etag = first.headers["ETag"]
    again = fleet.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    assert fleet.get(path, headers={"If-None-Match": '"something-else"'}).status_code == 200


def test_etag_changes_when_the_record_changes(fleet, onboarded):
    paths = ["/api/v1/process/sim-2", f"/api/v1/cameras?host={OFFLINE}", "/api/v1/tasks?camera=sim-2"]
    etags = {path: fleet.get(path).headers["ETag"] for path in paths}
    stopped = fleet.post("/api/v1/process/sim-2/stop")  # queued for a host that is not there
    assert stopped.status_code == 202, stopped.text
    for path, etag in etags.items():
        changed = fleet.get(path, headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["ETag"] != etag, path
    assert fleet.camera("sim-2")["desired_state"] == "stopped"
