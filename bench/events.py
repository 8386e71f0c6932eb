"""Events-out benchmark: run with ``bin/bench events [--events N] [--samples N]``.

A real system (API, control worker, events relay, webhook worker on PostgreSQL and Redis) and real
HTTP receivers on loopback (allowed with EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS). Prints:

1. events per second delivered to 1 receiver and to 100 receivers (one webhook each): N events are
   written to the outbox at once (as services record them), timed until every receiver has all;
2. the delay from a camera's status change to its delivery (p50, p99): an edge host's heartbeat
   (the control task, through the broker) toggles a camera between streaming and reconnecting;
   measured from sending the heartbeat to the receiver's arrival. No camera process runs: the
   heartbeat is what an edge worker sends when its camera's stream state changes.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.services import RedisServer, wait_until  # noqa: E402
from tests.support.system import System, fresh_database_url  # noqa: E402


class Receiver:
    def __init__(self):
        self.arrivals: list[tuple[float, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.arrivals.append((time.time(), body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def throughput(system: System, receivers: list[Receiver], n: int) -> tuple[float, float]:
    from django.db import transaction
    from django.utils import timezone

    from edgeproxy.contracts import events as contract
    from processes.events import services

    hooks = [system.post("/api/v1/webhooks", {"url": r.url, "event_types": ["annotation.created"]}).json()["id"]
             for r in receivers]
    before = [len(r.arrivals) for r in receivers]
    started = time.time()
    with transaction.atomic():  # a burst, as when a host with many cameras goes offline
        for i in range(n):
                services.record(contract.annotation_created(annotation_id=i, camera="bench-cam", host="bench-host",
                                                        fields={"type": "bench"}, at=timezone.now()))
    wait_until(lambda: all(len(r.arrivals) - b >= n for r, b in zip(receivers, before, strict=True)), 600,
               interval=0.05, message="every event at every receiver")
    elapsed = time.time() - started
    for hook in hooks:
        system.delete(f"/api/v1/webhooks/{hook}")
    return n / elapsed, n * len(receivers) / elapsed


def status_delay(system: System, receiver: Receiver, samples: int) -> list[float]:
    import json

    from celery import Celery

    from edgeproxy.contracts import tasks as messages
    from processes.models import Camera, EdgeHost

    host = EdgeHost.objects.create(name="bench-host", queue="bench-host", runtime="docker")
    Camera.objects.create(name="bench-cam", rtsp_endpoint_encrypted="-", rtsp_endpoint_masked="-", image_tag="x:1",
                          host=host, status="running")
    hook = system.post("/api/v1/webhooks", {"url": receiver.url, "event_types": ["camera.status"]}).json()["id"]
    app = Celery(broker=system.redis_url)
    delays = []
    for i in range(samples):
        state = "reconnecting" if i % 2 == 0 else "streaming"
        seen = len(receiver.arrivals)
        report = {"queue": "bench-host", "runtime": "docker", "observed_at": int(time.time() * 1000),
                  "cameras": [{"name": "bench-cam", "status": "running", "container_id": "c1",
                               "state": {"Status": "running", "Running": True}}],
                  "streams": {"bench-cam": {"state": state}}}
        sent = time.time()
        app.send_task(messages.HostHeartbeat.task, kwargs={"host": "bench-host", "report": report},
                      queue=messages.CONTROL_QUEUE)

        def arrived(seen=seen, state=state):
            for at, body in receiver.arrivals[seen:]:
                if json.loads(body)["data"]["status"] == state:
                    return at
            return None

        delays.append(wait_until(arrived, 30, interval=0.002, message=f"{state} delivered") - sent)
    system.delete(f"/api/v1/webhooks/{hook}")
    return delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="events for the throughput runs")
    parser.add_argument("--samples", type=int, default=200, help="status changes for the delay")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-events-"))
    redis = RedisServer(work / "redis")
    database_url = fresh_database_url("edgeproxy_bench_events")
    system = System(work / "system", redis.url, database_url, runtime="local", extra_env={
        "EDGEPROXY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "EDGEPROXY_EVENTS_POLL_SECONDS": "0.05"})
    system._start("events", [sys.executable, "manage.py", "events_relay"])
    system._start("webhooks", [sys.executable, "-m", "celery", "-A", "edgeproxy.celery", "worker", "--queues",
                               "webhooks", "--pool", "threads", "--concurrency", "16", "--hostname", "webhooks@%h",
                               "--without-mingle", "--without-gossip", "--loglevel", "WARNING"])
    os.environ.update({k: v for k, v in system.env.items() if k.startswith(("DATABASE_URL", "SECRET_KEY"))})
    os.environ["DJANGO_SETTINGS_MODULE"] = "edgeproxy.settings"
    import django

    django.setup()
    try:
        one = [Receiver()]
        per_receiver, _ = throughput(system, one, args.events)
        print(f"1 receiver:    {per_receiver:8.0f} events/s ({args.events} events)")
        many = [Receiver() for _ in range(100)]
        n = max(100, args.events // 10)
        per_receiver, total = throughput(system, many, n)
        print(f"100 receivers: {per_receiver:8.1f} events/s each, {total:8.0f} deliveries/s in all ({n} events)")
        delays = status_delay(system, Receiver(), args.samples)
        print(f"status change -> delivery ({len(delays)} changes): p50 {statistics.median(delays) * 1000:.0f} ms, "
              f"p99 {pct(delays, 0.99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms")
    finally:
        system.stop()
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
