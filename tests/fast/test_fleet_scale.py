"""The control plane at fleet scale, in process: what a heartbeat costs the database, and where the
live stream facts it carries are served from (Redis, ``processes.live``)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.renderers import JSONRenderer

from edgeproxy.celery import app as celery_app
from processes import outputs, selectors
from processes.models import Camera, Event
from tests.fast.test_cameras import RUNNING, connect, finish
from tests.support.services import free_port, wait_until
from worker.runtimes.base import Observed, Runtime

NAMES = ("cam-1", "cam-2", "cam-3")


def streaming(fps: float, frame_ms: int, state: str = "streaming") -> dict:
    return {"state": state, "fps": fps, "width": 640, "height": 360, "codec": "h264", "last_frame_at": frame_ms,
            "reconnects": 0, "last_error": None, "updated_at": frame_ms, "packets": frame_ms // 40}


def beat(edge, fps: float, frame_ms: int, state: str = "streaming", statements: bool = False) -> list[str]:
    """One heartbeat of edge-a with every camera streaming; the SQL writes it cost (or every statement)."""
    with CaptureQueriesContext(connection) as queries:
        edge.register("edge-a", cameras=[{"name": name, **RUNNING} for name in NAMES],
                      streams={name: streaming(fps, frame_ms, state) for name in NAMES})
    return [q["sql"] for q in queries
            if statements or q["sql"].split(" ", 1)[0] in ("INSERT", "UPDATE", "DELETE")]


@pytest.fixture
def streaming_fleet(api, edge, broker):
    edge.register("edge-a")
    for name in NAMES:
        assert connect(api, name).status_code == 202
        finish(name, observed=RUNNING)
    beat(edge, 25.0, 1_000_000)  # the first observation after the operations is recorded
    return api


def test_a_heartbeat_with_only_live_stream_facts_changed_costs_one_write(streaming_fleet, edge):
    """Three streaming cameras whose fps and last frame move at every beat: the beat writes the
    host's row and nothing else, and every answer shows the new facts (served from Redis)."""
    api = streaming_fleet
    modified = {c.name: c.modified for c in Camera.objects.all()}
    writes = beat(edge, 29.5, 2_000_000)
    assert len(writes) == 1 and writes[0].startswith('UPDATE "processes_edgehost"'), writes
    assert {c.name: c.modified for c in Camera.objects.all()} == modified  # ETags stay
    one = api.get("/api/v1/process/cam-2").json()["stream"]
    assert (one["fps"], one["last_frame_at"]) == (29.5, 2_000_000)
    assert {c["stream"]["fps"] for c in api.get("/api/v1/processlist").json()} == {29.5}
    assert {c["stream"]["last_frame_at"] for c in api.get("/api/v1/cameras?limit=2").json()} == {2_000_000}
    assert b'edgeproxy_camera_fps{camera="cam-1",host="edge-a"} 29.5' in api.get("/metrics").content
    # The same observation again (only live facts moved): the cameras are not even read.
    statements = beat(edge, 30.5, 2_005_000, statements=True)
    assert len(statements) == 2, statements  # the cameras' version, the host's row
    assert {c["stream"]["fps"] for c in api.get("/api/v1/processlist").json()} == {30.5}
    # The full list splices the live facts as stored: the same bytes as the record's serializer.
    edge.register("edge-a", cameras=[{"name": name, **RUNNING} for name in NAMES],
                  streams={"cam-1": {**streaming(1.5, 2_006_000), "last_error": "é \"x\" \u2028", "storing": True}})
    assert outputs.camera_list_json() == JSONRenderer().render(
        [outputs.camera_record(camera) for camera in selectors.cameras()])
    assert api.get("/api/v1/process/cam-1").json()["rtmp_stream_status"] == {"streaming": False, "storing": True}

    # A change of what the stream does (it reconnects) is a change of the record: written.
    writes = beat(edge, 0.0, 2_000_000, state="reconnecting")
    assert sum(w.startswith('UPDATE "processes_camera"') for w in writes) == 3, writes
    assert {c.stream["state"] for c in Camera.objects.all()} == {"reconnecting"}
    assert api.get("/api/v1/process/cam-1").json()["stream"]["state"] == "reconnecting"


