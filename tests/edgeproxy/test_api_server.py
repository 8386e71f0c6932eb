"""The API's gunicorn server, as edgeproxy/gunicorn_conf.py shapes it for bin/run, compose and the tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.services import REPO, Process, free_port, wait_port, wait_until


def test_each_api_worker_listens_on_a_socket_of_its_own(system):
    """As bin/run, compose and the image run it (SO_REUSEPORT): a new master binds at once while the
    workers of a killed one finish their requests, and the kernel hashes connections over the workers."""
    listeners = subprocess.run(["ss", "-Hltnp", f"sport = :{system.port}"], capture_output=True, text=True,
                               check=True).stdout.splitlines()
    owners = {int(pid) for line in listeners for pid in re.findall(r"pid=(\d+)", line)}
    assert len(listeners) == 2 and len(owners) == 2 and system.api.pid not in owners, listeners


def _api(tmp_path, redis_url: str):
    """The API under gunicorn as bin/run starts it (its own state folder and SQLite; nothing migrated:
    these tests look only at what a worker does before its first request)."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("EDGEPROXY_", "DJANGO_", "DATABASE_URL"))},
           "PYTHONPATH": str(REPO), "REDIS_URL": redis_url, "SECRET_KEY": "test-secret-key-not-for-production",
           "EDGEPROXY_STATE_DIR": str(tmp_path / "state")}
    (tmp_path / "state").mkdir()
    process = Process([sys.executable, "-m", "gunicorn", "-c", "python:edgeproxy.gunicorn_conf", "edgeproxy.wsgi",
                       "--bind", f"127.0.0.1:{port}"], tmp_path / "api.log", env=env, cwd=REPO)
    return process, port


def _workers(master: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{master}/task").iterdir()
            for child in (task / "children").read_text().split()]


def _connected_to(pid: int, port: int) -> bool:
    lines = subprocess.run(["ss", "-Htnp", "state", "established", f"dport = :{port}"], capture_output=True,
                           text=True, check=True).stdout
    return f"pid={pid}," in lines


def test_each_api_worker_is_ready_before_its_first_request(tmp_path, redis_server):
    """A new worker (at start, or one gunicorn replaced) loads its views and connects to the broker
    before it takes requests, so its first connects do not wait for that (about 0.3 s on 2 cores)."""
    process, _port = _api(tmp_path, redis_server.url)
    broker_port = int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
    try:
        wait_until(lambda: len(_workers(process.pid)) == 2, 30, message="two API workers")
        wait_until(lambda: all(_connected_to(pid, broker_port) for pid in _workers(process.pid)), 30,
                   message="every API worker connected to the broker, no request made")
    finally:
        process.stop()


def test_an_api_worker_whose_broker_is_down_at_start_still_serves(tmp_path):
    """The warm-up only logs what failed (the broker's password never shown); requests are answered."""
    process, port = _api(tmp_path, f"redis://:broker-pw-{os.getpid()}@127.0.0.1:{free_port()}/0")
    try:
        wait_until(lambda: "warm-up before the first request" in process.output(), 30, message="the warm-up's warning")
        wait_port(port, 30)
        response = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert response.status_code == 503 and response.json()["checks"]["broker"] == "down", response.text
        assert f"broker-pw-{os.getpid()}" not in process.output()
    finally:
        process.stop()


def _database_client_ports(pids: list[int], database_port: int) -> set[int]:
    """The local ports of the PostgreSQL sessions these processes hold."""
    lines = subprocess.run(["ss", "-Htnp", "state", "established", f"dport = :{database_port}"], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    return {int(line.split()[2].rsplit(":", 1)[1]) for line in lines
            if any(f"pid={pid}," in line for pid in pids)}


def test_a_database_session_the_server_ended_is_replaced_before_the_next_request(system):
    """A PostgreSQL restart or failover ends every session the API workers keep between requests; the
    next requests open new ones instead of failing (the check asks the socket, edgeproxy/postgresql)."""
    import psycopg

    workers = _workers(system.api.pid)
    database_port = int(system.database_url.rsplit(":", 1)[1].split("/")[0])
    name = system.database_url.rsplit("/", 1)[1]
    headers = {"Authorization": f"Token {system.token}"}
    wait_until(lambda: requests.get(f"{system.base_url}/api/v1/processlist", headers=headers, timeout=30).ok
               and len(_database_client_ports(workers, database_port)) >= 2, 60,
               message="sessions of both API workers open, kept between requests")
    ports = sorted(_database_client_ports(workers, database_port))
    with psycopg.connect(system.database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        # (Found first, ended after: in one query the server may call pg_terminate_backend on any session.)
        ended = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND client_port = ANY(%s)",
                              (name, ports)).fetchall()
        assert len(ended) == len(ports), (ended, ports)
        for (pid,) in ended:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        wait_until(lambda: not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)",
                                             ([pid for (pid,) in ended],)).fetchall(), 30,
                   message="the ended sessions gone from the server")
    answers = [requests.get(f"{system.base_url}/api/v1/processlist", headers=headers, timeout=30) for _ in range(24)]
    assert [a.status_code for a in answers] == [200] * 24, [a.text[:200] for a in answers if not a.ok]
