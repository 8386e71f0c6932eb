"""Fleet benchmark: run with ``bin/bench fleet``.

Simulated edge hosts (100 and 2,000 cameras by default; ``--hosts 1000 --cameras 50000 --seed``
for the fleet at scale). The hosts are a lighter stand-in for as many edge worker processes: one
process (``--sim``) holds the real ``EdgeAgent``s (the same code that talks to the control plane:
the same task names, sealed specs, heartbeats and reports) whose runtime keeps its "containers" in
memory instead of Docker (``MemoryRuntime``: what a perfect, instant engine would do), and whose
running cameras report streaming facts (fps, last frame, packet counters) that change at every
beat, as real camera processes do. Everything else is real: the API, the control worker, beat,
PostgreSQL and Redis.

Prints:
- heartbeats: every host beating every ``--heartbeat`` s for ``--measure`` s: heartbeats absorbed
  per second, the control worker's CPU (share of one core, from /proc), database rows written per
  heartbeat (PostgreSQL's own counters) and what waits on the control and heartbeat queues;
- the time of one full reconcile pass (nothing to correct, and, without ``--seed``, 200 cameras to
  correct), and the time from a host's return (empty, like a rebooted machine) to all of its
  cameras running;
- ``GET /processlist`` and a page of ``/cameras`` at that size.

With ``--drain``, only the heartbeat path's cost, like with like: the same queued heartbeats of
``--hosts`` hosts (``--rounds`` beats each, the first a start) drained by a control worker, once
the old way (each beat a Celery task on the control queue, recorded at once:
``EDGEPROXY_HEARTBEAT_BATCH_SECONDS=0``) and once the new way (the heartbeat queue read in batches,
quiet beats recorded together): the control worker's CPU per beat and the database writes per beat.

With ``--seed`` the cameras are written to the database directly (as running, observed) and the
simulated hosts start with them running, instead of connecting each through the API: 50,000
connects would take minutes and measure onboarding, which ``bin/bench control_plane`` does.
"""

import argparse
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIM_COMMANDS = "fleet-sim:commands"
SIM_BEATS = "fleet-sim:beats"


# --- the simulated edge hosts (runs in its own process) ----------------------------------------


def seeded_names(host: str, count: int) -> list[str]:
    return [f"{host}-c{i:03d}" for i in range(count)]


