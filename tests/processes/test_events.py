"""Events out (issue 17), black-box: a real system, Debian's Mosquitto, a real HTTP receiver and a
real RTSP camera. One system for the module; the receiver outage (60 s) and the broker outage
(30 s) run at the same time."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt
import pytest

from edgeproxy.contracts import events as contract
from tests.support.services import Process, RedisServer, RtspCamera, free_port, wait_port, wait_until
from tests.support.system import System, fresh_database_url

RTSP_USER, RTSP_PASSWORD = "viewer", "Rtsp-S3cret-pw"
MQTT_USER, MQTT_PASSWORD = "edgeproxy", "Mqtt-S3cret-pw"
WEBHOOK_SECRET = "Webhook-S3cret-" + "x" * 20
RECEIVER_ADDRESS = "127.0.0.2"  # the one network allowed (EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS)
SECRETS = (RTSP_PASSWORD, MQTT_PASSWORD, WEBHOOK_SECRET)
PREFIX = "edgeproxy"


class Mosquitto:
    """Debian's broker on its own port, with a password and persistence (sessions survive a restart)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        passwords = workdir / "passwords"
        passwords.write_text("")
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), MQTT_USER, MQTT_PASSWORD], check=True)
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), "tester", "tester-pw"], check=True)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
                               f"persistence true\npersistence_location {workdir}/\n"
                               f"log_dest file {workdir}/mosquitto.log\n"  # flushed at each line, unlike stdout
                               "user root\n")  # root here: the files are ours, not user mosquitto's
        self.process: Process | None = None
        self.start()

    def start(self):
        self.process = Process(["mosquitto", "-c", str(self.config)], self.workdir / "mosquitto.out")
        wait_port(self.port, 10)

    def stop(self):
        if self.process:
            self.process.stop()


class Receiver:
    """An HTTP receiver: answers 500 while ``failing``, else 200, and keeps what it accepted."""

    def __init__(self, address: str):
        self.accepted: list[tuple[float, dict, bytes]] = []
        self.calls = 0
        self.failing = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.calls += 1
                if receiver.failing:
                    self.send_response(500)
                else:
                    receiver.accepted.append((time.time(), dict(self.headers), body))
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, _, body in self.accepted]


