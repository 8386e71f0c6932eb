"""Control-plane benchmark: run with ``bin/bench control_plane``.

Prints, in one run on this machine:
1. the overhead of ``POST /process?wait=`` until running over a raw Docker create+start of the
   same container (same image, mounts, environment), median of N;
2. ``GET /processlist`` median latency with 2,000 cameras on 100 hosts in the database, beside
   the paged list ``GET /cameras`` (a page of 100 and of 500, a host's cameras) and ``/hosts``, ``/tasks``;
3. answering ``202`` to a connect with 16 concurrent clients (median, p99), on the simulated hosts:
   closed loop (each client sends its next connect when it has its answer: the server saturated), then
   paced (open loop: the 16 clients send ``--paced-rate`` connects a second in all, default 50, and a
   latency runs from each connect's scheduled time, so a server falling behind shows in it);
4. onboarding rate (cameras queued per second, until each ``202``): single connects one after the
   other, single connects from 16 clients, and bulk connects (``POST /cameras/bulk``, 200 a request).

The simulated hosts are database rows with a key (no worker consumes their queues), so 3 and 4
measure the control plane alone: validation, placement, database writes and task publishing.

``--answer-only``: only the answering-``202`` figures (no Docker engine, no camera image, no lists):
one client's connects one after the other, then the 16 concurrent clients (row 3 as above), each
with the API's own CPU per connect (its gunicorn processes' CPU time over the connects answered),
the slowest answers and the listen queue overflows the kernel counted meanwhile (a stall of about
1 s is a SYN retransmitted after a dropped connection attempt).

``--baseline REF`` (e.g. ``main``): a second edge worker runs that ref's code (``git archive`` to a
temporary folder) beside this tree's, on the same control plane, engine and image, and row 1 is
measured on both in interleaved rounds (raw Docker, this tree's edge, the baseline's; the order
rotates), so that both figures come from the same minutes of a shared, noisy machine.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.services import RedisServer  # noqa: E402
from tests.support.system import System, fresh_database_url  # noqa: E402


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def raw_docker_start(client, image: str, volumes: str, n: int) -> list[float]:
    binds = [v for v in volumes.split(",") if v]
    times = []
    for _ in range(n):
        name = f"bench-raw-{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        container = client.containers.create(
            image, name=name, network_mode="host", volumes=binds, detach=True,
            environment={"EDGEPROXY_CAMERA_NAME": name, "EDGEPROXY_RTSP_URL": "rtsp://127.0.0.1:9/none",
                         "EDGEPROXY_REDIS_URL": "redis://127.0.0.1:9/0"},
            labels={"bench": "raw"}, restart_policy={"Name": "unless-stopped"}, init=True,
            log_config=docker.types.LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
        )
        container.start()
        times.append(time.perf_counter() - t0)
        container.remove(force=True)
    return times


def api_queue_only(system: System, n: int) -> list[float]:
    """POST /process without wait: validation, placement, database writes and the task message."""
    times = []
    for i in range(n):
        name = f"bench-q-{i:03d}-{uuid.uuid4().hex[:4]}"
        t0 = time.perf_counter()
        response = system.post("/api/v1/process", {"name": name, "rtsp_endpoint": "rtsp://127.0.0.1:9/none",
                                                   "host": "bench-edge"})
        times.append(time.perf_counter() - t0)
        assert response.status_code == 202, response.text
        system.delete(f"/api/v1/process/{name}?wait=30")
    return times


PHASES = ("request to operation created", "created to started reported (task to the edge and back)",
          "started to finished reported (the edge's work and its report)", "finished to the answer (wake-up)")


def api_connects(system: System, n: int, phases: list | None = None, host: str = "bench-edge") -> list[float]:
    """``POST /process?wait=`` until running, n times; with ``phases``, each connect's time split at the
    operation's times as the database recorded them (``created``, ``started``, ``finished``)."""
    times = []
    for i in range(n):
        name = f"bench-{i:03d}-{uuid.uuid4().hex[:4]}"
        sent = time.time()
        t0 = time.perf_counter()
        response = system.post("/api/v1/process?wait=30", {"name": name, "rtsp_endpoint": "rtsp://127.0.0.1:9/none",
                                                            "host": host})
        elapsed = time.perf_counter() - t0
        answered = sent + elapsed
        assert response.status_code == 200 and response.json()["status"] == "running", response.text
        times.append(elapsed)
        if phases is not None:
            created, started, finished = system.sql(
                "SELECT extract(epoch FROM created), extract(epoch FROM started), extract(epoch FROM finished) "
                "FROM processes_operation WHERE id = %s", (response.json()["operation"]["id"],))[0]
            marks = [sent, float(created), float(started), float(finished), answered]
            phases.append([b - a for a, b in zip(marks, marks[1:], strict=False)])
        system.delete(f"/api/v1/process/{name}?wait=30")
    return times


