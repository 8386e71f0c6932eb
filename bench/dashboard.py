"""Dashboard benchmark: the fleet page at scale in Chromium, against a baseline. Run with ``bin/bench dashboard``.

Two API servers (gunicorn, 2 workers and 8 threads each, as the test system runs it) share one fresh
PostgreSQL database and one Redis: this tree's code ("new") and the code of ``--baseline`` (a git ref,
default ``main``: extracted with ``git archive`` to a temporary folder; "old"). The database is seeded
with ``--sizes`` cameras (bulk_create, 50 cameras per fake host; rows only: no container and no edge
worker; the hosts' last heartbeat is set a day ahead so that they stay online for the run, and they
have no frame server, so a snapshot answers its reason at once).

For each size and server, in interleaved rounds (the order alternates), Debian's Chromium (Playwright)
opens the fleet page, logged in, and the page prints:
- first view: time to the first byte, DOMContentLoaded, load, the first animation frame with a camera
  card in the page (from navigation start, Navigation Timing), and the document's size;
- the live refresh with nothing changed and with one camera changed (its fps, in the database): the
  requests the page's own refresh made and their bytes (headers and body, as Chromium counts them), and
  whether the changed card showed the change; snapshot requests while the page was open (on-screen
  cards only, in both: the old page checked each card's position every second).

Medians over ``--rounds`` (``--large-rounds`` above 10,000 cameras); the machine's load average is
printed with the figures (2 cores shared by several developers: compare the two rows of one run, not
runs with each other). A page that does not open within ``--old-timeout`` is reported as such.

What the figures leave out: the fake hosts never beat, so "nothing changed" is a fleet at rest (in a
live fleet the hosts panel, 8 hosts at most, comes along whenever one of them beats); the new page's
counts are one aggregate kept 5 s per server process (``TONE_COUNTS_SECONDS``), so some of the first
views here found it cached (it costs 0.1-0.2 s at 50,000 cameras on this machine when it is not).
"""

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.baseline import baseline_tree  # noqa: E402
from tests.support.services import Process, RedisServer, free_port, wait_until  # noqa: E402
from tests.support.system import fresh_database_url  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
USER = "bench-admin"
CAMERAS_PER_HOST = 50
CHANGED = "sim-cam-00001"  # on the first page of both
QUIET_REFRESHES = 2
# The first animation frame in which a camera card is in the document, from navigation start.
FIRST_CARD_PROBE = """
(() => {
  const look = () => {
    if (document.querySelector('.card')) { window.__firstCard = performance.now(); return; }
    requestAnimationFrame(look);
  };
  requestAnimationFrame(look);
})();
"""

SEED = """
import sys, uuid
from datetime import timedelta
import django
django.setup()
from django.utils import timezone
from processes.models import Camera, EdgeHost
from edgeproxy import crypto
start, end, per_host = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
now = timezone.now()
ahead = now + timedelta(days=1)  # a bench fake: no host beats, and they must stay online
first_host, last_host = start // per_host, (end - 1) // per_host
EdgeHost.objects.bulk_create([EdgeHost(name=f"sim-{i:04d}", queue=f"host.sim-{i:04d}", runtime="docker",
    last_heartbeat=ahead, facts={"cpus": 4, "memory": 8 << 30, "cpu_percent": 12.0, "memory_used": 2 << 30},
    images=[{"repository": "edgeproxy/camera", "tag": v} for v in ("0.0.9", "0.0.10")])
    for i in range(first_host, last_host + 1)], ignore_conflicts=True)
hosts = {h.name: h for h in EdgeHost.objects.all()}
secret = crypto.encrypt("rtsp://user:pass@10.0.0.1/stream")
stream = {"state": "streaming", "fps": 25.0, "width": 640, "height": 480, "codec": "h264", "reconnects": 0}
Camera.objects.bulk_create([Camera(name=f"sim-cam-{i:05d}", rtsp_endpoint_encrypted=secret,
    rtsp_endpoint_masked="rtsp://user:***@10.0.0.1/stream", image_tag="edgeproxy/camera:0.0.10",
    host=hosts[f"sim-{i // per_host:04d}"], status="running", container_id=uuid.uuid4().hex * 2,
    state={"Status": "running", "Running": True}, stream=stream, observed_at=now) for i in range(start, end)],
    batch_size=1000)
"""



def change_fps(database_url: str, name: str, fps: float) -> None:
    """One camera's fps, written to its row (committed when this returns)."""
    import psycopg
    from psycopg.types.json import Jsonb

    stream = {"state": "streaming", "fps": fps, "width": 640, "height": 480, "codec": "h264", "reconnects": 0}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE processes_camera SET stream = %s WHERE name = %s", (Jsonb(stream), name))