def test_without_redis_the_live_facts_are_written_to_the_database(streaming_fleet, edge, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    writes = beat(edge, 12.5, 3_000_000)
    assert sum(w.startswith('UPDATE "processes_camera"') for w in writes) == 3, writes
    assert {c.stream["fps"] for c in Camera.objects.all()} == {12.5}
    monkeypatch.undo()
    assert streaming_fleet.get("/api/v1/process/cam-3").json()["stream"]["fps"] == 12.5


def test_a_reconcile_pass_corrects_only_the_cameras_whose_process_disagrees(api, edge, broker):
    """The pass asks the database for the cameras whose desired state and process disagree (not
    every camera): those, and only those, get a correction."""
    from processes import services
    from processes.models import Operation

    edge.register("edge-a")
    for name in NAMES:
        assert connect(api, name).status_code == 202
        finish(name, observed=RUNNING)
    assert api.post("/api/v1/process/cam-3/stop").status_code == 202
    finish("cam-3", observed=None)
    exited = {**RUNNING, "status": "exited", "state": {"Status": "exited", "Running": False}}
    edge.register("edge-a", cameras=[{"name": "cam-1", **RUNNING}, {"name": "cam-2", **exited},
                                     {"name": "cam-3", **RUNNING}])
    assert services.reconcile_fleet() == 2
    corrections = {op.camera_name: op.progress["action"] for op in Operation.objects.filter(kind="reconcile")}
    assert corrections == {"cam-2": "start", "cam-3": "stop"}
    assert services.reconcile_fleet() == 0  # busy with their corrections


def test_a_removing_status_docker_showed_does_not_stick(api, edge, broker):
    """A container removed by hand can be seen as Docker's "removing" for a moment: the camera must
    show what comes next (found stuck at "removing" with its new container running)."""
    edge.register("edge-a")
    assert connect(api, "cam-1").status_code == 202
    finish("cam-1", observed=RUNNING)
    removing = {**RUNNING, "status": "removing", "state": {"Status": "removing", "Running": False}}
    edge.register("edge-a", cameras=[{"name": "cam-1", **removing}])
    assert api.get("/api/v1/process/cam-1").json()["status"] == "removing"
    edge.register("edge-a", cameras=[{"name": "cam-1", **RUNNING}])
    assert api.get("/api/v1/process/cam-1").json()["status"] == "running"


def test_quiet_heartbeats_are_recorded_together_and_a_changed_one_in_full(streaming_fleet, edge, settings,
                                                                          broker_redis):
    """The control worker gathers quiet beats (only live facts moved) and records them with one read
    and one write for all of them; a beat whose host's cameras changed meanwhile is recorded in full."""
    from datetime import timedelta

    from django.utils import timezone

    from edgeproxy.contracts import tasks as messages
    from processes import services, tasks
    from processes.models import EdgeHost

    settings.EDGEPROXY_HEARTBEAT_BATCH_SECONDS = 3600  # flushed by the test, not the worker's thread
    settings.EDGEPROXY_HEARTBEAT_SECONDS = 5 * 3600  # (the window is at most a fifth of the interval)
    beat(edge, 25.0, 1_500_000)  # the same observation as the fixture's last: quiet from now on
    for name in ("edge-b", "edge-c"):
        edge.register(name)
        edge.register(name)
    reports = {host: {"queue": f"host.{host}", "runtime": "docker", "facts": {"cpus": 2},
                      "frames_address": "127.0.0.1:1", "public_key": "", "cameras": [], "streams": {},
                      "observed_at": int(time.time() * 1000)} for host in ("edge-b", "edge-c")}
    for host in reports:  # (their own report, as register sent it), through the heartbeat queue as edges send it
        reports[host]["public_key"] = EdgeHost.objects.get(name=host).public_key
        message = messages.HostHeartbeat(host=host, report=reports[host])
        celery_app.send_task(message.task, kwargs=message.kwargs(), queue=message.queue)
    assert tasks.consume_heartbeats(broker_redis.client()) == 2
    long_ago = timezone.now() - timedelta(hours=1)
    EdgeHost.objects.update(last_heartbeat=long_ago)
    a_report = {"queue": "host.edge-a", "runtime": "docker", "facts": {"cpus": 2}, "frames_address": "127.0.0.1:1",
                "public_key": EdgeHost.objects.get(name="edge-a").public_key,
                "cameras": [{"name": name, **RUNNING} for name in NAMES],
                "streams": {name: streaming(31.5, 4_000_000) for name in NAMES}, "observed_at": int(time.time() * 1000)}
    with CaptureQueriesContext(connection) as queries:
        for host, report in (("edge-a", a_report), *reports.items()):
            services.absorb_heartbeat(host, report)
    assert not queries.captured_queries  # gathered, not written yet
    with CaptureQueriesContext(connection) as queries:
        assert services.flush_quiet_heartbeats() == 3
    assert [q["sql"].split(" ", 1)[0] for q in queries] == ["SELECT", "UPDATE"], queries.captured_queries
    assert all(host.last_heartbeat > long_ago for host in EdgeHost.objects.all())
    assert streaming_fleet.get("/api/v1/process/cam-1").json()["stream"]["fps"] == 31.5

    # A camera of edge-a stopped meanwhile: its next quiet beat is recorded in full.
    assert streaming_fleet.post("/api/v1/process/cam-3/stop").status_code == 202
    finish("cam-3", observed=None)
    services.absorb_heartbeat("edge-a", {**a_report, "observed_at": int(time.time() * 1000)})
    services.flush_quiet_heartbeats()
    assert streaming_fleet.get("/api/v1/process/cam-3").json()["status"] == "running"  # as observed since
    assert services.flush_quiet_heartbeats() == 0


# --- the full list and the connect at fleet scale ----------------------------------------------


def _listed(api) -> tuple[dict, bool]:
    """GET /processlist: its records by name, and whether it read the cameras' rows."""
    with CaptureQueriesContext(connection) as queries:
        response = api.get("/api/v1/processlist")
    assert response.status_code == 200
    read_rows = any('"rtsp_endpoint_masked"' in q["sql"] for q in queries)
    return {c["name"]: c for c in response.json()}, read_rows


def test_the_full_list_keeps_its_records_while_no_camera_row_changes_and_shows_every_change(streaming_fleet, edge):
    """On PostgreSQL the records' stored part is kept while the camera rows and their last operations
    stay as they were: a beat that moves only live facts keeps it (and its facts show), and any write
    shows at the next call, even one that leaves ``modified`` alone, or a host that goes offline."""
    from processes.models import EdgeHost
    from tests.fast.conftest import make_offline

    api = streaming_fleet
    kept = connection.vendor == "postgresql"  # (other databases: built at every call)
    _listed(api)
    beat(edge, 31.5, 4_000_000)  # only live facts moved
    records, read_rows = _listed(api)
    assert read_rows is not kept
    assert {c["stream"]["fps"] for c in records.values()} == {31.5}

    Camera.objects.filter(name="cam-2").update(desired_state="stopped")  # (no save(): modified stays)
    records, read_rows = _listed(api)
    assert read_rows and records["cam-2"]["desired_state"] == "stopped"
    assert _listed(api)[1] is not kept

    assert connect(api, "cam-4").status_code == 202
    assert _listed(api)[0]["cam-4"]["operation"]["state"] == "pending"
    finish("cam-4", observed=RUNNING)  # the operation's row and the camera's
    records = _listed(api)[0]
    assert records["cam-4"]["operation"]["state"] == "succeeded" and records["cam-4"]["status"] == "running"
    api.delete("/api/v1/process/cam-4")
    finish("cam-4", removed=True)
    assert "cam-4" not in _listed(api)[0]

    make_offline(EdgeHost.objects.get(name="edge-a"))
    assert {c["status"] for c in _listed(api)[0].values()} == {"offline"}
    assert outputs.camera_list_json() == JSONRenderer().render(
        [outputs.camera_record(camera) for camera in selectors.cameras()])


def test_the_full_list_etag_moves_with_its_bytes_live_facts_included(streaming_fleet, edge):
    """``GET /processlist`` answers 304 to its own ETag while its bytes stay the same, and a new ETag
    when they change: a beat that moves only live facts (Redis), or a change of a camera's row."""
    api = streaming_fleet

    def listed(etag: str | None = None):
        return api.get("/api/v1/processlist", **({"HTTP_IF_NONE_MATCH": etag} if etag else {}))

    first = listed()
    etag = first["ETag"]
    again = listed(etag)
    assert again.status_code == 304 and again["ETag"] == etag
    beat(edge, 33.5, 5_000_000)  # only live facts moved
    moved = listed(etag)
    assert moved.status_code == 200 and moved["ETag"] != etag and {c["stream"]["fps"] for c in moved.json()} == {33.5}
    assert listed(moved["ETag"]).status_code == 304
    Camera.objects.filter(name="cam-1").update(desired_state="stopped")
    changed = listed(moved["ETag"])
    assert changed.status_code == 200 and changed["ETag"] not in (etag, moved["ETag"])
    assert {c["name"]: c["desired_state"] for c in changed.json()}["cam-1"] == "stopped"

def test_a_connect_writes_its_camera_and_operation_in_two_inserts(api, edge, broker):
    """One transaction of two inserts: no lock of the new row, no update of it. Before it, two reads:
    the token (with whether its user may change things) and the host (with the fleet settings' image)."""
    from settings_app.models import EdgeSettings

    edge.register("edge-a")
    EdgeSettings.objects.update_or_create(name="default", defaults={"camera_image": "edgeproxy/camera:9.9.9"})
    with CaptureQueriesContext(connection) as queries:
        response = connect(api, "cam-lean", host="edge-a")
    assert response.status_code == 202, response.content
    writes = [q["sql"].split(" ", 3)[:3] for q in queries
              if q["sql"].split(" ", 1)[0] in ("INSERT", "UPDATE", "DELETE")]
    assert writes == [["INSERT", "INTO", '"processes_camera"'], ["INSERT", "INTO", '"processes_operation"']], writes
    reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT")]
    assert len(reads) == 2 and "knox_authtoken" in reads[0] and "processes_edgehost" in reads[1], reads
    assert not any("FOR UPDATE" in q["sql"] for q in queries)
    assert response.json()["image_tag"] == "edgeproxy/camera:9.9.9"
    camera = Camera.objects.select_related("last_operation").get(name="cam-lean")
    assert str(camera.last_operation_id) == response.json()["operation"]["id"]
    assert camera.last_operation.camera_id == camera.id and camera.last_operation.kind == "connect"
    assert [m.id for m in broker.host_messages("edge-a")] == [response.json()["operation"]["id"]]
    again = connect(api, "cam-lean", host="edge-a")
    assert again.status_code == 409 and again.json()["errors"] == {"name": ["already exists"]}


def test_the_result_of_a_connect_locks_and_reads_its_camera_and_operation_once_each(api, edge, broker):
    """The result a ``?wait=`` waits for: its transaction reads the camera (locked, with its host) and the
    operation (locked, with its host) once each, then writes them and their events; no other read."""
    edge.register("edge-a")
    from processes import services

    operation_id = connect(api, "cam-result", host="edge-a").json()["operation"]["id"]
    with CaptureQueriesContext(connection) as queries:
        services.record_operation_result(operation_id, True, observed=RUNNING, with_record=True)
    reads = [q["sql"] for q in queries if q["sql"].startswith("SELECT")]
    locks = connection.features.has_select_for_update  # (not SQLite)
    assert len(reads) == 2 and all(("FOR UPDATE" in sql) is locks for sql in reads), reads
    assert '"processes_camera"' in reads[0].split(" FROM ", 1)[1][:20] and "processes_edgehost" in reads[0]
    assert '"processes_operation"' in reads[1].split(" FROM ", 1)[1][:24] and "processes_edgehost" in reads[1]
    record = api.get("/api/v1/process/cam-result").json()
    assert record["status"] == "running" and record["operation"]["state"] == "succeeded"
    finished = Event.objects.filter(camera="cam-result", type="operation.finished").get()
    assert finished.host == "edge-a" and finished.data["state"] == "succeeded"


def test_the_end_of_a_result_carries_the_record_a_waiting_request_answers(api, edge, broker_redis,
                                                                           django_capture_on_commit_callbacks):
    """A ``?wait=`` after the edge's work: the announcement of the result's end carries the camera
    record as committed (the answer GET gives), and the waiting request takes it with no look at the
    database; an end announced without it (failed by the control plane) still makes it look."""
    import orjson

    from processes import live, services

    edge.register("edge-a")
    operation_id = connect(api, "cam-told", host="edge-a").json()["operation"]["id"]
    pubsub = broker_redis.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{live.ENDED_CHANNEL}{operation_id}")
    try:
        assert pubsub.get_message(timeout=1) is None  # (its subscription's confirmation)
        with django_capture_on_commit_callbacks(execute=True):
            services.record_operation_result(operation_id, True, observed=RUNNING, with_record=True)
        message = pubsub.get_message(timeout=5)
        assert message is not None and message["data"] != live.ENDED
        assert orjson.loads(message["data"]) == api.get("/api/v1/process/cam-told").json()
    finally:
        pubsub.close()
    channel = f"{live.ENDED_CHANNEL}{operation_id}"

    def listeners() -> int:
        return broker_redis.client().pubsub_numsub(channel)[0][1]

    # (Redis drops a closed subscriber when it sees its connection end, not at once)
    wait_until(lambda: listeners() == 0, 10, message="no one listening")
    made: list[int] = []
    live.announce_end(operation_id, lambda: made.append(1) or b"{}")
    assert made == []  # no one waits: no record is made

    looks = []

    def look():
        looks.append(1)
        return selectors.operation_by_id(operation_id) if len(looks) > 1 else type("Active", (), {"state": "running"})

    def announce(answer: bytes | None) -> None:
        wait_until(lambda: listeners() > 0, 10, message="the waiter listening")
        live.announce_end(operation_id, lambda: answer)

    taken_answers: list[bytes] = []

    def take(data: bytes) -> bool:
        taken_answers.append(data)
        return True

    for answer, taken in ((message["data"], True), (None, False)):
        looks.clear()
        taken_answers.clear()
        wait_until(lambda: listeners() == 0, 10, message="the previous waiter gone")
        announcer = threading.Thread(target=announce, args=(answer,))
        announcer.start()
        op = services.wait_for_operation(operation_id, 10, look, take)
        announcer.join()
        assert (op is None, len(looks), taken_answers) == ((True, 1, [answer]) if taken else (False, 2, []))

def test_a_heartbeat_backlog_far_behind_is_a_gauge_and_degrades_healthz(api, edge, broker, broker_redis, settings):
    """Heartbeats nobody records pile up in their queue: /metrics counts them, and /healthz says degraded
    once they are more than two per host (ok again when the queue is drained)."""
    from edgeproxy import liveness
    from edgeproxy.contracts.tasks import HEARTBEAT_QUEUE

    settings.CELERY_BROKER_URL = broker_redis.url
    edge.register("edge-a")
    redis_client = broker_redis.client()
    redis_client.zadd(liveness.SEEN_KEY, {"control@test": time.time()})  # a control worker is alive

    def health():
        response = api.get("/healthz")
        assert response.status_code == 200
        return response.json()["status"], response.json()["checks"]["heartbeat_backlog"]

    assert health() == ("ok", 0)
    redis_client.lpush(HEARTBEAT_QUEUE, *[b"{}"] * 2)  # two beats of the one host: not far behind
    assert health() == ("ok", 2)
    assert b"edgeproxy_heartbeat_backlog 2.0" in api.get("/metrics").content
    redis_client.lpush(HEARTBEAT_QUEUE, b"{}")
    assert health() == ("degraded", 3)
    redis_client.delete(HEARTBEAT_QUEUE)
    assert health() == ("ok", 0)


def test_beats_that_leave_out_unchanged_logs_or_repeat_them_stay_quiet(streaming_fleet, settings):
    """An edge sends every camera's logs every tenth beat and leaves out, in between, those that did not
    change: once the control plane has stored them, neither kind of beat reads the host's cameras (before,
    the beat after each complete one was recorded in full: one beat in five). New logs are recorded at once."""
    from processes import services
    from processes.models import EdgeHost

    settings.EDGEPROXY_HEARTBEAT_BATCH_SECONDS = 3600  # flushed by the test, not the worker's thread
    settings.EDGEPROXY_HEARTBEAT_SECONDS = 5 * 3600
    public_key = EdgeHost.objects.get(name="edge-a").public_key
    logs = {"stdout": "hello", "stderr": None}
    without_logs = {key: value for key, value in RUNNING.items() if key != "logs"}

    def report(with_logs: bool, fps: float) -> dict:
        return {"queue": "host.edge-a", "runtime": "docker", "facts": {"cpus": 2}, "frames_address": "127.0.0.1:1",
                "public_key": public_key, "observed_at": int(time.time() * 1000),
                "cameras": [{"name": name, **without_logs, **({"logs": logs} if with_logs else {})} for name in NAMES],
                "streams": {name: streaming(fps, 5_000_000) for name in NAMES}}

    services.record_heartbeat("edge-a", report(True, 20.0))  # the logs change: written
    services.record_heartbeat("edge-a", report(True, 20.5))  # the same again: quiet from now on
    for with_logs in (False, True, False, True):
        with CaptureQueriesContext(connection) as queries:
            services.absorb_heartbeat("edge-a", report(with_logs, 21.0))
        assert not queries.captured_queries, (with_logs, queries.captured_queries)
        assert services.flush_quiet_heartbeats() == 1
    assert streaming_fleet.get("/api/v1/process/cam-2").json()["stream"]["fps"] == 21.0

    changed = report(False, 22.0)
    changed["cameras"][0]["logs"] = {"stdout": "hello\nworld", "stderr": None}
    services.absorb_heartbeat("edge-a", changed)
    assert Camera.objects.get(name="cam-1").logs["stdout"] == "hello\nworld"


class _InMemoryContainers(Runtime):
    """An edge's camera processes as dictionary entries: the edge's report is the subject here."""

    name = "memory"

    def __init__(self, host: str):
        super().__init__(host)
        self.cameras: dict[str, Observed] = {}
        self.image_list: list[dict] = []

    def observe_all(self, with_logs: bool = False) -> list[Observed]:
        return list(self.cameras.values())

    def images(self) -> list[dict]:
        return self.image_list

    def facts(self) -> dict:
        return {"cpus": 2}

    def observe(self, name, with_logs=True):
        return self.cameras.get(name)

    def ensure_running(self, spec):
        raise NotImplementedError  # (no operation in these tests)

    stop = remove = ensure_running


def test_an_edges_fingerprinted_beats_stay_quiet_and_every_change_is_recorded_on_the_next(
        streaming_fleet, broker, broker_redis, settings, tmp_path):
    """A real edge agent fingerprints its report as sent (``contracts.heartbeats``): the control plane
    compares that instead of hashing the report, so a repeated beat reads nothing, and a beat from an
    older edge (no fingerprint, or not one) is fingerprinted here the same. A changed state, logs or
    image inventory changes the fingerprint: recorded at once."""
    from edgeproxy.contracts import heartbeats
    from edgeproxy.contracts import tasks as messages
    from edgeproxy.contracts.tasks import HEARTBEAT_QUEUE
    from processes import services, tasks
    from processes.models import EdgeHost
    from worker.edge import EdgeAgent

    settings.STATE_DIR = str(tmp_path)
    settings.FRAMES_REDIS_URL = broker_redis.url
    settings.EDGEPROXY_HEARTBEAT_BATCH_SECONDS = 3600  # flushed by the test, not the worker's thread
    settings.EDGEPROXY_HEARTBEAT_SECONDS = 5 * 3600
    runtime = _InMemoryContainers("edge-a")
    for name in NAMES:
        runtime.cameras[name] = Observed(name, name, "c0ffee", "running", dict(RUNNING["state"]), "cam:1",
                                         dict(RUNNING["logs"]))
    agent = EdgeAgent("edge-a", runtime=runtime)

    def sent_beat() -> dict:
        """The agent's next beat, as it arrived on the heartbeat queue."""
        agent.heartbeat()
        (message,) = broker.messages(HEARTBEAT_QUEUE)
        broker.redis.delete(HEARTBEAT_QUEUE)
        return message.kwargs["report"]

    def absorbed(report: dict) -> list[str]:
        """The beat absorbed: the SQL it cost at once."""
        with CaptureQueriesContext(connection) as queries:
            services.absorb_heartbeat("edge-a", report)
        return [q["sql"] for q in queries]

    full = sent_beat()  # the first of ten carries every camera's logs
    assert full["fingerprint"] == heartbeats.fingerprint(full)  # what the edge sent is what it fingerprinted
    assert set(full["fingerprint"]["logs"]) == set(NAMES)
    assert absorbed(full)  # (its own key, no stream facts: recorded)
    assert absorbed(full)  # the same again: nothing changes, quiet from now on
    for _ in range(2):  # logs left out, as unchanged
        report = sent_beat()
        assert report["fingerprint"]["stable"] == full["fingerprint"]["stable"]
        assert report["fingerprint"]["logs"] == {} and all("logs" not in c for c in report["cameras"])
        assert absorbed(report) == []  # not even the cameras' version read
    older = {key: value for key, value in report.items() if key != "fingerprint"}
    assert absorbed(older) == []  # an older edge's beat: fingerprinted here, the same
    assert absorbed({**report, "fingerprint": "not one"}) == []
    # Through the queue, a batch: the quiet beat is gathered; another host's beat that is no report
    # is dropped alone.
    agent.heartbeat()
    bad = messages.HostHeartbeat(host="edge-z", report=["not", "a", "report"])
    celery_app.send_task(bad.task, kwargs=bad.kwargs(), queue=bad.queue)
    assert tasks.consume_heartbeats(broker_redis.client()) == 1
    assert services.flush_quiet_heartbeats() == 1

    runtime.cameras["cam-1"].status = "exited"
    runtime.cameras["cam-1"].state = {"Status": "exited", "Running": False, "ExitCode": 1}
    report = sent_beat()
    assert report["fingerprint"]["stable"] != full["fingerprint"]["stable"]
    assert absorbed(report)
    assert streaming_fleet.get("/api/v1/process/cam-1").json()["status"] == "exited"

    runtime.cameras["cam-2"].logs = {"stdout": "bmV3IGxpbmU=", "stderr": None}  # only cam-2's logs travel
    report = sent_beat()
    assert set(report["fingerprint"]["logs"]) == {"cam-2"}
    assert absorbed(report)
    assert Camera.objects.get(name="cam-2").logs["stdout"] == "bmV3IGxpbmU="

    runtime.image_list = [{"repository": "cam", "tag": "2", "id": "sha256:" + "2" * 64}]
    report = sent_beat()
    assert absorbed(report)
    assert EdgeHost.objects.get(name="edge-a").images == runtime.image_list
    assert absorbed(sent_beat()) == []  # and quiet again