BASELINE_HOST = "bench-base"


def start_baseline_edge(system: System, ref: str, work: Path) -> str:
    """An edge worker running ``ref``'s code for BASELINE_HOST, on this system; its commit."""
    from bench.baseline import baseline_tree
    from tests.support.services import Process
    from tests.support.system import NO_DATABASE_URL

    tree, commit = baseline_tree(ref, work)
    env = {**system.env, "PYTHONPATH": str(tree), "DATABASE_URL": NO_DATABASE_URL,
           "EDGEPROXY_HOST_NAME": BASELINE_HOST, "EDGEPROXY_STATE_DIR": str(work / f"state-{BASELINE_HOST}"),
           "EDGEPROXY_FRAMES_ADVERTISE": "127.0.0.1:9"}
    system.processes.append(Process([sys.executable, "-m", "worker"], work / "logs" / "edge-baseline.log", env=env,
                                    cwd=tree))
    system.wait_host_online(BASELINE_HOST)
    return commit


def interleaved_connects(system: System, client, image: str, volumes: str, n: int, baseline: bool) -> dict:
    """Row 1 in rounds: a raw Docker create+start, a connect on this tree's edge and (``baseline``) one
    on the baseline's, in an order that rotates each round. Times and phase splits by side."""
    sides = ["raw", "new"] + (["old"] if baseline else [])
    times: dict[str, list] = {side: [] for side in sides}
    phases: dict[str, list] = {side: [] for side in sides}
    for i in range(n):
        for side in sides[i % len(sides):] + sides[:i % len(sides)]:
            if side == "raw":
                times[side] += raw_docker_start(client, image, volumes, 1)
            else:
                times[side] += api_connects(system, 1, phases[side], "bench-edge" if side == "new" else BASELINE_HOST)
    return {"times": times, "phases": phases}


def seed_fleet(env: dict, hosts: int, cameras: int) -> None:
    code = f"""
import django, uuid
django.setup()
from django.utils import timezone
from nacl.public import PrivateKey
from processes.models import Camera, EdgeHost
from edgeproxy import crypto
from worker import sealing
from worker.runtimes.base import ZERO_TIME
now = timezone.now()
key = sealing.public_key_text(PrivateKey.generate())  # camera specs are sealed to it; nobody opens them
hosts = EdgeHost.objects.bulk_create([EdgeHost(name=f"sim-{{i:03d}}", queue=f"host.sim-{{i:03d}}", runtime="docker",
    last_heartbeat=now, public_key=key,
    images=[{{"repository": "edgeproxy/camera", "tag": v}} for v in ("0.0.9", "0.0.10")])
    for i in range({hosts})])
secret = crypto.encrypt("rtsp://user:pass@10.0.0.1/stream")
state = {{"Status": "running", "Running": True, "Paused": False, "Restarting": False, "OOMKilled": False,
         "Dead": False, "Pid": 1234, "ExitCode": 0, "Error": "", "StartedAt": "2026-01-01T00:00:00Z",
         "FinishedAt": ZERO_TIME}}
logs = {{"stdout": "c3RyZWFtaW5nCg==" * 20, "stderr": None}}
stream = {{"state": "streaming", "fps": 25.0, "width": 640, "height": 480, "codec": "h264"}}
Camera.objects.bulk_create([Camera(name=f"sim-cam-{{i:05d}}", rtsp_endpoint_encrypted=secret,
    rtsp_endpoint_masked="rtsp://user:***@10.0.0.1/stream", image_tag="edgeproxy/camera:0.0.9",
    host=hosts[i % {hosts}], status="running", container_id=uuid.uuid4().hex * 2, state=state, logs=logs,
    stream=stream, observed_at=now) for i in range({cameras})], batch_size=500)
"""
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timed_gets(system: System, path: str, n: int = 21) -> tuple[list[float], object]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = system.get(path)
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.text[:300]
    return times, response