class Subscriber:
    """An MQTT client of the test: every message, with its arrival time (persistent session, QoS 1)."""

    def __init__(self, port: int):
        self.messages: list[tuple[float, str, bytes, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="events-test", clean_session=False)
        self.client.username_pw_set("tester", "tester-pw")
        self.client.on_connect = lambda c, *_: c.subscribe([(f"{PREFIX}/#", 1), ("homeassistant/#", 1)])
        self.client.on_message = lambda c, u, m: self.messages.append((time.time(), m.topic, m.payload, m.retain))
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def events(self) -> list[dict]:
        return [json.loads(p) for _, t, p, _ in self.messages if "/events/" in t]

    def retained(self, topic: str):
        found = [p.decode() for _, t, p, _ in self.messages if t == topic]
        return found[-1] if found else None


@pytest.fixture(scope="module")
def events_system(artifacts):
    work = artifacts / "events"
    redis = RedisServer(work / "redis")
    broker = Mosquitto(work / "mosquitto")
    receiver = Receiver(RECEIVER_ADDRESS)
    refused = Receiver("127.0.0.1")
    camera = RtspCamera(work, user=RTSP_USER, password=RTSP_PASSWORD)
    subscriber = Subscriber(broker.port)
    system = System(work / "system", redis.url, fresh_database_url("edgeproxy_it_events"), runtime="local",
                    heartbeat=0.5, extra_env={
                        "EDGEPROXY_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}",
                        "EDGEPROXY_MQTT_USERNAME": MQTT_USER,
                        "EDGEPROXY_MQTT_PASSWORD": MQTT_PASSWORD,
                        "EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS": f"{RECEIVER_ADDRESS}/32",
                        "EDGEPROXY_WEBHOOK_RETRY_SECONDS": "0.2",
                        "EDGEPROXY_WEBHOOK_RETRY_MAX_SECONDS": "2",
                        "EDGEPROXY_EVENTS_POLL_SECONDS": "0.1",
                    })
    import sys

    system._start("events", [sys.executable, "manage.py", "events_relay"])
    system._start("webhooks", [sys.executable, "-m", "celery", "-A", "edgeproxy.celery", "worker", "--queues",
                               "webhooks", "--pool", "threads", "--concurrency", "4", "--hostname", "webhooks@%h",
                               "--without-mingle", "--without-gossip", "--loglevel", "INFO"])
    try:
        system.start_edge("edge-ev")
        yield system, broker, receiver, refused, camera, subscriber
    finally:
        subscriber.client.loop_stop()
        system.stop()
        camera.stop()
        broker.stop()
        redis.stop()
        receiver.server.shutdown()
        refused.server.shutdown()
    assert "Traceback" not in system.logs()


def test_webhook_input_is_checked_and_the_secret_never_shown(events_system):
    system = events_system[0]
    good = f"http://{RECEIVER_ADDRESS}:1/hook"
    for body, field in (({"url": "ftp://example.com/x"}, "url"), ({"url": "http://example.com/" + "a" * 2100}, "url"),
                        ({"url": "https://user:pw@example.com/x"}, "url"), ({"url": "http://10.1.2.3/x"}, "url"),
                        ({"url": "http://127.0.0.1:9/x"}, "url"), ({"url": "http://[::1]:9/x"}, "url"),
                        ({"url": good, "event_types": ["camera.status", "camera.exploded"]}, "event_types"),
                        ({"url": good, "secret": "short"}, "secret")):
        answer = system.post("/api/v1/webhooks", body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["code"] == 400 and field in answer.json()["message"], answer.json()
        assert field in answer.json().get("errors", {}), answer.json()
    unknown = system.post("/api/v1/webhooks", {"url": good, "event_types": ["nope"]}).json()["message"]
    assert all(t in unknown for t in contract.EVENT_TYPES), unknown
    assert system.get("/api/v1/webhooks").json() == []  # nothing stored by a refusal
    created = system.post("/api/v1/webhooks", {"url": good, "secret": WEBHOOK_SECRET, "enabled": False})
    assert created.status_code == 201 and created.json()["secret"] == WEBHOOK_SECRET
    hook = created.json()["id"]
    assert WEBHOOK_SECRET not in system.get(f"/api/v1/webhooks/{hook}").text
    assert WEBHOOK_SECRET not in system.get("/api/v1/webhooks").text
    assert system.request("PATCH", f"/api/v1/webhooks/{hook}", json={"url": "gopher://x"}).status_code == 400
    assert system.get(f"/api/v1/webhooks/{hook}").json()["url"] == good
    assert system.delete(f"/api/v1/webhooks/{hook}").status_code == 204
    assert system.get(f"/api/v1/webhooks/{hook}").status_code == 404
    assert system.sql("select count(*) from processes_webhook where secret_encrypted like %s",
                      (f"%{WEBHOOK_SECRET}%",)) == [(0,)]


def _statuses(events: list[dict], camera: str) -> list[str]:
    return [e["data"]["status"] for e in events if e["type"] == "camera.status" and e["camera"] == camera]


def _delivered_within(received: list[tuple[float, dict]], status: str, after_id: int, seconds: float) -> float:
    """Seconds from the recorded change (the event's time) to its arrival, for the first such event."""
    from datetime import datetime

    for arrived, event in received:
        if event["type"] == "camera.status" and event["data"]["status"] == status and event["id"] > after_id:
            delay = arrived - datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
            assert delay <= seconds, f"{status} arrived {delay:.2f} s after the change"
            return delay
    raise AssertionError(f"no {status} event after {after_id}")


def test_camera_events_reach_webhook_and_mqtt_in_order_through_outages(events_system):
    system, broker, receiver, refused, camera, subscriber = events_system
    first = _last_outbox_id(system) + 1  # the webhooks get the events recorded from now on
    hook = system.post("/api/v1/webhooks", {"url": f"http://{RECEIVER_ADDRESS}:{receiver.port}/hook",
                                            "secret": WEBHOOK_SECRET}).json()
    refused_hook = system.post("/api/v1/webhooks", {"url": f"http://localhost:{refused.port}/hook",
                                                    "secret": WEBHOOK_SECRET}).json()
    assert "id" in refused_hook, refused_hook  # a name: checked at delivery, on what it resolves to
    name = "ev-cam"
    created = system.post("/api/v1/process?wait=30", {"name": name, "rtsp_endpoint": camera.url()})
    assert created.status_code in (200, 201), created.text

    def webhook_statuses():
        return _statuses(receiver.events(), name)

    def mqtt_statuses():
        return _statuses(subscriber.events(), name)

    wait_until(lambda: "streaming" in webhook_statuses() and "streaming" in mqtt_statuses(), 30,
               message="streaming on both paths")

    # The source goes away and comes back, both paths up: each change arrives within 2 s.
    last_id = max(e["id"] for e in receiver.events())
    camera.stop()
    wait_until(lambda: "reconnecting" in webhook_statuses() and "reconnecting" in mqtt_statuses(), 20,
               message="reconnecting on both paths")
    camera.start()
    wait_until(lambda: webhook_statuses()[-1] == "streaming" and mqtt_statuses()[-1] == "streaming", 30,
               message="streaming again on both paths")
    hooked = [(t, json.loads(b)) for t, _, b in receiver.accepted]
    published = [(t, json.loads(p)) for t, topic, p, _ in subscriber.messages if "/events/" in topic]
    for received in (hooked, published):
        _delivered_within(received, "reconnecting", last_id, 2.0)
        _delivered_within(received, "streaming", last_id, 2.0)
    assert webhook_statuses()[-2:] == ["reconnecting", "streaming"]
    assert mqtt_statuses()[-2:] == ["reconnecting", "streaming"]

    # Recording switched on where the host cannot record (no EDGEPROXY_RECORDINGS_DIR): the camera's
    # recording problem appears; switched off, it clears. One event each, on both paths.
    def problems(events: list[dict]) -> list[tuple[str, str | None]]:
        return [(e["data"]["state"], e["data"]["problem"]) for e in events
                if e["type"] == "camera.recording_problem" and e["camera"] == name]

    recording = f"/api/v1/process/{name}/recording?wait=30"
    assert system.request("PUT", recording, json={"enabled": True}).status_code == 200
    wait_until(lambda: problems(receiver.events()) and problems(subscriber.events()), 15,
               message="recording problem on both paths")
    assert system.request("PUT", recording, json={"enabled": False}).status_code == 200
    wait_until(lambda: len(problems(receiver.events())) == 2 and len(problems(subscriber.events())) == 2, 15,
               message="recording problem cleared on both paths")
    for events in (receiver.events(), subscriber.events()):
        [(started, problem), cleared] = problems(events)
        assert started == "started" and "not available on this host" in problem and cleared == ("cleared", None)
    assert [t for _, t, _, _ in subscriber.messages if t.endswith("/camera.recording_problem")] == [
        f"{PREFIX}/hosts/edge-ev/cameras/{name}/events/camera.recording_problem"] * 2

    # The receiver answers 500 for a minute and the broker is away for 30 s, meanwhile the camera
    # loses its source, is stopped and started again.
    receiver.failing = True
    broker.stop()
    outage = time.monotonic()
    mark = _last_outbox_id(system)
    camera.stop()
    wait_until(lambda: _outbox_has(system, name, "reconnecting", mark), 20, message="reconnecting recorded")
    camera.start()
    assert system.post(f"/api/v1/process/{name}/stop?wait=30").status_code == 200
    assert system.post(f"/api/v1/process/{name}/start?wait=30").status_code == 200
    wait_until(lambda: _outbox_has(system, name, "streaming", _last_outbox_id(system, "operation.finished")), 30,
               message="streaming again recorded")
    time.sleep(max(0.0, 30 - (time.monotonic() - outage)))  # the outage's length is the scenario, not a wait
    broker.start()
    time.sleep(max(0.0, 60 - (time.monotonic() - outage)))
    receiver.failing = False

    outbox = [row[0] for row in system.sql("select id from processes_event where id >= %s order by id", (first,))]
    wait_until(lambda: [e["id"] for e in receiver.events()] == outbox, 30, message="every event delivered")
    wait_until(lambda: {e["id"] for e in subscriber.events()} >= set(outbox), 30, message="every event published")

    # Every event, exactly once and in order on the webhook; per camera in order on MQTT.
    delivered = receiver.events()
    assert [e["id"] for e in delivered] == outbox
    mqtt_ids = [e["id"] for e in subscriber.events() if e["camera"] == name]
    assert sorted(set(mqtt_ids)) == [i for i in dict.fromkeys(mqtt_ids)]
    assert webhook_statuses()[-1] == "streaming"
    assert {"operation.finished", "camera.status"} <= {e["type"] for e in delivered}
    assert "host.online" in {e["type"] for e in subscriber.events()}
    finished = [e for e in delivered if e["type"] == "operation.finished"]
    assert {e["data"]["kind"] for e in finished} >= {"connect", "recording", "stop", "start"}
    assert all(e["data"]["state"] == "succeeded" for e in finished)

    # Signatures verify (HMAC-SHA256 of timestamp.body), timestamps are recent.
    for arrived, headers, body in receiver.accepted:
        timestamp = int(headers[contract.TIMESTAMP_HEADER])
        assert contract.signature_valid(WEBHOOK_SECRET, timestamp, body, headers[contract.SIGNATURE_HEADER], arrived)
        assert not contract.signature_valid("another-secret-of-16+", timestamp, body,
                                            headers[contract.SIGNATURE_HEADER], arrived)

    # Retained availability and Home Assistant discovery.
    wait_until(lambda: subscriber.retained(f"{PREFIX}/hosts/edge-ev/cameras/{name}/status") == "streaming", 10,
               message="retained camera status")
    assert subscriber.retained(f"{PREFIX}/hosts/edge-ev/status") == "online"
    config = json.loads(subscriber.retained("homeassistant/sensor/edgeproxy_ev_cam/status/config"))
    assert config["state_topic"] == f"{PREFIX}/hosts/edge-ev/cameras/{name}/status"
    assert config["device"]["name"] == name

    # The delivery log says what happened; the refused webhook was never called.
    log = system.get(f"/api/v1/webhooks/{hook['id']}/deliveries?limit=1000").json()
    assert all(d["state"] == "delivered" for d in log) and max(d["attempts"] for d in log) > 1
    assert any(d["last_error"] == "HTTP 500" for d in log)
    refused_log = system.get(f"/api/v1/webhooks/{refused_hook['id']}/deliveries").json()
    assert refused_log and all(d["state"] == "pending" for d in refused_log)
    oldest = min(refused_log, key=lambda d: d["event_id"])  # the one tried (the others wait behind it, in order)
    assert oldest["attempts"] > 1 and "refused address" in oldest["last_error"], oldest
    assert refused.calls == 0

    # /metrics counts this webhook's deliveries (the webhook label parsed as a UUID: one id, however written).
    def delivered_counted() -> float:
        from prometheus_client.parser import text_string_to_metric_families

        return sum(sample.value for family in text_string_to_metric_families(system.get("/metrics").text)
                   if family.name == "edgeproxy_webhook_deliveries" for sample in family.samples
                   if sample.labels.get("state") == "delivered"
                   and uuid.UUID(sample.labels.get("webhook", "0" * 32)) == uuid.UUID(hook["id"]))

    wait_until(lambda: delivered_counted() >= len(outbox), 15, message="metrics count the deliveries")
    assert "edgeproxy_webhook_failed_attempts" in system.get("/metrics").text

    # The host falls silent: host.offline and the camera offline, on both paths.
    system.stop_edge("edge-ev")
    wait_until(lambda: "host.offline" in [e["type"] for e in receiver.events()], 15, message="host.offline")
    wait_until(lambda: mqtt_statuses()[-1] == "offline" and webhook_statuses()[-1] == "offline", 10,
               message="camera offline")
    wait_until(lambda: subscriber.retained(f"{PREFIX}/hosts/edge-ev/status") == "offline", 10,
               message="retained host offline")

    # No secret anywhere: payloads, topics, logs.
    everything = [b.decode() for _, _, b in receiver.accepted]
    everything += [t + p.decode(errors="replace") for _, t, p, _ in subscriber.messages]
    everything += [system.logs(), (broker.workdir / "mosquitto.log").read_text()]
    for text in everything:
        for secret in SECRETS:
            assert secret not in text


def test_a_second_relay_does_not_knock_the_first_off_the_broker(events_system, settings):
    """Each relay's publisher has its own MQTT client id: the broker lets both connections live."""
    from processes.events import mqtt as publisher

    broker = events_system[1]
    settings.EDGEPROXY_MQTT_URL = f"mqtt://127.0.0.1:{broker.port}"
    settings.EDGEPROXY_MQTT_USERNAME, settings.EDGEPROXY_MQTT_PASSWORD = MQTT_USER, MQTT_PASSWORD
    log = broker.workdir / "mosquitto.log"
    seen = len(log.read_bytes())
    second = publisher.Publisher()  # this test process, beside the events relay's
    try:
        assert second.connected.wait(10), "the second publisher did not connect"
        wait_until(lambda: " as edgeproxy-" in log.read_bytes()[seen:].decode(), 5, message="connection logged")
        logged = log.read_bytes()[seen:].decode()
        assert f" as {publisher.client_id(PREFIX)} " in logged
        assert "already connected" not in logged  # the broker's words when it closes a connection of the same id
    finally:
        second.client.disconnect()
        second.client.loop_stop()


def _last_outbox_id(system, event_type: str = "") -> int:
    rows = system.sql("select max(id) from processes_event where type = %s or %s = ''", (event_type, event_type))
    return rows[0][0] or 0


def _outbox_has(system, camera: str, status: str, after_id: int) -> bool:
    rows = system.sql("select data from processes_event where type = 'camera.status' and camera = %s and id > %s",
                      (camera, after_id))
    return any((json.loads(d) if isinstance(d, str) else d)["status"] == status for (d,) in rows)