class Server:
    """One API server (gunicorn) running the code of ``tree``."""

    def __init__(self, label: str, tree: Path, work: Path, database_url: str, redis_url: str, secret_key: str):
        self.label, self.tree = label, tree
        state = work / f"state-{label}"
        state.mkdir(parents=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("EDGEPROXY_", "DJANGO_", "DATABASE_URL"))},
            "DJANGO_SETTINGS_MODULE": "edgeproxy.settings", "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url, "REDIS_URL": redis_url, "EDGEPROXY_FRAMES_REDIS_URL": redis_url,
            "SECRET_KEY": secret_key, "EDGEPROXY_STATE_DIR": str(state),
        }
        self.work = work
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: Process | None = None

    def manage(self, *args: str) -> str:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=self.tree, env=self.env, check=True,
                              capture_output=True, text=True, timeout=600).stdout

    def python(self, code: str, *args: str) -> None:
        subprocess.run([sys.executable, "-c", code, *args], cwd=self.tree, env=self.env, check=True, timeout=900)

    def start(self) -> None:
        self.manage("collectstatic", "--noinput")
        self.process = Process([sys.executable, "-m", "gunicorn", "-c", "python:edgeproxy.gunicorn_conf",
                                "edgeproxy.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", "2",
                                "--threads", "8", "--timeout", "300"],
                               self.work / f"{self.label}.log", env=self.env, cwd=self.tree)
        import requests

        wait_until(lambda: requests.get(self.base_url + "/healthz", timeout=2).status_code in (200, 503), 60,
                   message=f"{self.label} server")

    def stop(self) -> None:
        if self.process:
            self.process.stop()


def side_by_side(bench: str, baseline: str) -> tuple[RedisServer, str, str, Server, Server]:
    """A fresh Redis and database, the baseline's commit, and two API servers on them with one
    secret key (so one login or token serves both): ``baseline``'s code ("old") and this tree's ("new")."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-{bench}-"))
    redis_server = RedisServer(work / "redis")
    database_url = fresh_database_url(f"edgeproxy_bench_{bench}")
    tree, commit = baseline_tree(baseline, work)
    secret_key = secrets.token_urlsafe(32)
    return (redis_server, database_url, commit, Server("old", tree, work, database_url, redis_server.url, secret_key),
            Server("new", REPO, work, database_url, redis_server.url, secret_key))


def first_view(context, server: Server, timeout_ms: int) -> dict:
    page = context.new_page()
    try:
        page.add_init_script(FIRST_CARD_PROBE)
        page.goto(server.base_url + "/", wait_until="load", timeout=timeout_ms)
        page.wait_for_function("window.__firstCard !== undefined", timeout=timeout_ms)
        figures = page.evaluate("""() => {
          const n = performance.getEntriesByType('navigation')[0];
          return {ttfb: n.responseStart, dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd,
                  first_card: window.__firstCard, bytes: n.encodedBodySize,
                  cards: document.querySelectorAll('.card').length,
                  on_screen: Array.from(document.querySelectorAll('.card')).filter(c => {
                    const r = c.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; }).length};
        }""")
        assert "/login/" not in page.url, "not logged in"
        return figures
    finally:
        page.close()


def pump(page, predicate, timeout_ms: int, message: str) -> None:
    """Let the page run (Playwright delivers its events while it waits) until ``predicate()``."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {message}")
        page.wait_for_timeout(50)


def is_refresh(url: str) -> bool:
    return "partial=fleet" in url or "partial=changes" in url


