"""Flower never shows a Redis password: a real Flower and worker on a password-protected Redis.

Flower shows each worker's configuration (its Config tab, ``/api/workers``), as the worker
answers ``inspect conf``; every URL setting with a password (REDIS_URL, the broker, the frame bus)
must come out masked there, on every page and in every API answer.
"""

from __future__ import annotations

import os
import sys

import pytest
import redis
import requests

from tests.support.services import REPO, Process, free_port, wait_port, wait_until

REDIS_PASSWORD = "Fl0wer-redis-pw-7q"
FLOWER_AUTH = ("viewer", "Fl0wer-login-3k")


@pytest.fixture
def protected_redis(tmp_path):
    port = free_port()
    server = Process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                      "--requirepass", REDIS_PASSWORD, "--dir", str(tmp_path)], tmp_path / "redis.log")
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    wait_until(lambda: redis.Redis.from_url(url).ping(), 10, message="password-protected redis")
    yield url
    server.stop()


def test_flower_pages_and_api_show_no_redis_password(tmp_path, protected_redis):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("EDGEPROXY_", "DJANGO_", "FLOWER_"))},
        "DJANGO_SETTINGS_MODULE": "edgeproxy.settings",
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "REDIS_URL": protected_redis,
        "EDGEPROXY_STATE_DIR": str(tmp_path / "state"),
        "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH),
    }
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    port = free_port()
    worker = Process([sys.executable, "-m", "celery", "-A", "edgeproxy.celery", "worker", "--queues", "flower-test",
                      "--pool", "threads", "--concurrency", "1", "--hostname", "flowertest@%h", "--loglevel", "INFO"],
                     tmp_path / "worker.log", env=env)
    flower = Process([sys.executable, "-m", "celery", "-A", "edgeproxy.celery", "flower", "--address=127.0.0.1",
                      f"--port={port}"], tmp_path / "flower.log", env=env)
    try:
        wait_port(port, 30)
        base = f"http://127.0.0.1:{port}"

        def get(path: str) -> requests.Response:
            return requests.get(base + path, auth=FLOWER_AUTH, timeout=10)

        def worker_with_conf():
            body = get("/api/workers?refresh=1").json()
            return next((w for name, w in body.items() if name.startswith("flowertest@") and w.get("conf")), None)

        info = wait_until(worker_with_conf, 60, interval=0.5, message="Flower to show the worker's configuration")
        conf = info["conf"]
        assert conf["REDIS_URL"].startswith("redis://:") and conf["REDIS_URL"].endswith(
            f"@127.0.0.1:{protected_redis.rsplit(':', 1)[1]}")
        name = next(n for n in get("/api/workers").json() if n.startswith("flowertest@"))
        pages = {}
        for path in ("/", "/workers", f"/worker/{name}", "/broker", "/tasks", "/api/workers", "/api/workers?refresh=1",
                     "/api/tasks", "/api/task/types", "/metrics", "/healthcheck"):
            response = get(path)
            assert response.status_code == 200, (path, response.status_code)
            pages[path] = response.text
        assert "REDIS_URL" in pages[f"/worker/{name}"]  # the Config tab is there, masked
        leaks = [path for path, text in pages.items() if REDIS_PASSWORD in text]
        assert not leaks, leaks
        assert REDIS_PASSWORD not in flower.output() + worker.output()
    finally:
        flower.stop()
        worker.stop()
