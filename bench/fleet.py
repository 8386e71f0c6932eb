"""Fleet benchmark: run with ``bin/bench fleet``.

100 simulated edge hosts and 2,000 cameras. The hosts are a lighter stand-in for 100 edge worker
processes: one process (``--sim``) holds 100 real ``EdgeAgent``s (the same code that talks to the
control plane: the same task names, sealed specs, heartbeats and reports) whose runtime keeps its
"containers" in memory instead of Docker. Everything else is real: the API, the control worker,
beat, PostgreSQL and Redis.

Prints: the time of one full reconcile pass (nothing to correct, and 200 cameras to correct),
and the time from a host's return (empty, like a rebooted machine) to all of its cameras running.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIM_COMMANDS = "fleet-sim:commands"


# --- the simulated edge hosts (runs in its own process) ----------------------------------------


def run_simulated_hosts(hosts: list[str], heartbeat: float) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "edgeproxy.settings")
    django.setup()
    import redis
    from celery import Celery
    from django.conf import settings

    from worker.edge import EdgeAgent
    from worker.runtimes.base import STATE_KEYS, Observed, Runtime

    class MemoryRuntime(Runtime):
        """Camera processes as dictionary entries: what a perfect, instant engine would do."""

        name = "simulated"

        def __init__(self, host):
            super().__init__(host)
            self.cameras: dict[str, Observed] = {}
            self.lock = threading.Lock()

        def _state(self, running: bool) -> dict:
            state = dict.fromkeys(STATE_KEYS, False)
            state.update({"Status": "running" if running else "exited", "Running": running,
                          "Pid": 4242 if running else 0, "ExitCode": 0, "Error": "",
                          "StartedAt": "2026-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"})
            return state

        def ensure_running(self, spec):
            with self.lock:
                observed = Observed(spec.name, spec.camera_id, uuid.uuid4().hex * 2, "running", self._state(True),
                                    spec.image, {"stdout": None, "stderr": None})
                current = self.cameras.get(spec.name)
                if current and current.status == "running":
                    return current
                self.cameras[spec.name] = observed
                return observed

        def stop(self, name, timeout=5.0):
            with self.lock:
                current = self.cameras.get(name)
                if current:
                    current.status, current.state = "exited", self._state(False)
                return current

        def remove(self, name):
            with self.lock:
                return self.cameras.pop(name, None) is not None

        def observe(self, name, with_logs=True):
            return self.cameras.get(name)

        def observe_all(self, with_logs=False):
            with self.lock:
                return list(self.cameras.values())

        def facts(self):
            return {"runtime": "simulated"}

    agents = {host: EdgeAgent(host, runtime=MemoryRuntime(host)) for host in hosts}
    by_queue = {agent.queue: agent for agent in agents.values()}
    paused: set[str] = set()
    app = Celery("fleet-sim", broker=settings.CELERY_BROKER_URL)
    app.conf.update(task_serializer="json", accept_content=["json"], task_acks_late=True,
                    worker_prefetch_multiplier=4, worker_hijack_root_logger=False)

    from edgeproxy.contracts import tasks as messages

    def agent_of(task):
        return by_queue[task.request.delivery_info["routing_key"]]

    @app.task(name=messages.EnsureRunning.task, bind=True)
    def ensure_running(self, operation_id, camera_name, spec):
        agent_of(self).ensure_running(operation_id, camera_name, spec)

    @app.task(name=messages.Stop.task, bind=True)
    def stop(self, operation_id, camera_name):
        agent_of(self).stop(operation_id, camera_name)

    @app.task(name=messages.Remove.task, bind=True)
    def remove(self, operation_id, camera_name):
        agent_of(self).remove(operation_id, camera_name)

    def beat_forever():
        commands = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        first = set(hosts)
        while True:
            while (raw := commands.lpop(SIM_COMMANDS)) is not None:
                verb, host = raw.decode().split(" ", 1)
                if verb == "lose":  # the host's cameras die (their containers vanish)
                    agents[host].runtime.cameras.clear()
                elif verb == "down":  # the machine goes away
                    paused.add(host)
                elif verb == "up":  # it comes back rebooted: nothing runs, the worker starts
                    agents[host].runtime.cameras.clear()
                    paused.discard(host)
                    first.add(host)
            started = time.monotonic()
            for host, agent in agents.items():
                if host not in paused:
                    agent.heartbeat(first=host in first)
                    first.discard(host)
            time.sleep(max(0.0, heartbeat - (time.monotonic() - started)))

    threading.Thread(target=beat_forever, daemon=True).start()
    app.worker_main(["worker", "--pool", "threads", "--concurrency", "8", "--queues", ",".join(by_queue),
                     "--hostname", "fleet-sim@%h", "--loglevel", "WARNING", "--without-mingle", "--without-gossip"])


# --- the benchmark -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--cameras", type=int, default=2000)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--sim", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sim is not None:
        run_simulated_hosts(args.sim, args.heartbeat)
        return

    import redis

    from tests.support.services import Process, RedisServer, wait_until
    from tests.support.system import System, fresh_database_url

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    redis_server = RedisServer(work / "redis")
    system = System(work / "system", redis_server.url, fresh_database_url("edgeproxy_bench_fleet"),
                    heartbeat=args.heartbeat, extra_env={"EDGEPROXY_RECONCILE_SECONDS": "3600"})
    hosts = [f"sim-{i:03d}" for i in range(args.hosts)]
    sim = Process([sys.executable, __file__, "--heartbeat", str(args.heartbeat), "--sim", *hosts],
                  work / "logs" / "sim.log", env={**system.env, "DATABASE_URL": "postgres://nobody@127.0.0.1:9/none"})
    commands = redis.Redis.from_url(redis_server.url)
    try:
        wait_until(lambda: sum(h["online"] for h in system.get("/api/v1/hosts").json()) == args.hosts, 60,
                   interval=1, message="simulated hosts online")
        t0 = time.perf_counter()

        def connect(i):
            response = system.post("/api/v1/process", {"name": f"cam-{i:05d}", "rtsp_endpoint": "rtsp://u:p@10.0.0.1/s"})
            assert response.status_code == 202, response.text

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(connect, range(args.cameras)))

        def all_running(host=None):
            path = "/api/v1/processlist" + (f"?host={host}" if host else "")
            cameras = system.get(path).json()
            return cameras and all(c["status"] == "running" for c in cameras)

        wait_until(all_running, 300, interval=1, message="every camera running")
        print(f"setup: {args.cameras} cameras connected and running on {args.hosts} hosts "
              f"in {time.perf_counter() - t0:.1f} s")
        time.sleep(args.heartbeat * 1.5)  # let every host report its cameras once more

        def reconcile_pass() -> float:
            out = system._manage("shell", "-c", "import time; from processes import services; "
                                 "t = time.perf_counter(); n = services.reconcile_fleet(); "
                                 "print('PASS', round((time.perf_counter() - t) * 1000, 1), n)")
            line = next(line for line in out.splitlines() if line.startswith("PASS "))
            _, ms, corrections = line.split()
            return float(ms), int(corrections)

        idle = [reconcile_pass() for _ in range(3)]
        print(f"reconcile: one full pass, nothing to correct: median {statistics.median(m for m, _ in idle)} ms "
              f"({args.cameras} cameras, {args.hosts} hosts; corrections {idle[-1][1]})")

        lost = hosts[:10]
        for host in lost:
            commands.rpush(SIM_COMMANDS, f"lose {host}")
        time.sleep(args.heartbeat * 2.5)
        t0 = time.perf_counter()
        ms, corrections = reconcile_pass()
        wait_until(lambda: all(all_running(h) for h in lost), 120, interval=0.5, message="lost cameras back")
        print(f"reconcile: one full pass with {corrections} cameras to correct: {ms} ms; "
              f"all back running {time.perf_counter() - t0:.1f} s after the pass started")

        host = hosts[-1]
        commands.rpush(SIM_COMMANDS, f"down {host}")
        wait_until(lambda: not system.get(f"/api/v1/hosts/{host}").json()["online"], 60, interval=0.5,
                   message="host offline")
        count = len(system.get(f"/api/v1/processlist?host={host}").json())
        commands.rpush(SIM_COMMANDS, f"up {host}")
        wait_until(lambda: system.get(f"/api/v1/hosts/{host}").json()["online"], 60, interval=0.05, message="host back")
        t0 = time.perf_counter()  # its first report has arrived: it runs nothing yet
        wait_until(lambda: all_running(host), 120, interval=0.1, message="host cameras running")
        print(f"host return: {count} cameras of {host} all running {time.perf_counter() - t0:.2f} s after its "
              f"worker's first report (heartbeat {args.heartbeat} s)")
    finally:
        sim.stop()
        system.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
