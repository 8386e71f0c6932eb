"""Helpers for the camera-process tests: the real program as a subprocess, real Redis, real RTSP."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.services import Process, RedisServer, python, wait_until
from worker.camera import keys
from worker.camera.frame_format import to_bgr


class CameraProgram:
    """``python -m worker.camera`` with the given configuration, output in a log file."""

    def __init__(self, workdir: Path, redis_server: RedisServer, name: str, rtsp_url: str | None, **env: str):
        self.name = name
        self.redis = redis_server.client()
        base = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPROXY_")}
        base.update({
            "EDGEPROXY_CAMERA_NAME": name,
            "EDGEPROXY_REDIS_URL": redis_server.url,
            # These tests read the frames from Redis (the frame path without shared memory);
            # tests of the shared-memory ring turn it on with EDGEPROXY_FRAMES_SHM_DIR.
            "EDGEPROXY_FRAMES_SHM_DIR": "off",
            "PYTHONUNBUFFERED": "1",
        })
        if rtsp_url is not None:
            base["EDGEPROXY_RTSP_URL"] = rtsp_url
        base.update({k: str(v) for k, v in env.items()})
        self.process = Process([python(), "-m", "worker.camera"], workdir / f"camera-{name}.log", env=base)

    @property
    def pid(self) -> int:
        return self.process.pid

    def key(self, suffix: str) -> str:
        return f"{keys.PREFIX}{self.name}:{suffix}"

    def status(self) -> dict | None:
        raw = self.redis.get(keys.status(self.name))
        return json.loads(raw) if raw else None

    def wait_status(self, predicate, timeout: float, message: str) -> dict:
        def check():
            status = self.status()
            return status if status and predicate(status) else None

        try:
            return wait_until(check, timeout, interval=0.05, message=message)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; last status {self.status()}; output:\n{self.output()[-3000:]}") from None

    def wait_state(self, state: str, timeout: float) -> dict:
        return self.wait_status(lambda s: s["state"] == state, timeout, f"state {state}")

    def frame(self, which: str = "latest") -> tuple[dict, bytes] | None:
        key = keys.frame_latest(self.name) if which == "latest" else keys.frame_keyframe(self.name)
        entry = self.redis.hgetall(key)
        if not entry:
            return None
        return json.loads(entry[b"meta"]), entry[b"data"]

    def image(self, which: str = "latest") -> tuple[dict, np.ndarray] | None:
        """The published frame as (meta, H x W x 3 BGR array), converted like the frame server does."""
        frame = self.frame(which)
        return None if frame is None else (frame[0], to_bgr(*frame))

    def want(self, demand: str) -> None:
        """Act as a consumer: refresh ``demand:all`` or ``demand:key``."""
        key = keys.demand_all(self.name) if demand == "all" else keys.demand_keyframes(self.name)
        self.redis.set(key, "1", px=keys.DEMAND_TTL_MS)

    def output(self) -> str:
        return self.process.output()

    def stop(self) -> int | None:
        return self.process.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def cameras(tmp_path, redis_server):
    """Start camera programs; all are stopped at the end of the test."""
    started: list[CameraProgram] = []

    def start(name: str, rtsp_url: str | None, **env) -> CameraProgram:
        program = CameraProgram(tmp_path, redis_server, name, rtsp_url, **env)
        started.append(program)
        return program

    yield start
    for program in started:
        program.stop()


@pytest.fixture
def servers(tmp_path):
    """Other servers (RTSP cameras...) stopped at the end of the test."""
    started = []

    def track(server):
        started.append(server)
        return server

    yield track
    for server in reversed(started):
        server.stop()


def consume(program: CameraProgram, demand: str, seconds: float, which: str = "latest",
            interval: float = 0.02) -> list[tuple[float, dict, int]]:
    """Read a frame key like a consumer for ``seconds`` (refreshing demand); return
    ``(monotonic time, meta, data length)`` of every read that found a frame."""
    reads = []
    end = time.monotonic() + seconds
    last_refresh = 0.0
    while time.monotonic() < end:
        now = time.monotonic()
        if now - last_refresh > 1.0:
            program.want(demand)
            last_refresh = now
        frame = program.frame(which)
        if frame is not None:
            reads.append((time.monotonic(), frame[0], len(frame[1])))
        time.sleep(interval)
    return reads