def seeded_container(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def running_state() -> dict:
    from worker.runtimes.base import STATE_KEYS

    state = dict.fromkeys(STATE_KEYS, False)
    state.update({"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0, "Error": "",
                  "StartedAt": "2026-01-01T00:00:00Z", "FinishedAt": "0001-01-01T00:00:00Z"})
    return state


def run_simulated_hosts(hosts: list[str], heartbeat: float, seed_per_host: int = 0) -> None:
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

    class SimulatedAgent(EdgeAgent):
        """Its running cameras stream: live facts that change at every beat, as a camera process's do."""

        def _stream_status(self, names, running=frozenset()):  # the agent's signature; ``running`` unused here
            now = int(time.time() * 1000)
            running = self.runtime.cameras
            return {name: {**SEEDED_STREAM, "fps": round(random.uniform(24.0, 25.5), 2),
                           "last_frame_at": now - random.randint(0, 40), "updated_at": now,
                           "packets": now // 40 % 10_000_000}
                    for name in names if name in running and running[name].status == "running"}

        def _publish_host_table(self, observed=None):
            pass  # read by the frame server of a real host; none here (and 1,000 hosts' tables cost the sim)

    agents = {host: SimulatedAgent(host, runtime=MemoryRuntime(host)) for host in hosts}
    for host, agent in agents.items():
        for name in seeded_names(host, seed_per_host):
            agent.runtime.cameras[name] = Observed(
                name, str(uuid.uuid5(uuid.NAMESPACE_DNS, name)), seeded_container(name), "running", running_state(),
                "edgeproxy/camera:latest", {"stdout": None, "stderr": None})
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
            beats = 0
            for host, agent in agents.items():
                if host not in paused:
                    try:
                        agent.heartbeat(first=host in first)
                    except Exception as exc:  # noqa: BLE001 - as the real loop: a missed beat is the next one's job
                        print("beat failed:", exc, flush=True)
                        continue
                    first.discard(host)
                    beats += 1
            commands.incrby(SIM_BEATS, beats)
            time.sleep(max(0.0, heartbeat - (time.monotonic() - started)))

    threading.Thread(target=beat_forever, daemon=True).start()
    app.worker_main(["worker", "--pool", "threads", "--concurrency", "8", "--queues", ",".join(by_queue),
                     "--hostname", "fleet-sim@%h", "--loglevel", "WARNING", "--without-mingle", "--without-gossip"])


# --- the benchmark -----------------------------------------------------------------------------


# The stable part of the stream a simulated camera reports (SimulatedAgent._stream_status): seeded
# rows that already hold it make the hosts' first beats change nothing, as in a fleet that runs,
# instead of one write and one event per camera while the heartbeats are measured.
SEEDED_STREAM = {"state": "streaming", "width": 1280, "height": 720, "codec": "h264", "reconnects": 0,
                 "last_error": None, "rtmp_streaming": False, "storing": False}


def seed_database(hosts: list[str], per_host: int) -> None:
    """Hosts and their cameras as rows, running and observed (run inside ``manage.py shell``)."""
    from django.utils import timezone

    from edgeproxy import crypto
    from edgeproxy.celery import host_queue
    from processes.models import Camera, EdgeHost
    from worker.redaction import mask_url

    now = timezone.now()
    EdgeHost.objects.bulk_create([EdgeHost(name=host, queue=host_queue(host)) for host in hosts])
    ids = dict(EdgeHost.objects.values_list("name", "id"))
    url = "rtsp://u:p@10.0.0.1/s"
    encrypted, masked, state = crypto.encrypt(url), mask_url(url), running_state()
    Camera.objects.bulk_create(
        [Camera(id=uuid.uuid5(uuid.NAMESPACE_DNS, name), name=name, rtsp_endpoint_encrypted=encrypted,
                rtsp_endpoint_masked=masked, image_tag="edgeproxy/camera:latest", host_id=ids[host],
                status="running", container_id=seeded_container(name), state=state,
                logs={"stdout": None, "stderr": None}, stream=SEEDED_STREAM, observed_at=now)
         for host in hosts for name in seeded_names(host, per_host)],
        batch_size=2000)


def heartbeat_cost(system, commands, seconds: float) -> dict:
    """Every host beating: what the control worker and the database spend on it over ``seconds``."""
    from edgeproxy.contracts.tasks import CONTROL_QUEUE, HEARTBEAT_QUEUE
    from tests.support.services import cpu_seconds

    db = system.connect_database()

    def rows_written() -> tuple[int, int]:
        """Rows written to the camera-plane tables, and updates of host rows (one per beat recorded)."""
        return db.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint, "
            "coalesce(sum(n_tup_upd) FILTER (WHERE relname = 'processes_edgehost'), 0)::bigint "
            "FROM pg_stat_user_tables WHERE relname LIKE 'processes_%'").fetchone()

    def sample():
        return (time.monotonic(), cpu_seconds(system.control.pid), *rows_written(),
                int(commands.get(SIM_BEATS) or 0))

    t0, cpu0, rows0, recorded0, sent0 = sample()
    time.sleep(seconds)
    t1, cpu1, rows1, recorded1, sent1 = sample()
    db.close()
    recorded = max(1, recorded1 - recorded0)
    return {"sent_per_s": (sent1 - sent0) / (t1 - t0), "recorded_per_s": recorded / (t1 - t0),
            "cpu_share": (cpu1 - cpu0) / (t1 - t0), "cpu_ms_per_beat": (cpu1 - cpu0) * 1000 / recorded,
            "rows_per_beat": (rows1 - rows0) / recorded,
            "backlog": queued_tasks(commands, CONTROL_QUEUE, HEARTBEAT_QUEUE),
            "load": os.getloadavg()[0]}


def queued_tasks(commands, *queues: str, sample: int = 2000) -> str:
    """What waits on each queue: its length and, among its newest ``sample`` messages, how many of each task."""
    import collections
    import json

    parts = []
    for queue in queues:
        kinds = collections.Counter(json.loads(raw).get("headers", {}).get("task", "?")
                                    for raw in commands.lrange(queue, 0, sample - 1))
        top = ", ".join(f"{task.rsplit('.', 1)[-1]} {n}" for task, n in kinds.most_common(4))
        parts.append(f"{queue} {commands.llen(queue)}" + (f" ({top})" if top else ""))
    return "; ".join(parts)


def timed_get(system, path: str, n: int = 5) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        response = system.get(path)
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.text[:200]
        size = len(response.content)
    return round(statistics.median(times) * 1000, 1), size


def queue_beats(hosts: list[str], per_host: int, rounds: int, heartbeat_queue: str) -> None:
    """Heartbeats as the simulated hosts send them, queued (run inside ``manage.py shell``): a start
    each on the control queue, then ``rounds - 1`` beats each on ``heartbeat_queue``."""
    from edgeproxy.celery import app
    from edgeproxy.contracts import heartbeats
    from edgeproxy.contracts import tasks as messages

    with app.producer_or_acquire() as producer:
        for beat in range(rounds):
            for host in hosts:
                now = int(time.time() * 1000)
                names = seeded_names(host, per_host)
                cameras = [{"name": name, "camera_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                            "container_id": seeded_container(name), "status": "running", "state": running_state(),
                            "image": "edgeproxy/camera:latest", **({"logs": {"stdout": None, "stderr": None}}
                                                                   if beat == 0 else {})} for name in names]
                streams = {name: {**SEEDED_STREAM, "fps": round(random.uniform(24.0, 25.5), 2), "last_frame_at": now,
                                  "updated_at": now, "packets": now // 40} for name in names}
                report = {"queue": f"host.{host}", "runtime": "simulated", "facts": {"runtime": "simulated"},
                          "images": [], "public_key": "", "frames_address": "", "observed_at": now,
                          "cameras": cameras, "streams": streams, "apps": []}
                report[heartbeats.FINGERPRINT_KEY] = heartbeats.fingerprint(report)  # (as EdgeAgent.report)
                message = (messages.HostStarted if beat == 0 else messages.HostHeartbeat)(host=host, report=report)
                app.send_task(message.task, kwargs=message.kwargs(), producer=producer,
                              queue=message.queue if beat == 0 else heartbeat_queue)


def drain_cost(args, old: bool) -> dict:
    """Queue the heartbeats, start a control worker, let it take the starts, then measure it draining the rest."""
    import redis

    from edgeproxy.contracts.tasks import CONTROL_QUEUE, HEARTBEAT_QUEUE
    from tests.support.services import Process, RedisServer, cpu_seconds, wait_until
    from tests.support.system import fresh_database_url

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-drain-"))
    redis_server = RedisServer(work / "redis")
    database_url = fresh_database_url("edgeproxy_bench_drain")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("EDGEPROXY_", "DJANGO_", "DATABASE_URL"))},
           "DJANGO_SETTINGS_MODULE": "edgeproxy.settings", "PYTHONPATH": str(REPO), "DATABASE_URL": database_url,
           "REDIS_URL": redis_server.url, "EDGEPROXY_FRAMES_REDIS_URL": redis_server.url,
           "SECRET_KEY": "bench-secret-key-not-for-production", "EDGEPROXY_STATE_DIR": str(work),
           "EDGEPROXY_HEARTBEAT_SECONDS": str(args.heartbeat), "EDGEPROXY_RECONCILE_SECONDS": "3600",
           "EDGEPROXY_HEARTBEAT_BATCH_SECONDS": "0" if old else "1"}
    hosts = [f"sim-{i:03d}" for i in range(args.hosts)]
    per_host = max(1, args.cameras // args.hosts)
    staging = CONTROL_QUEUE if old else "bench.staging"  # (the new way: moved to the heartbeat queue at once)

    def manage(*argv):
        subprocess.run([sys.executable, "manage.py", *argv], cwd=REPO, env=env, check=True, capture_output=True)

    manage("migrate", "--noinput")
    manage("shell", "-c", f"from bench.fleet import seed_database, queue_beats; seed_database({hosts!r}, {per_host}); "
                          f"queue_beats({hosts!r}, {per_host}, {args.rounds}, {staging!r})")
    beats = len(hosts) * (args.rounds - 1)
    broker = redis.Redis.from_url(redis_server.url)
    control = Process([sys.executable, "-m", "celery", "-A", "edgeproxy.celery", "worker", "--queues", CONTROL_QUEUE,
                       "--pool", "threads", "--concurrency", "4", "--hostname", "control@%h", "--without-mingle",
                       "--without-gossip", "--loglevel", "INFO"], work / "control.log", env=env, cwd=REPO)
    db = psycopg.connect(database_url, autocommit=True)

    def rows_written() -> int:
        return db.execute("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables "
                          "WHERE relname LIKE 'processes_%'").fetchone()[0]

    try:
        if old:
            wait_until(lambda: broker.llen(CONTROL_QUEUE) <= beats, 600, interval=0.05, message="the starts taken")
        else:
            wait_until(lambda: broker.llen(CONTROL_QUEUE) == 0 and broker.hlen("unacked") == 0, 600, interval=0.05,
                       message="the starts taken")
            time.sleep(2.0)
        time.sleep(1.0)  # (PostgreSQL's counters lag by up to a second)
        cpu0, rows0, t0 = cpu_seconds(control.popen.pid), rows_written(), time.monotonic()
        if old:
            wait_until(lambda: broker.llen(CONTROL_QUEUE) == 0 and broker.hlen("unacked") == 0, 900, interval=0.05,
                       message="drained")
        else:
            broker.rename(staging, HEARTBEAT_QUEUE)
            wait_until(lambda: broker.llen(HEARTBEAT_QUEUE) == 0, 900, interval=0.05, message="drained")
            time.sleep(1.5)  # the last batch written
        cpu1, t1 = cpu_seconds(control.popen.pid), time.monotonic()
        time.sleep(1.0)
        rows1 = rows_written()
    finally:
        db.close()
        control.stop()
        redis_server.stop()
    return {"beats": beats, "cpu_ms_per_beat": (cpu1 - cpu0) * 1000 / beats, "beats_per_s": beats / (t1 - t0),
            "rows_per_beat": (rows1 - rows0) / beats, "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--cameras", type=int, default=2000)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--seed", action="store_true", help="write the cameras to the database, running")
    parser.add_argument("--measure", type=float, default=30.0, help="seconds of heartbeats measured")
    parser.add_argument("--online-wait", type=float, default=900.0, help="seconds to wait for every host online")
    parser.add_argument("--drain", action="store_true", help="only the heartbeat path, old way and new way")
    parser.add_argument("--rounds", type=int, default=6, help="with --drain: beats queued per host")
    parser.add_argument("--seed-per-host", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sim", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sim is not None:
        run_simulated_hosts(args.sim, args.heartbeat, args.seed_per_host)
        return
    if args.drain:
        for _round in range(2):  # interleaved: old, new, old, new
            for old in (True, False):
                cost = drain_cost(args, old)
                way = "old way (a Celery task each, unbatched)" if old else "new way (batched)"
                share = cost["cpu_ms_per_beat"] * args.hosts / args.heartbeat / 10
                print(f"heartbeat drain, {way:<40} {cost['beats']} beats of {args.hosts} hosts (all but the first "
                      f"each quiet) with {max(1, args.cameras // args.hosts)} cameras: control worker CPU "
                      f"{cost['cpu_ms_per_beat']:.2f} ms a beat (at {args.hosts / args.heartbeat:.0f} beats/s: "
                      f"{share:.0f} % of a core), {cost['beats_per_s']:.0f} beats/s drained, database rows written "
                      f"per beat {cost['rows_per_beat']:.3f}; load {cost['load']:.1f}", flush=True)
        return

    import redis

    from tests.support.services import Process, RedisServer, wait_until
    from tests.support.system import System, fresh_database_url

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    redis_server = RedisServer(work / "redis")
    system = System(work / "system", redis_server.url, fresh_database_url("edgeproxy_bench_fleet"),
                    heartbeat=args.heartbeat, extra_env={"EDGEPROXY_RECONCILE_SECONDS": "3600"})
    hosts = [f"sim-{i:03d}" for i in range(args.hosts)]
    per_host = args.cameras // args.hosts if args.seed else 0
    if args.seed:
        t0 = time.perf_counter()
        system._manage("shell", "-c",
                       f"from bench.fleet import seed_database; seed_database({hosts!r}, {per_host})")
        print(f"seed: {per_host * args.hosts} cameras on {args.hosts} hosts written "
              f"in {time.perf_counter() - t0:.1f} s")
    sim = Process([sys.executable, __file__, "--heartbeat", str(args.heartbeat), "--seed-per-host", str(per_host),
                   "--sim", *hosts],
                  work / "logs" / "sim.log", env={**system.env, "DATABASE_URL": "postgres://nobody@127.0.0.1:9/none"})
    commands = redis.Redis.from_url(redis_server.url)

    def online_hosts() -> int:
        return int(system.get("/api/v1/hosts?online=true&limit=1").headers["X-Total-Count"])

    try:
        try:
            wait_until(lambda: online_hosts() == args.hosts, args.online_wait, interval=2,
                       message="simulated hosts online")
        except TimeoutError:  # the figures below say what this machine absorbs, all online or not
            print(f"only {online_hosts()} of {args.hosts} hosts online after {args.online_wait:.0f} s; "
                  "measuring anyway")

        def all_running(host=None):
            path = "/api/v1/processlist" + (f"?host={host}" if host else "")
            cameras = system.get(path).json()
            return cameras and all(c["status"] == "running" for c in cameras)

        if not args.seed:
            t0 = time.perf_counter()

            def connect(i):
                response = system.post("/api/v1/process",
                                       {"name": f"cam-{i:05d}", "rtsp_endpoint": "rtsp://u:p@10.0.0.1/s"})
                assert response.status_code == 202, response.text

            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(connect, range(args.cameras)))
            wait_until(all_running, 300, interval=1, message="every camera running")
            print(f"setup: {args.cameras} cameras connected and running on {args.hosts} hosts "
                  f"in {time.perf_counter() - t0:.1f} s")
        time.sleep(args.heartbeat * 2.5)  # let every host report its cameras (and the first writes settle)
        # The window opens once the control worker has caught up with the hosts' starts: on a slow
        # machine the start storm leaves a backlog, and draining it in the window would charge it
        # to the steady beats (more recorded than sent, and a larger CPU share).
        from edgeproxy.contracts.tasks import CONTROL_QUEUE, HEARTBEAT_QUEUE

        caught_up = max(1, int(args.hosts / args.heartbeat / 10))  # under 0.1 s of beats waiting

        def waiting() -> int:
            return commands.llen(CONTROL_QUEUE) + commands.llen(HEARTBEAT_QUEUE)

        try:
            wait_until(lambda: waiting() < caught_up, 180, interval=0.5, message="the control worker caught up")
        except TimeoutError:
            print(f"the control worker has not caught up ({waiting()} tasks waiting); measuring anyway")
        print(f"measuring heartbeats for {args.measure:.0f} s ({waiting()} tasks waiting)", flush=True)

        cost = heartbeat_cost(system, commands, args.measure)
        print(f"heartbeats: {args.hosts} hosts with {args.cameras // args.hosts} streaming cameras each, every "
              f"{args.heartbeat} s, over {args.measure:.0f} s: {cost['sent_per_s']:.1f} beats/s sent (wanted "
              f"{args.hosts / args.heartbeat:.1f}), {cost['recorded_per_s']:.1f} recorded; control worker CPU "
              f"{cost['cpu_share'] * 100:.1f} % of one core ({cost['cpu_ms_per_beat']:.2f} ms a beat recorded); "
              f"database rows written per heartbeat {cost['rows_per_beat']:.2f}; queued at the end: "
              f"{cost['backlog']}; machine load average {cost['load']:.1f}")

        def reconcile_pass() -> tuple[float, int]:
            out = system._manage("shell", "-c", "import time; from processes import services; "
                                 "t = time.perf_counter(); n = services.reconcile_fleet(); "
                                 "print('PASS', round((time.perf_counter() - t) * 1000, 1), n)")
            line = next(line for line in out.splitlines() if line.startswith("PASS "))
            _, ms, corrections = line.split()
            return float(ms), int(corrections)

        idle = [reconcile_pass() for _ in range(3)]
        print(f"reconcile: one full pass, nothing to correct: median {statistics.median(m for m, _ in idle)} ms "
              f"({args.cameras} cameras, {args.hosts} hosts; corrections {idle[-1][1]})")

        listed, size = timed_get(system, "/api/v1/processlist", 3)
        page, _ = timed_get(system, "/api/v1/cameras?limit=100")
        print(f"lists: GET /processlist {listed} ms median ({size / 1e6:.1f} MB, {args.cameras} cameras); "
              f"GET /cameras?limit=100 {page} ms")
        if args.seed:
            return

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
