"""Events out (issue 17), in process: what the services write to the outbox, the webhook rules."""

import time

import pytest

from edgeproxy.contracts import events as contract
from processes import live
from processes.events import webhooks
from processes.models import Event
from tests.fast.test_cameras import RUNNING, connect, finish


def _camera_statuses(name: str) -> list[tuple[str, str]]:
    return [(e.data["previous"], e.data["status"]) for e in Event.objects.filter(type="camera.status", camera=name)]


def test_a_stream_state_change_is_one_event_written_with_it(api, edge, broker):
    edge.register("edge-a")
    assert connect(api, "cam-ev", rtsp_endpoint="rtsp://user:Pw-S3cret@10.0.0.9/live").status_code == 202
    finish("cam-ev", observed=RUNNING)
    assert Event.objects.filter(type="operation.finished", camera="cam-ev").get().data["state"] == "succeeded"
    seen = [{"name": "cam-ev", **RUNNING}]
    for state in ("streaming", "streaming", "reconnecting", "streaming"):
        edge.register("edge-a", cameras=seen, streams={"cam-ev": {"state": state, "fps": 25.0}})
    assert _camera_statuses("cam-ev") == [("starting", "streaming"), ("streaming", "reconnecting"),
                                          ("reconnecting", "streaming")]
    assert not any("Pw-S3cret" in str(e.data) for e in Event.objects.all())


def _recording_problems(name: str) -> list[tuple[str, str | None, str | None]]:
    return [(e.data["state"], e.data["previous"], e.data["problem"])
            for e in Event.objects.filter(type="camera.recording_problem", camera=name).order_by("id")]


def test_a_recording_problem_is_one_event_when_it_appears_changes_and_clears(api, edge, broker):
    edge.register("edge-a")
    assert connect(api, "cam-rec", recording={"enabled": True}).status_code == 202
    finish("cam-rec", observed=RUNNING)
    seen = [{"name": "cam-rec", **RUNNING}]
    quota = "recording quota reached: 1 MiB of 1 MiB"
    leak = "cannot write to rtsp://user:Pw-S3cret@10.0.0.9/live"  # a problem text that would carry a credential
    for problem, written in ((None, 10), (None, 20), (quota, 30), (quota, 40), (leak, 50), (None, 60), (quota, 70)):
        edge.register("edge-a", cameras=seen, streams={"cam-rec": {"state": "streaming", "recording": {
            "enabled": True, "state": "stopped" if problem else "recording", "problem": problem,
            "bytes_written": written}}})
    assert api.get("/api/v1/process/cam-rec").json()["recording"]["problem"] == quota
    # Switched off: the record shows no problem any more (while the host still reports it).
    assert api.put("/api/v1/process/cam-rec/recording", {"enabled": False}, format="json").status_code == 202
    events = _recording_problems("cam-rec")
    assert [(state, previous) for state, previous, _ in events] == [
        ("started", None), ("changed", quota), ("cleared", events[1][2]), ("started", None), ("cleared", quota)]
    assert [problem for _, _, problem in events] == [quota, events[1][2], None, quota, None]
    assert "Pw-S3cret" not in events[1][2] and "cannot write to rtsp://user:" in events[1][2]
    assert {e.host for e in Event.objects.filter(type="camera.recording_problem")} == {"edge-a"}


def test_operations_a_delete_supersedes_are_finished_events(api, edge, broker):
    edge.register("edge-a")
    connect_op = connect(api, "cam-del").json()["operation"]["id"]
    delete_op = api.delete("/api/v1/process/cam-del").json()["operation"]["id"]
    [event] = Event.objects.filter(type="operation.finished", camera="cam-del")
    assert (event.host, event.data["operation_id"], event.data["kind"], event.data["state"]) == (
        "edge-a", connect_op, "connect", "failed")
    assert event.data["error"] == f"superseded by delete operation {delete_op}"