def refreshes(context, server: Server, changer, fps: float, timeout_ms: int) -> dict:
    """Open the page; the page's own refreshes with nothing changed, then the first after one camera's change."""
    page = context.new_page()
    done: list[dict] = []
    snapshots: list[str] = []

    def finished(request):
        if is_refresh(request.url):
            sizes = request.sizes()
            response = request.response()
            done.append({"bytes": sizes["responseHeadersSize"] + sizes["responseBodySize"],
                         "body": sizes["responseBodySize"], "status": response.status if response else None,
                         "ms": request.timing["responseEnd"],
                         "ended": request.timing["startTime"] + request.timing["responseEnd"]})
        elif "snapshot.jpg" in request.url:
            snapshots.append(request.url)

    page.on("requestfinished", finished)
    try:
        page.goto(server.base_url + "/", wait_until="load", timeout=timeout_ms)
        pump(page, lambda: len(done) >= QUIET_REFRESHES, timeout_ms, "refreshes")
        quiet = list(done[:QUIET_REFRESHES])
        changer(fps)
        changed_at = time.time() * 1000  # committed (epoch ms)

        def bringing_it():  # the first refresh answered after the change with something in it
            return next((r for r in done if r["ended"] > changed_at and r["status"] != 204), None)

        pump(page, lambda: bringing_it() is not None, timeout_ms, "a refresh after the change")
        after = bringing_it()
        card = page.locator(f".card[data-camera={CHANGED}]")
        shown = False
        try:
            card.filter(has_text=f"{fps:.1f} fps").wait_for(timeout=30_000)
            shown = True
        except Exception:  # noqa: BLE001 - reported, not raised
            shown = False
        return {"quiet_bytes": statistics.median(r["bytes"] for r in quiet),
                "quiet_body": statistics.median(r["body"] for r in quiet),
                "quiet_status": quiet[0]["status"], "quiet_ms": statistics.median(r["ms"] for r in quiet),
                "changed_bytes": after["bytes"], "changed_body": after["body"], "changed_status": after["status"],
                "changed_ms": after["ms"], "shown": shown, "requests_per_refresh": 1,
                "snapshots": len(snapshots), "snapshot_cameras": len(set(snapshots)),
                "cards": page.locator(".card").count()}
    finally:
        page.close()


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,50000", help="cameras in the database, comma-separated, ascending")
    parser.add_argument("--rounds", type=int, default=5, help="first views per server, up to 10,000 cameras")
    parser.add_argument("--large-rounds", type=int, default=2,
                        help="first views per server above 10,000 cameras (the old page takes a minute or more)")
    parser.add_argument("--baseline", default="main", help="git ref of the baseline page")
    parser.add_argument("--old-timeout", type=float, default=120, help="seconds a page may take to open")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import playwright.sync_api as playwright_api

    redis_server, database_url, commit, old, new = side_by_side("dashboard", args.baseline)
    servers = [old, new]
    password = secrets.token_urlsafe(12)
    print(f"dashboard bench: new = this tree, old = {args.baseline} ({commit}); load average {load()}", flush=True)
    try:
        new.manage("migrate", "--noinput")
        new.manage("create_api_token", USER, "--superuser", f"--password={password}")
        for server in servers:
            server.start()
        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            # One session for both servers: the same database and secret key (cookies are per host, not port).
            context = browser.new_context(viewport={"width": 1440, "height": 960})
            page = context.new_page()
            page.goto(new.base_url + "/login/")
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url(new.base_url + "/")
            page.close()
            seeded = 0
            fps = 10.0
            for size in sizes:
                t0 = time.perf_counter()
                new.python(SEED, str(seeded), str(size), str(CAMERAS_PER_HOST))
                seeded = size
                print(f"\n{size} cameras on {-(-size // CAMERAS_PER_HOST)} hosts (seeded in "
                      f"{time.perf_counter() - t0:.1f} s)", flush=True)
                views: dict[str, list[dict]] = {s.label: [] for s in servers}
                opening = list(servers)
                for server in servers:  # warm: imports, connections, templates
                    try:
                        first_view(context, server, int(args.old_timeout * 1000))
                    except playwright_api.TimeoutError:
                        print(f"  {server.label}: the page did not open within {args.old_timeout:.0f} s", flush=True)
                        opening.remove(server)
                rounds = args.rounds if size <= 10_000 else args.large_rounds
                for round_ in range(rounds):
                    for server in (opening if round_ % 2 == 0 else opening[::-1]):
                        views[server.label].append(first_view(context, server, int(args.old_timeout * 1000)))
                print(f"  first view, median of {rounds} (ms from navigation start; load average {load()}):")
                print(f"    {'':5} {'TTFB':>8} {'DOMContentLoaded':>17} {'load':>8} {'first card':>11} "
                      f"{'document':>12} {'cards':>6} {'on screen':>10}")
                for server in opening:
                    rows = views[server.label]
                    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                    print(f"    {server.label:5} {med['ttfb']:8.0f} {med['dcl']:17.0f} {med['load']:8.0f} "
                          f"{med['first_card']:11.0f} {med['bytes'] / 1024:9.0f} KiB {med['cards']:6.0f} "
                          f"{med['on_screen']:10.0f}")
                print("  live refresh (the page's own requests; bytes = headers + body as Chromium counts them):")
                for server in opening:
                    fps += 1.0
                    r = refreshes(context, server, lambda value: change_fps(database_url, CHANGED, value), fps,
                                  int(args.old_timeout * 1000))
                    print(f"    {server.label:5} nothing changed: {r['requests_per_refresh']} request, "
                          f"{r['quiet_bytes']:.0f} B (body {r['quiet_body']:.0f} B, HTTP {r['quiet_status']}, "
                          f"{r['quiet_ms']:.0f} ms); one camera changed: {r['changed_bytes']:.0f} B "
                          f"(body {r['changed_body']:.0f} B, HTTP {r['changed_status']}, {r['changed_ms']:.0f} ms), "
                          f"change shown: {'yes' if r['shown'] else 'NO'}; snapshot requests while open: "
                          f"{r['snapshots']} for {r['snapshot_cameras']} of {r['cards']} cards", flush=True)
            browser.close()
        print(f"\nload average at the end {load()}")
    finally:
        for server in servers:
            server.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
