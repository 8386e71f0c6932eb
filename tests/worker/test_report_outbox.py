"""An edge host keeps its reports while the broker is away and delivers them, in order, when it
returns (a real Redis, stopped and started again on the same port)."""

import base64
import json

from celery import Celery

from tests.support.services import RedisServer, wait_until
from worker.edge import ReportOutbox


def test_reports_wait_for_the_broker_in_order_and_survive_a_restart(tmp_path):
    server = RedisServer(tmp_path / "redis")
    app = Celery("outbox-test", broker=server.url)
    app.conf.broker_transport_options = {"socket_connect_timeout": 1, "socket_timeout": 2}

    def publish(task, kwargs):
        app.send_task(task, kwargs=kwargs, queue="control", retry=True,
                      retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.1})

    path = tmp_path / "state" / "edge-a-outbox.jsonl"
    path.parent.mkdir()
    outbox = ReportOutbox(path, publish, retry_seconds=0.2)
    outbox.start()
    try:
        outbox.send("processes.operation_started", {"operation_id": "op-1"})
        assert outbox.waiting == 0  # broker up: handed over at once
        server.stop()
        outbox.send("processes.operation_finished", {"operation_id": "op-1", "ok": True})
        outbox.send("processes.operation_finished", {"operation_id": "op-2", "ok": False, "error": "boom"})
        assert outbox.waiting == 2
        assert path.stat().st_mode & 0o777 == 0o600
        # A worker restarted now would find them.
        assert ReportOutbox(path, publish).waiting == 2

        server.start()
        wait_until(lambda: outbox.waiting == 0, 20, message="kept reports delivered")
        assert not path.exists()
        # Redis lost its data with the restart: only what was delivered after it is there, in order.
        delivered = []
        for raw in reversed(server.client().lrange("control", 0, -1)):  # LPUSH: newest first
            message = json.loads(raw)
            _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            delivered.append((message["headers"]["task"], kwargs["operation_id"]))
        assert delivered == [("processes.operation_finished", "op-1"), ("processes.operation_finished", "op-2")]

        # A report sent "soon" (an operation's start) goes from the outbox's thread, still before
        # the reports sent after it.
        outbox.send_soon("processes.operation_started", {"operation_id": "op-3"})
        outbox.send("processes.operation_finished", {"operation_id": "op-3", "ok": True})
        wait_until(lambda: outbox.waiting == 0 and server.client().llen("control") == 4, 20,
                   message="the start and the result delivered")
        newest = [json.loads(raw)["headers"]["task"] for raw in reversed(server.client().lrange("control", 0, 1))]
        assert newest == ["processes.operation_started", "processes.operation_finished"]
        assert not path.exists()
    finally:
        outbox.stop()
        server.stop()