def test_every_end_of_an_operation_wakes_its_waiters(api, edge, broker_redis, django_capture_on_commit_callbacks):
    """A ``?wait=`` request sleeps until its operation's end is announced (processes.live), not
    polling the database: a connect that a delete cuts short is announced too, once committed."""
    edge.register("edge-a")
    connect_op = connect(api, "cam-wake").json()["operation"]["id"]
    pubsub = broker_redis.client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"{live.ENDED_CHANNEL}{connect_op}")
    try:
        with django_capture_on_commit_callbacks(execute=True) as committed:
            api.delete("/api/v1/process/cam-wake")
            assert pubsub.get_message(timeout=0.2) is None  # nothing before the commit
        assert committed
        message = pubsub.get_message(timeout=5)
        assert message is not None and message["channel"].decode() == f"{live.ENDED_CHANNEL}{connect_op}"
    finally:
        pubsub.close()


def test_an_annotation_is_an_event(db):
    from processes import services

    services.record_annotation({"device_name": "cam-a", "type": "person", "start_timestamp": 1000,
                                "confidence": 0.9}, host="edge-a")
    event = Event.objects.get(type="annotation.created")
    assert (event.camera, event.host, event.data["type"], event.data["confidence"]) == ("cam-a", "edge-a", "person",
                                                                                        0.9)


@pytest.mark.parametrize("address, allowed", [("8.8.8.8", True), ("127.0.0.1", False), ("10.1.2.3", False),
                                              ("169.254.169.254", False), ("::1", False), ("fe80::1", False),
                                              ("192.168.1.1", False), ("::ffff:127.0.0.1", False),
                                              ("2001:4860:4860::8888", True), ("100.64.0.1", False)])
def test_outbound_addresses(address, allowed, settings):
    settings.EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS = []
    assert webhooks.address_allowed(address) is allowed


def test_an_allowed_network_opens_only_itself(settings):
    settings.EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert webhooks.address_allowed("10.9.9.9") and not webhooks.address_allowed("127.0.0.1")


def test_signature_is_hmac_of_timestamp_and_body():
    body, now = b'{"id":1}', int(time.time())
    header = contract.signature("s" * 20, now, body)
    assert contract.signature_valid("s" * 20, now, body, header, now)
    assert not contract.signature_valid("s" * 20, now, body + b" ", header, now)
    assert not contract.signature_valid("s" * 20, now, body, header, now + 3600)  # a replay, an hour later


def test_webhook_secret_is_shown_once_and_bad_input_names_the_field(api):
    created = api.post("/api/v1/webhooks", {"url": "https://hooks.example.com/in", "event_types": ["host.offline"]},
                       format="json")
    assert created.status_code == 201 and len(created.json()["secret"]) >= 16
    assert "secret" not in api.get(f"/api/v1/webhooks/{created.json()['id']}").json()
    refused = api.post("/api/v1/webhooks", {"url": "http://169.254.169.254/latest"}, format="json")
    assert refused.status_code == 400 and "url" in refused.json()["errors"]
    unknown = api.post("/api/v1/webhooks", {"url": "https://x.example.com", "event_types": ["x"]}, format="json")
    assert unknown.status_code == 400 and "camera.status" in unknown.json()["message"]
    assert api.get("/api/v1/webhooks/not-a-uuid").status_code == 404
    assert api.get(f"/api/v1/webhooks/{created.json()['id']}/deliveries?limit=0").status_code == 400


def test_dashboard_shows_webhooks_and_recent_deliveries(api, client, django_user_model):
    from processes.models import Delivery, Webhook

    created = api.post("/api/v1/webhooks", {"url": "https://hooks.example.com/in"}, format="json").json()
    event = Event.objects.create(type="host.offline", time="2026-01-01T00:00:00Z", host="edge-a", data={})
    Delivery.objects.create(webhook=Webhook.objects.get(id=created["id"]), event=event, attempts=3,
                            last_error="HTTP 500")
    client.force_login(django_user_model.objects.create_superuser("boss", "b@example.com", "pw"))
    page = client.get("/webhooks/").content.decode()
    assert "https://hooks.example.com/in" in page and "HTTP 500" in page and "host.offline" in page
    assert created["secret"] not in page