def connect_body(name: str, host: str) -> dict:
    return {"name": name, "rtsp_endpoint": f"rtsp://user:pass@10.0.0.1/{name}", "host": host}


def concurrent_connects(system: System, hosts: int, clients: int, per_client: int, prefix: str,
                        positions: list | None = None, rate: float = 0.0) -> tuple[list, float]:
    """Each client its own HTTP session, connecting cameras: every answer's latency, and the wall time
    of all of them; ``positions`` gets each answer's (latency, its client's request number).

    ``rate`` 0: closed loop, each client sends its next connect as soon as it has its answer (the
    clients saturate the server, so a latency is mostly the wait behind the other clients' connects:
    by Little's law, about clients / throughput). ``rate`` > 0: open loop, the clients together send
    ``rate`` connects a second on a fixed schedule (client i's k-th at (k * clients + i) / rate), and a
    latency runs from the connect's scheduled time, so a late send (the client still waiting for its
    previous answer) counts against the server rather than hiding its slowness."""
    import requests

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.2  # every client started before the first scheduled connect

    def client(index: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {system.token}"
        mine = []
        for i in range(per_client):
            name = f"{prefix}-{index:02d}-{i:03d}"
            t0 = time.perf_counter()
            if rate:
                t0 = start + (i * clients + index) / rate
                time.sleep(max(0.0, t0 - time.perf_counter()))  # the schedule, not a wait before an assertion
            response = session.post(system.base_url + "/api/v1/process",
                                    json=connect_body(name, f"sim-{(index * per_client + i) % hosts:03d}"), timeout=60)
            mine.append(time.perf_counter() - t0)
            if response.status_code != 202:
                failures.append(response.text[:200])
        with lock:
            latencies.extend(mine)
            if positions is not None:
                positions.extend((latency, i) for i, latency in enumerate(mine))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    assert not failures, failures[:3]
    return latencies, wall


def api_cpu_by_process(system: System) -> dict[int, float]:
    """CPU time of the API's gunicorn master and each worker (the master's children), by pid."""
    from tests.support.services import cpu_seconds

    pids = [system.api.pid]
    for entry in Path(f"/proc/{system.api.pid}/task").iterdir():
        children = (entry / "children").read_text().split()
        pids += [int(child) for child in children]
    times = {}
    for pid in pids:
        try:
            times[pid] = cpu_seconds(pid)
        except OSError:  # a worker that went away
            continue
    return times


def api_cpu_seconds(system: System) -> float:
    return sum(api_cpu_by_process(system).values())


def listen_overflows() -> int:
    """The kernel's count of connection attempts dropped at a full listen queue (TcpExt ListenOverflows)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split(), values.split(), strict=False))["ListenOverflows"])
    return 0


def answer_only(system: System, args) -> None:
    """The answering-202 figures alone: one client, then ``--clients`` concurrent clients."""
    seed_fleet(system.env, args.hosts, 0)
    sequential_connects(system, args.hosts, 20, "warm")  # imports, connections, in both workers
    n = args.clients * args.per_client
    times = []
    cpu0 = api_cpu_seconds(system)
    for i in range(n):
        t0 = time.perf_counter()
        response = system.post("/api/v1/process", connect_body(f"one-{i:04d}", f"sim-{i % args.hosts:03d}"))
        times.append(time.perf_counter() - t0)
        assert response.status_code == 202, response.text
    cpu = api_cpu_seconds(system) - cpu0
    print(f"connect: answering 202, one client, n={n}  median {ms(statistics.median(times))} ms, "
          f"p99 {ms(percentile(times, 0.99))} ms;  API CPU {ms(cpu / n)} ms a connect  "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)
    overflows0, by_process0 = listen_overflows(), api_cpu_by_process(system)
    positions: list = []
    latencies, wall = concurrent_connects(system, args.hosts, args.clients, args.per_client, "c16", positions)
    by_process = {pid: seconds - by_process0.get(pid, 0.0) for pid, seconds in api_cpu_by_process(system).items()}
    cpu, overflows = sum(by_process.values()), listen_overflows() - overflows0
    print(f"connect: answering 202, {args.clients} concurrent clients, n={len(latencies)}  "
          f"median {ms(statistics.median(latencies))} ms, p99 {ms(percentile(latencies, 0.99))} ms  "
          f"(target <= 10 ms median, <= 30 ms p99);  {len(latencies) / wall:.1f} connects/s, "
          f"API CPU {ms(cpu / len(latencies))} ms a connect  (load {os.getloadavg()[0]:.1f})")
    later = [latency for latency, i in positions if i > 0]
    print(f"connect:   the same without each client's first answer (its new connection: a new API thread's first "
          f"database and broker connections), n={len(later)}  median {ms(statistics.median(later))} ms, "
          f"p99 {ms(percentile(later, 0.99))} ms")
    slowest = sorted(positions)[-8:]
    print(f"connect:   the API's CPU by process (master first): "
          f"{[f'{100 * seconds / cpu:.0f}%' for seconds in by_process.values()]}")
    print(f"connect:   slowest answers {[ms(t) for t, _ in slowest]} ms, their client's request number "
          f"{[i for _, i in slowest]} (0: its first, a new connection); "
          f"listen queue overflows meanwhile: {overflows}")
    if args.paced_rate:
        paced(system, args)


def paced(system: System, args) -> None:
    """The concurrent clients again, sending ``--paced-rate`` connects a second in all (open loop)."""
    by_process0 = api_cpu_by_process(system)
    latencies, wall = concurrent_connects(system, args.hosts, args.clients, args.per_client, "paced",
                                          rate=args.paced_rate)
    cpu = sum(seconds - by_process0.get(pid, 0.0) for pid, seconds in api_cpu_by_process(system).items())
    print(f"connect: answering 202, {args.clients} concurrent clients paced at {args.paced_rate:g} connects/s in all "
          f"(open loop, from each connect's scheduled time), n={len(latencies)}  "
          f"median {ms(statistics.median(latencies))} ms, p99 {ms(percentile(latencies, 0.99))} ms;  "
          f"{len(latencies) / wall:.1f} connects/s, "
          f"API CPU {ms(cpu / len(latencies))} ms a connect  (load {os.getloadavg()[0]:.1f})")


def sequential_connects(system: System, hosts: int, n: int, prefix: str) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        response = system.post("/api/v1/process", connect_body(f"{prefix}-{i:04d}", f"sim-{i % hosts:03d}"))
        assert response.status_code == 202, response.text
    return time.perf_counter() - t0


def bulk_connects(system: System, hosts: int, n: int, per_request: int, prefix: str) -> float:
    t0 = time.perf_counter()
    for start in range(0, n, per_request):
        body = {"cameras": [connect_body(f"{prefix}-{i:05d}", f"sim-{i % hosts:03d}")
                            for i in range(start, min(n, start + per_request))]}
        response = system.post("/api/v1/cameras/bulk", body)
        assert response.status_code == 202 and response.json()["refused"] == 0, response.text[:500]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=20, help="connects to time")
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--cameras", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients for the 202 latency")
    parser.add_argument("--per-client", type=int, default=25, help="connects per concurrent client")
    parser.add_argument("--onboard", type=int, default=2000, help="cameras onboarded in bulk (and 1/5 singly)")
    parser.add_argument("--connect-only", action="store_true", help="only row 1 (the connect until running)")
    parser.add_argument("--baseline", default="", help="git ref whose edge worker row 1 is also measured on")
    parser.add_argument("--paced-rate", type=float, default=50.0,
                        help="connects a second, in all, of the paced (open-loop) concurrent clients; 0: no paced row")
    parser.add_argument("--answer-only", action="store_true",
                        help="only the answering-202 figures (one client, concurrent clients); no Docker")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-control-"))
    redis_server = RedisServer(work / "redis")
    if args.answer_only:
        system = System(work / "system", redis_server.url, fresh_database_url("edgeproxy_bench"), heartbeat=2.0)
        try:
            answer_only(system, args)
        finally:
            system.stop()
            redis_server.stop()
        return
    client = docker.from_env()
    image = "edgeproxy/camera:bench"
    volumes = subprocess.run([str(REPO / "compose/camera-dev/build.sh"), image], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
    system = System(work / "system", redis_server.url, fresh_database_url("edgeproxy_bench"), camera_image=image,
                    camera_volumes=volumes, heartbeat=2.0)
    try:
        system.start_edge("bench-edge")
        api_connects(system, 2)  # warm up: imports, connections
        if args.baseline:
            commit = start_baseline_edge(system, args.baseline, work)
            print(f"connect: baseline edge = {args.baseline} ({commit}), interleaved with this tree's", flush=True)
            api_connects(system, 2, host=BASELINE_HOST)
        measured = interleaved_connects(system, client, image, volumes, args.n, bool(args.baseline))
        raw = measured["times"]["raw"]
        queued = api_queue_only(system, args.n)
        print(f"connect: raw Docker create+start             median {ms(statistics.median(raw))} ms, n={args.n}")
        print(f"connect: of which answering 202 (queued)      median {ms(statistics.median(queued))} ms")
        for side in ("new", "old") if args.baseline else ("new",):
            api, phases = measured["times"][side], measured["phases"][side]
            label = "this tree" if side == "new" else f"baseline {args.baseline}"
            overhead = statistics.median(api) - statistics.median(raw)
            print(f"connect: [{label}] POST /process?wait= until running  median {ms(statistics.median(api))} ms "
                  f"(p90 {ms(sorted(api)[int(0.9 * len(api)) - 1])} ms)")
            print(f"connect: [{label}] overhead over raw Docker  median {ms(overhead)} ms  (target <= 50 ms)")
            for index, phase in enumerate(PHASES):
                print(f"connect:   {phase:<62} median {ms(statistics.median(p[index] for p in phases))} ms")
        print(f"connect: machine load average {os.getloadavg()[0]:.1f}")

        if args.connect_only:
            return
        seed_fleet(system.env, args.hosts, args.cameras)
        listing, response = timed_gets(system, "/api/v1/processlist")
        count = len(response.json())
        print(f"list: GET /processlist with {count} cameras on {args.hosts + 1} hosts  "
              f"median {ms(statistics.median(listing))} ms, p90 {ms(sorted(listing)[18])} ms  (target <= 30 ms)")
        for path in ("/api/v1/cameras", "/api/v1/cameras?limit=500", "/api/v1/cameras?limit=100&offset=1900",
                     "/api/v1/cameras?host=sim-042", "/api/v1/cameras?status=running&ordering=-modified",
                     "/api/v1/hosts", "/api/v1/hosts?limit=100", "/api/v1/tasks"):
            times, response = timed_gets(system, path)
            print(f"list: GET {path:<52} {len(response.json()):>4} records  median {ms(statistics.median(times))} ms, "
                  f"p90 {ms(sorted(times)[18])} ms")

        latencies, wall = concurrent_connects(system, args.hosts, args.clients, args.per_client, "c16")
        print(f"connect: answering 202, {args.clients} concurrent clients, n={len(latencies)}  "
              f"median {ms(statistics.median(latencies))} ms, p99 {ms(percentile(latencies, 0.99))} ms  "
              f"(target <= 10 ms median, <= 30 ms p99)")
        if args.paced_rate:
            paced(system, args)
        singles = max(1, args.onboard // 5)
        single_wall = sequential_connects(system, args.hosts, singles, "one")
        bulk_wall = bulk_connects(system, args.hosts, args.onboard, 200, "bulk")
        print(f"onboarding: single connects, one client      {singles / single_wall:7.1f} cameras/s  (n={singles})")
        print(f"onboarding: single connects, {args.clients} clients       "
              f"{len(latencies) / wall:7.1f} cameras/s  (n={len(latencies)})")
        print(f"onboarding: bulk connects, 200 a request      {args.onboard / bulk_wall:7.1f} cameras/s  "
              f"(n={args.onboard} on {args.hosts} hosts; target >= 300)")
    finally:
        system.stop()
        redis_server.stop()
        for host in ("bench-edge", BASELINE_HOST):
            for container in client.containers.list(all=True, filters={"label": f"io.edgeproxy.host={host}"}):
                container.remove(force=True)


if __name__ == "__main__":
    main()
