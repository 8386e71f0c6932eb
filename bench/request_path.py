"""The API's request path against a baseline: run with ``bin/bench request_path [--baseline main]``.

Two API servers (gunicorn, 2 workers and 8 threads each, as the test system runs it) share one fresh
PostgreSQL database and one Redis: this tree's code ("new") and the code of ``--baseline`` (a git ref,
extracted with ``git archive``: "old"). The database holds ``--cameras`` cameras on ``--hosts`` hosts
(rows only, as ``bin/bench control_plane`` seeds them; the hosts have a key and beat a day ahead, so
they stay online; nobody consumes their queues). With ``--live``, every camera also has live stream
facts in Redis, as a beating fleet's cameras do (``processes.live``).

In interleaved rounds (the order alternates each round), it prints for each server:
- ``GET /processlist``: median and p90 (the fleet unchanged between calls);
- answering ``202`` to a connect, one client after the other: median;
- answering ``202`` with ``--clients`` concurrent clients (median, p99), and the API server's CPU
  per connect (gunicorn's processes, from /proc: the figure the load of this shared machine does not
  move much).

Compare the two rows of one run, not runs with each other: the machine's load average is printed.
"""

import argparse
import contextlib
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.control_plane import connect_body, percentile, seed_fleet  # noqa: E402
from bench.dashboard import Server, load, side_by_side  # noqa: E402
from tests.support.services import cpu_seconds  # noqa: E402

LIVE = """
import time
import django
django.setup()
from django.utils import timezone
from processes import live
from processes.models import Camera
now = int(time.time() * 1000)
live.write({name: {"state": "streaming", "fps": 25.0, "width": 640, "height": 480, "codec": "h264",
                   "last_frame_at": now, "updated_at": now, "packets": now // 40, "reconnects": 0}
            for name in Camera.objects.values_list("name", flat=True)}, timezone.now())
"""


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (gunicorn's master and workers)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    total = cpu_seconds(pid)
    for child in children:
        with contextlib.suppress(OSError):  # (a worker that just ended)
            total += cpu_seconds(child)
    return total


def timed_lists(server: Server, token: str, n: int) -> list[float]:
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = session.get(server.base_url + "/api/v1/processlist", timeout=60)
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.text[:300]
    return times


def timed_connects(server: Server, token: str, cameras: list[tuple[str, str]]) -> tuple[list[float], list[str]]:
    """Connect each (name, host) in turn on one session: every answer's time, and what any answer
    other than 202 said."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    times, failures = [], []
    for name, host in cameras:
        t0 = time.perf_counter()
        response = session.post(server.base_url + "/api/v1/process", json=connect_body(name, host), timeout=60)
        times.append(time.perf_counter() - t0)
        if response.status_code != 202:
            failures.append(response.text[:300])
    return times, failures


def sequential_connects(server: Server, token: str, hosts: int, n: int, prefix: str) -> list[float]:
    times, failures = timed_connects(server, token, [(f"{prefix}-{i:04d}", f"sim-{i % hosts:03d}") for i in range(n)])
    assert not failures, failures[:3]
    return times


def concurrent_connects(server: Server, token: str, hosts: int, clients: int, per_client: int,
                        prefix: str) -> tuple[list[float], float]:
    """Each client its own session, connecting without waiting: every answer's time, and the API
    server's CPU seconds over all of them."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        mine, refused = timed_connects(server, token, [
            (f"{prefix}-{index:02d}-{i:03d}", f"sim-{(index * per_client + i) % hosts:03d}")
            for i in range(per_client)])
        with lock:
            latencies.extend(mine)
            failures.extend(refused)

    assert server.process is not None
    cpu0 = tree_cpu_seconds(server.process.popen.pid)
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = tree_cpu_seconds(server.process.popen.pid) - cpu0
    assert not failures, failures[:3]
    return latencies, cpu


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="main", help="git ref of the baseline server")
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--cameras", type=int, default=2000)
    parser.add_argument("--live", action="store_true", help="live stream facts in Redis for every camera")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--lists", type=int, default=7, help="GET /processlist per server and round")
    parser.add_argument("--singles", type=int, default=15, help="single connects per server and round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=6, help="connects per client, per server and round")
    args = parser.parse_args()

    redis_server, _, commit, old, new = side_by_side("request_path", args.baseline)
    servers = [old, new]
    print(f"request path bench: new = this tree, old = {args.baseline} ({commit}); load average {load()}", flush=True)
    try:
        new.manage("migrate", "--noinput")
        token = new.manage("create_api_token", "bench-admin", "--superuser").strip()
        seed_fleet(new.env, args.hosts, args.cameras)
        new.manage("shell", "-c", "from processes.models import EdgeHost; from datetime import timedelta; "
                                  "from django.utils import timezone; EdgeHost.objects.update("
                                  "last_heartbeat=timezone.now() + timedelta(days=1))")  # online for the run
        if args.live:
            new.python(LIVE)
        for server in servers:
            server.start()
            timed_lists(server, token, 2)  # warm: imports, connections
            sequential_connects(server, token, args.hosts, 2, f"warm-{server.label}")
        lists: dict[str, list[float]] = {s.label: [] for s in servers}
        singles: dict[str, list[float]] = {s.label: [] for s in servers}
        concurrent: dict[str, list[float]] = {s.label: [] for s in servers}
        cpu: dict[str, float] = dict.fromkeys(lists, 0.0)
        for round_ in range(args.rounds):  # the lists first: the fleet unchanged between their calls
            for server in servers if round_ % 2 == 0 else servers[::-1]:
                lists[server.label] += timed_lists(server, token, args.lists)
        for round_ in range(args.rounds):
            for server in servers if round_ % 2 == 0 else servers[::-1]:
                singles[server.label] += sequential_connects(server, token, args.hosts, args.singles,
                                                             f"one-{server.label}-{round_}")
                latencies, seconds = concurrent_connects(server, token, args.hosts, args.clients, args.per_client,
                                                         f"c-{server.label}-{round_}")
                concurrent[server.label] += latencies
                cpu[server.label] += seconds
        print(f"{args.cameras} cameras on {args.hosts} hosts{' with live stream facts' if args.live else ''}; "
              f"{args.rounds} interleaved rounds; load average at the end {load()}")
        for server in servers:
            label = server.label
            n = len(concurrent[label])
            print(f"  {label}: GET /processlist median {ms(statistics.median(lists[label]))} ms, "
                  f"p90 {ms(percentile(lists[label], 0.9))} ms (n={len(lists[label])}); "
                  f"202 one client median {ms(statistics.median(singles[label]))} ms (n={len(singles[label])}); "
                  f"202 {args.clients} clients median {ms(statistics.median(concurrent[label]))} ms, "
                  f"p99 {ms(percentile(concurrent[label], 0.99))} ms (n={n}), API CPU "
                  f"{cpu[label] * 1000 / n:.1f} ms a connect", flush=True)
    finally:
        for server in servers:
            server.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
