"""Real servers for tests and benchmarks, started as direct children of the test process.

Direct children (Popen + wait) matter here: PID 1 of these machines reaps orphans slowly, so a
daemonised server would linger as a zombie after it is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[2]
RTSP_CAMERA_SCRIPT = REPO / "tests" / "support" / "rtsp_camera.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; return it, or raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {message}"
                       + (f" (last error: {last_error!r})" if last_error else ""))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc: what the benchmarks compare."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    def listening():
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex((host, port)) == 0

    wait_until(listening, timeout, message=f"port {port}")


class Process:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, args: list[str], log_path: Path, env: dict | None = None, cwd: Path | None = None):
        self.args = args
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd or REPO, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


class RedisServer:
    """A throw-away redis-server without persistence, on its own port."""

    def __init__(self, workdir: Path, port: int | None = None, address: str = "127.0.0.1"):
        self.port = port or free_port()
        self.address = address
        self.workdir = Path(workdir)
        self.process: Process | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://{self.address}:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = Process(
            ["redis-server", "--port", str(self.port), "--bind", self.address, "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir),
             # Bound to a test network's own address (never a public one): no password, so protected
             # mode, which refuses such clients, is off there.
             *([] if self.address == "127.0.0.1" else ["--protected-mode", "no"])],
            self.workdir / "redis.log",
        )
        wait_until(lambda: redis.Redis.from_url(self.url).ping(), 10, message="redis")

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host=self.address, port=self.port, db=db)


class RtspCamera:
    """Debian's GStreamer RTSP server serving a test pattern (tests/support/rtsp_camera.py)."""

    def __init__(self, workdir: Path, port: int | None = None, width: int = 640, height: int = 480,
                 fps: int = 25, codec: str = "h264", user: str | None = None, password: str | None = None,
                 gop: int = 0, pattern: str = "ball", path: str = "/test", address: str = "127.0.0.1"):
        self.port = port or free_port()
        self.address = address
        self.width, self.height, self.fps, self.codec = width, height, fps, codec
        self.user, self.password, self.gop, self.pattern, self.path = user, password, gop, pattern, path
        self.workdir = Path(workdir)
        self.process: Process | None = None
        self.start()

    def url(self, user: str | None = None, password: str | None = None) -> str:
        user = user if user is not None else self.user
        password = password if password is not None else self.password
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}{self.address}:{self.port}{self.path}"

    def start(self) -> None:
        args = ["/usr/bin/python3", str(RTSP_CAMERA_SCRIPT), "--port", str(self.port), "--width", str(self.width),
                "--height", str(self.height), "--fps", str(self.fps), "--codec", self.codec, "--gop", str(self.gop),
                "--pattern", self.pattern, "--path", self.path, "--address", self.address]
        if self.user:
            args += ["--user", self.user, "--password", self.password]
        # The camera server must not inherit the venv (python3-gi lives in Debian's python).
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        self.process = Process(args, self.workdir / f"rtsp-camera-{self.port}.log", env=env)
        wait_port(self.port, 10, host=self.address)

    def stop(self) -> None:
        if self.process:
            self.process.stop()


def python() -> str:
    """The interpreter running the tests (the project venv)."""
    return sys.executable
