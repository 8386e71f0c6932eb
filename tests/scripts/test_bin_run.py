"""``bin/run``, the embedded default, as a user runs it: the real script in a fresh state folder,
on free ports, with the local runtime and a real RTSP camera (issue 11, sections 2 and 5).

* One crash stops nothing: each of its processes killed with SIGKILL is back within 10 s, the
  others keep their pids, and the camera keeps streaming throughout.
* TERM stops everything: no process left (camera processes included), no port held.
* Everything under the state folder is owner-only, and no secret is on any command line.
* A second run on the same state folder works and reuses the admin password and the token.

bin/test runs as root, who can read any file: the tests check modes, not access.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
import requests

from tests.support.services import REPO, RtspCamera, free_port, wait_until

PROGRAMS = ("redis", "api", "control", "beat", "edge", "frames", "flower", "events", "webhooks")
RTSP_PASSWORD = "s3cret-Rtsp-pw"


class BinRun:
    """``bin/run`` started as a user would, in its own session; its output goes to a file."""

    def __init__(self, workdir: Path, state_dir: Path, ports: dict[str, int]):
        self.workdir, self.state_dir, self.ports = workdir, state_dir, ports
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("EDGEPROXY_", "DJANGO_", "FLOWER_")) and k not in ("DATABASE_URL", "REDIS_URL",
                                                                                         "SECRET_KEY")}
        env.update({
            "EDGEPROXY_STATE_DIR": str(state_dir),
            "EDGEPROXY_RUNTIME": "local",
            "EDGEPROXY_HOST_NAME": "bin-run-host",
            "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",
            "EDGEPROXY_API_BIND": f"127.0.0.1:{ports['api']}",
            "EDGEPROXY_GRPC_PORT": str(ports["frames"]),
            "FLOWER_PORT": str(ports["flower"]),
            "EDGEPROXY_HEARTBEAT_SECONDS": "1",
        })
        self.env = env
        self.output_path = workdir / f"bin-run-{time.monotonic_ns()}.out"
        self._output = open(self.output_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen([str(REPO / "bin/run")], cwd=REPO, env=env, stdout=self._output,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(self._started, 240, interval=0.2, message="bin/run to print its help")
        self.token = re.search(r"export TOKEN=(\w+)", self.output()).group(1)
        self.api = f"http://127.0.0.1:{ports['api']}"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {self.token}"

    def _started(self) -> bool:
        if self.popen.poll() is not None:
            raise AssertionError(f"bin/run exited ({self.popen.returncode}):\n{self.output()}")
        return "Call the API with your token" in self.output()

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def pid(self, program: str) -> int:
        """The pid supervisord runs ``program`` as (0 when it is not running)."""
        result = subprocess.run([str(REPO / ".venv/bin/supervisorctl"), "-s",
                                 f"unix://{self.state_dir}/supervisor.sock", "pid", program],
                                capture_output=True, text=True, timeout=10)
        return int(result.stdout.strip()) if result.stdout.strip().isdigit() else 0

    def pids(self) -> dict[str, int]:
        return {program: self.pid(program) for program in PROGRAMS}

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.api + path, timeout=10)

    def stop(self, timeout: float = 90) -> int:
        """TERM to bin/run alone, as a service manager or `kill` would send it."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        finally:
            self._output.close()

    def kill_everything(self) -> None:
        """After a failed test: nothing of this run may outlive it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for pid in processes_using(self.state_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def processes_using(state_dir: Path) -> list[int]:
    """Every process started for this state folder: its path is in the environment of all of them
    (bin/run exports it; the camera processes get their URL file's path below it)."""
    marker = str(state_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes() and (entry / "stat").read_text().split()[2] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def camera_processes(state_dir: Path) -> list[int]:
    pids = []
    for pid in processes_using(state_dir):
        with contextlib.suppress(OSError):
            if b"worker.camera" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
    return pids


def started(pid: int) -> tuple[int, str] | None:
    """``(pid, start time)``: names that very process, whatever later reuses its pid."""
    try:
        return pid, Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def alive(process: int | tuple[int, str]) -> bool:
    pid, start = process if isinstance(process, tuple) else (process, None)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and (start is None or fields[19] == start)


def port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def loose_modes(root: Path) -> list[str]:
    """Everything under ``root`` (itself included) that is not owner-only: folders must be 0700,
    files 0600, anything else (the supervisor socket) without group or other bits."""
    found = []
    for path in [root, *root.rglob("*")]:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:  # a temporary file gone meanwhile
            continue
        perms = stat.S_IMODE(mode)
        ok = (perms == 0o700 if stat.S_ISDIR(mode) else perms == 0o600 if stat.S_ISREG(mode)
              else not perms & 0o077)
        if not ok:
            found.append(f"{oct(perms)} {path}")
    return found


def secrets_on_command_lines(secrets: dict[str, str], exclude: set[int]) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        found += [f"{name} in the command line of pid {entry.name}: {cmdline.replace(chr(0), ' ')[:200]}"
                  for name, value in secrets.items() if value in cmdline]
    return found


class CameraWatch:
    """Reads the camera through the API every 0.2 s while processes are killed: every answer that
    the API gives must say the camera streams."""

    def __init__(self, run: BinRun, name: str):
        self.run, self.name = run, name
        self.answers: list[tuple[float, str, str | None]] = []  # (time, stream state, last_frame_at)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                response = self.run.get(f"/api/v1/process/{self.name}")
            except requests.RequestException:
                continue  # the API itself is down: nothing it says
            if response.status_code == 200:
                stream = response.json().get("stream") or {}
                self.answers.append((time.time(), stream.get("state"), stream.get("last_frame_at")))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def program_is_back(run: BinRun, program: str, old_pid: int) -> bool:
    """``program`` runs again under a new pid and does its job (port, health) again."""
    pid = run.pid(program)
    if not pid or pid == old_pid or not alive(pid):
        return False
    ports = run.ports
    if program == "redis":
        return redis.Redis(port=ports["redis"], socket_timeout=1).ping()
    if program == "api":
        return run.get("/healthz").status_code == 200
    if program == "frames":
        return port_answers(ports["frames"])
    if program == "flower":
        return requests.get(f"http://127.0.0.1:{ports['flower']}/", timeout=2).status_code == 401
    if program == "control":
        health = run.get("/healthz").json()
        return health["status"] == "ok" and health["checks"]["control_workers"] >= 1
    if program == "edge":
        return run.get("/api/v1/hosts/bin-run-host").json()["online"]
    return True  # beat: a new pid that stays up (supervisord's startsecs)


def streaming_since(run: BinRun, name: str, since: float) -> bool:
    """The API says the camera streams, with a frame newer than ``since`` (a Unix time)."""
    stream = run.get(f"/api/v1/process/{name}").json().get("stream") or {}
    last = stream.get("last_frame_at")
    if stream.get("state") != "streaming" or not last:
        return False
    return last / 1000 > since  # ms since the epoch


def test_bin_run_survives_each_crash_and_stops_cleanly(tmp_path):
    state = tmp_path / "state"
    ports = {"api": free_port(), "redis": free_port(), "frames": free_port(), "flower": free_port()}
    rtsp = RtspCamera(tmp_path / "rtsp", user="viewer", password=RTSP_PASSWORD)
    run = None
    try:
        run = BinRun(tmp_path, state, ports)
        wait_until(lambda: run.get("/api/v1/hosts/bin-run-host").json()["online"], 30, interval=0.2,
                   message="the edge host online")
        response = run.session.post(run.api + "/api/v1/process?wait=30", timeout=60,
                                    json={"name": "yard", "rtsp_endpoint": rtsp.url()})
        assert response.status_code in (200, 201, 202), response.text
        wait_until(lambda: streaming_since(run, "yard", 0), 60, interval=0.2, message="the camera to stream")
        cameras = camera_processes(state)
        assert len(cameras) == 1, f"camera processes of the local runtime: {cameras}"

        # Owner-only state and no secret on a command line, with everything running.
        assert loose_modes(state) == [], "not owner-only under the state folder"
        secrets = {
            "admin password": (state / "admin-password").read_text().strip(),
            "flower password": (state / "flower-password").read_text().strip(),
            "API token": run.token,
            "RTSP password": RTSP_PASSWORD,
        }
        # The test's own RTSP server is given its password as an argument: it is not part of bin/run.
        assert secrets_on_command_lines(secrets, exclude={rtsp.process.pid, os.getpid()}) == []
        flower = f"http://127.0.0.1:{ports['flower']}/"
        assert requests.get(flower, timeout=5).status_code == 401
        assert requests.get(flower, timeout=5, auth=("admin", secrets["flower password"])).status_code == 200

        watch = CameraWatch(run, "yard")
        camera = [started(pid) for pid in cameras]  # that very process, whatever reuses its pid later
        seen: set[tuple[int, str]] = set(camera)
        for program in PROGRAMS:
            before = run.pids()
            assert all(before.values()), f"not every program runs: {before}"
            seen |= {started(pid) for pid in before.values()}
            killed_at = time.time()
            os.kill(before[program], signal.SIGKILL)
            wait_until(lambda p=program, b=before: program_is_back(run, p, b[p]), 10, interval=0.1,
                       message=f"{program} to be back after SIGKILL")
            after = run.pids()
            others = {p: before[p] for p in PROGRAMS if p != program}
            assert {p: after[p] for p in others} == others, f"other programs restarted when {program} was killed"
            wait_until(lambda t=killed_at: streaming_since(run, "yard", t), 30, interval=0.2,
                       message=f"new frames of the camera after {program} was killed")
            # The same camera process throughout (the edge worker's successor adopts it).
            assert [started(pid) for pid in camera_processes(state)] == camera, \
                f"the camera process changed when {program} was killed"
        watch.stop()
        not_streaming = [a for a in watch.answers if a[1] != "streaming"]
        assert watch.answers and not not_streaming, f"the API said the camera was not streaming: {not_streaming[:5]}"

        assert loose_modes(state) == [], "not owner-only under the state folder"
        assert secrets_on_command_lines(secrets, exclude={rtsp.process.pid, os.getpid()}) == []

        # TERM: everything stops, camera processes included, and no port stays held.
        seen |= {started(pid) for pid in [*run.pids().values(), *processes_using(state)]}
        assert run.stop() == 0, run.output()
        assert [process for process in seen if process and alive(process)] == []
        assert processes_using(state) == []
        assert [name for name, port in ports.items() if port_answers(port)] == []
        assert loose_modes(state) == [], "not owner-only under the state folder"
    finally:
        if run is not None:
            run.kill_everything()
        rtsp.stop()


def test_bin_run_runs_again_on_the_same_state(tmp_path):
    """Stopped and started again: same admin password, same token, the data kept."""
    state = tmp_path / "state"
    ports = {"api": free_port(), "redis": free_port(), "frames": free_port(), "flower": free_port()}
    first = second = None
    try:
        first = BinRun(tmp_path, state, ports)
        password = (state / "admin-password").read_text()
        assert first.get("/api/v1/processlist").status_code == 200
        assert first.stop() == 0, first.output()
        assert processes_using(state) == []

        second = BinRun(tmp_path, state, ports)
        assert second.token == first.token
        assert (state / "admin-password").read_text() == password
        assert second.get("/healthz").status_code == 200
        login = requests.Session()
        page = login.get(second.api + "/admin/login/", timeout=10)
        assert page.status_code == 200
        answer = login.post(second.api + "/admin/login/", timeout=10, allow_redirects=False,
                            data={"username": "admin", "password": password.strip(),
                                  "csrfmiddlewaretoken": login.cookies["csrftoken"], "next": "/admin/"},
                            headers={"Referer": second.api + "/admin/login/"})
        assert answer.status_code == 302 and answer.headers["Location"] == "/admin/", "admin login failed"
        assert second.stop() == 0, second.output()
        assert processes_using(state) == []
        assert loose_modes(state) == []
    finally:
        for run in (first, second):
            if run is not None:
                run.kill_everything()


@pytest.mark.parametrize("command", [["migrate", "--noinput"], ["collectstatic", "--noinput"]])
def test_manage_commands_keep_a_new_state_folder_owner_only(tmp_path, command):
    """Not only bin/run: a management command run by hand (umask 022) creates the state folder,
    the SQLite database and the static files owner-only."""
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEPROXY_", "DJANGO_"))
           and k not in ("DATABASE_URL", "SECRET_KEY")}
    env["EDGEPROXY_STATE_DIR"] = str(state)
    result = subprocess.run(["/bin/sh", "-c", f'umask 022; exec "$0" manage.py {" ".join(command)}',
                             str(REPO / ".venv/bin/python")], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert any(state.iterdir()), "the command wrote nothing in the state folder"
    assert loose_modes(state) == []
