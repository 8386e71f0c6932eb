"""The whole edgeproxy system as real processes, for black-box tests and benchmarks.

``System`` starts, against a real PostgreSQL database (or, with ``database_url=None``, the embedded
default: SQLite in its own state directory, configured by the one settings definition exactly as
``bin/run`` leaves it) and a real Redis: the API under gunicorn,
the control worker (Celery, ``control`` queue) and any number of edge workers (``python -m worker``)
with their own host names. Every process writes to a log file under ``workdir`` so tests can check
what was printed (no password anywhere, for one).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import requests

from tests.support.services import REPO, Process, free_port, wait_until

# An address where no database answers: edge workers get it to prove they never use one.
NO_DATABASE_URL = "postgres://nobody:nothing@127.0.0.1:9/none"


def fresh_database_url(name: str) -> str:
    """A fresh PostgreSQL database ``name`` on the server of EDGEPROXY_TEST_DATABASE_URL."""
    base = os.environ.get("EDGEPROXY_TEST_DATABASE_URL")
    if not base:
        raise RuntimeError(
            "EDGEPROXY_TEST_DATABASE_URL is not set: run the tests with bin/test, which starts PostgreSQL"
        )
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


class System:
    def __init__(self, workdir: Path, redis_url: str, database_url: str | None, camera_image: str = "",
                 camera_volumes: str = "", runtime: str = "docker", heartbeat: float = 1.0,
                 extra_env: dict | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.database_url = database_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.edges: dict[str, Process] = {}
        self.frame_ports: dict[str, int] = {}
        self.frame_servers: dict[str, Process] = {}
        self.processes: list[Process] = []
        # This system's shared-memory frame rings (not the machine's /dev/shm/edgeproxy).
        self.shm_dir = f"/dev/shm/edgeproxy-test-{os.getpid()}-{self.port}"
        # And its camera secret files (EDGEPROXY_CAMERA_SECRETS_DIR).
        self.secrets_dir = f"/dev/shm/edgeproxy-secrets-test-{os.getpid()}-{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("EDGEPROXY_", "DJANGO_", "DATABASE_URL"))},
            "DJANGO_SETTINGS_MODULE": "edgeproxy.settings",
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            **({"DATABASE_URL": database_url} if database_url else {}),
            "REDIS_URL": redis_url,
            "EDGEPROXY_FRAMES_REDIS_URL": redis_url,
            "SECRET_KEY": "test-secret-key-not-for-production",
            "EDGEPROXY_STATE_DIR": str(self.workdir / "state"),
            "EDGEPROXY_HEARTBEAT_SECONDS": str(heartbeat),
            "EDGEPROXY_RECONCILE_SECONDS": str(max(1.0, 2 * heartbeat)),
            "EDGEPROXY_RUNTIME": runtime,
            "EDGEPROXY_CAMERA_IMAGE": camera_image,
            "EDGEPROXY_CAMERA_VOLUMES": camera_volumes,
            "EDGEPROXY_FRAMES_SHM_DIR": self.shm_dir,
            "EDGEPROXY_CAMERA_SECRETS_DIR": self.secrets_dir,
            **(extra_env or {}),
        }
        (self.workdir / "state").mkdir(exist_ok=True)  # as bin/run makes it
        # What bin/run does before it starts the programs (migrate, collect the admin and dashboard
        # assets WhiteNoise serves, an admin token) and a read-only token, in one Django process: a
        # process each cost ~2 s of start-up a System on a slow machine, 12 Systems a test run.
        self.token, self.readonly_token = json.loads(self._manage(
            "shell", "--no-imports", "-c",
            "import io, json\n"
            "from django.core.management import call_command\n"
            "call_command('migrate', interactive=False, verbosity=0)\n"
            "call_command('collectstatic', interactive=False, verbosity=0)\n"
            "tokens = [io.StringIO(), io.StringIO()]\n"
            "call_command('create_api_token', 'admin', superuser=True, stdout=tokens[0])\n"
            "call_command('create_api_token', 'viewer', read_only=True, stdout=tokens[1])\n"
            "print(json.dumps([t.getvalue().strip() for t in tokens]))\n"
        ))
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {self.token}"
        self.api = self._start(
            "api",
            [sys.executable, "-m", "gunicorn", "-c", "python:edgeproxy.gunicorn_conf", "edgeproxy.wsgi",
             "--bind", f"127.0.0.1:{self.port}"],
        )
        self.control = self._start(
            "control",
            [sys.executable, "-m", "celery", "-A", "edgeproxy.celery", "worker", "--queues", "control",
             "--pool", "threads", "--concurrency", "4", "--hostname", "control@%h", "--without-mingle",
             "--without-gossip", "--loglevel", "INFO"],
        )
        self.beat = self._start(
            "beat",
            [sys.executable, "-m", "celery", "-A", "edgeproxy.celery", "beat", "--loglevel", "INFO",
             "--schedule", str(self.workdir / "beat-schedule")],
        )
        wait_until(self._api_ready, 30, message="API")

    # --- processes ------------------------------------------------------------------------------

    def _manage(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True,
                                text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {args[0]} failed: {result.stderr[-2000:]}")
        return result.stdout

    def _start(self, name: str, args: list[str], env: dict | None = None) -> Process:
        process = Process(args, self.workdir / "logs" / f"{name}.log", env=env or self.env, cwd=REPO)
        self.processes.append(process)
        return process

    def _api_ready(self) -> bool:
        return requests.get(self.base_url + "/healthz", timeout=2).status_code in (200, 503)

    def start_edge(self, host: str, wait_online: bool = True, netns: str | None = None, **env) -> Process:
        """An edge worker for ``host`` and, on first start, its frame server (gRPC, own port).
        With ``netns``, both run in that network namespace (a host on its own network)."""
        if host not in self.frame_ports:
            self.frame_ports[host] = free_port()
        edge_env = {
            **self.env,
            "DATABASE_URL": NO_DATABASE_URL,
            "EDGEPROXY_HOST_NAME": host,
            "EDGEPROXY_STATE_DIR": str(self.workdir / f"state-{host}"),
            "EDGEPROXY_GRPC_PORT": str(self.frame_ports[host]),
            "EDGEPROXY_FRAMES_ADVERTISE": f"127.0.0.1:{self.frame_ports[host]}",
            **{k: str(v) for k, v in env.items()},
        }
        prefix = ["ip", "netns", "exec", netns] if netns else []
        if host not in self.frame_servers:
            self.frame_servers[host] = self._start(f"frames-{host}", [*prefix, sys.executable, "-m", "worker.frames"],
                                                   env=edge_env)
        process = self._start(f"edge-{host}", [*prefix, sys.executable, "-m", "worker"], env=edge_env)
        self.edges[host] = process
        if wait_online:
            self.wait_host_online(host)
        return process

    def stop_edge(self, host: str) -> None:
        self.edges.pop(host).stop()

    def wait_host_online(self, host: str, timeout: float = 30) -> dict:
        def online():
            response = self.get(f"/api/v1/hosts/{host}")
            return response.status_code == 200 and response.json()["online"] and response.json()

        return wait_until(online, timeout, interval=0.2, message=f"host {host} online")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self._stop_local_cameras()
        import shutil

        shutil.rmtree(self.shm_dir, ignore_errors=True)
        shutil.rmtree(self.secrets_dir, ignore_errors=True)

    def _stop_local_cameras(self) -> None:
        """Camera processes of the local runtime outlive their edge worker on purpose (a worker
        restart must not cut the streams). At the end of a test they go: every camera program whose
        environment points into this system's directory."""
        marker = str(self.workdir).encode()
        doomed = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if b"worker.camera" in (entry / "cmdline").read_bytes() and marker in (entry / "environ").read_bytes():
                    doomed.append(int(entry.name))
            except OSError:
                continue
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while doomed and time.monotonic() < deadline:
            doomed = [pid for pid in doomed if _running(pid)]
            time.sleep(0.1)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # --- the database, seen from outside ---------------------------------------------------------

    @property
    def sqlite_path(self) -> Path | None:
        """The embedded default's SQLite file (bin/run's place for it), None on PostgreSQL."""
        return None if self.database_url else self.workdir / "state" / "edgeproxy.sqlite3"

    def connect_database(self):
        """A connection of our own to the system's database (autocommit)."""
        if self.sqlite_path:
            return sqlite3.connect(self.sqlite_path, timeout=60, isolation_level=None)
        return psycopg.connect(self.database_url, autocommit=True)

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        """Rows of a read-only query (``%s`` placeholders, both databases)."""
        with contextlib.closing(self.connect_database()) as conn:
            if self.sqlite_path:
                query = query.replace("%s", "?")
            return list(conn.execute(query, params).fetchall())

    def logs(self) -> str:
        return "\n".join(p.output() for p in self.processes)

    # --- HTTP -----------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 90)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json=None, **kwargs) -> requests.Response:
        return self.request("POST", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def camera(self, name: str) -> dict:
        response = self.get(f"/api/v1/process/{name}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_camera(self, name: str, predicate, timeout: float = 30, message: str = "camera state") -> dict:
        seen = []

        def matching():
            camera = self.camera(name)
            seen[:] = [camera]
            return camera and predicate(camera) and camera

        try:
            return wait_until(matching, timeout, interval=0.2, message=f"{name}: {message}")
        except TimeoutError as exc:  # say what the camera looked like instead
            raise TimeoutError(f"{exc}; last seen: {seen[0] if seen else None}") from None


def _running(pid: int) -> bool:
    """Alive and not a zombie (PID 1 here reaps orphans slowly)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
