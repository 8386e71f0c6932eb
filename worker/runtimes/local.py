"""Camera processes as supervised child processes: the embedded default where no Docker answers.

Each camera is the same camera program the image runs (``python -m worker.camera`` by default),
started by the edge worker with the same status semantics as a Docker container under the
``unless-stopped`` restart policy:

* ``running`` while the child lives; a child that exits on its own is ``restarting`` and comes
  back after a back-off (100 ms doubling up to a minute, reset after 10 s of good running);
* ``exited`` after ``stop`` (SIGTERM, SIGKILL after the timeout): it is not restarted;
* ``state`` carries the Docker ``ContainerState`` keys; ``container_id`` is ``local-<uuid>``,
  stable for the life of the camera (a new one when its spec changes);
* the last 100 lines of output (both streams, as ``docker logs --tail 100``) are returned split
  into stdout and stderr, redacted, in base64. The children write them to per-camera files in the
  state directory (0600, ``stdout.log`` and ``stderr.log``, each cut back past 1 MiB), never to a
  pipe to the worker, so they do not depend on the worker being alive.

The RTSP and RTMP URLs are handed over in 0600 files (``EDGEPROXY_RTSP_URL_FILE``,
``EDGEPROXY_RTMP_URL_FILE``), never in the environment or on the command line. A small record per
camera (0600, no URL) lets a restarted
edge worker know its cameras again: the camera processes a killed worker left running are adopted
(supervised, stopped and restarted as if the new worker had started them) once they are proven to
be that camera's process (same pid and start time as recorded, the camera's command line, its
name and URL file in the environment, output to its log files); cameras that were not stopped on
purpose and have no process are started again, as Docker does when its daemon restarts. A process
that cannot be proven to be ours is never signalled. One lock file keeps two workers from managing
the same host's state directory.

Thread-safe: the edge worker calls it from several Celery threads at once, and one supervisor
thread per runtime notices exits and restarts children.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import platform
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from edgeproxy.env import envstr

from .base import (
    SECRET_URL_FILES,
    STATE_KEYS,
    ZERO_TIME,
    CameraSpec,
    Observed,
    Runtime,
    RuntimeError_,
    check_name,
    encode_logs,
)

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_COMMAND = (sys.executable, "-m", "worker.camera")
# The file in the camera's directory of each secret URL, by the camera program's variable.
SECRET_FILES = SECRET_URL_FILES
LOG_LINES = 100
MAX_LINE_BYTES = 16 * 1024
MAX_LOG_BYTES = 1024 * 1024  # per stream and camera; past it the file is cut back to its last lines
LOG_FILES = {False: "stdout.log", True: "stderr.log"}  # by "is stderr"
# The exit code of an adopted process that ended on its own: not our child, so its real exit
# status is usually gone (reaped by init) before we can read it.
UNKNOWN_EXIT = 255
RESET_BACKOFF_AFTER = 10.0  # seconds of running after which a crash starts the back-off over
_RECORD_VERSION = 1
# What the child inherits from the worker's environment; nothing else (no worker secrets).
_ENV_PASSTHROUGH = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "VIRTUAL_ENV",
                    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "LD_LIBRARY_PATH")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _exit_code(returncode: int) -> int:
    """Docker's convention: a child killed by signal N exits with 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def _proc_stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state letter first), [] if none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return []
    return data[data.rfind(")") + 2:].split()


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state letter, start time in clock ticks) of a process, None if there is none (Linux)."""
    fields = _proc_stat_fields(pid)
    if len(fields) < 20:
        return None
    return fields[0], fields[19]


def _alive(pid: int, start: str | None) -> bool:
    """Is that very process (same start time, so not a reused pid) still running?"""
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return start is None or stat[1] == start


def _proc_exit_status(pid: int, start: str) -> int | None:
    """The wait status a zombie still shows in /proc (Linux >= 3.5), None once it is reaped."""
    fields = _proc_stat_fields(pid)
    if len(fields) < 50 or fields[0] != "Z" or fields[19] != start:
        return None
    return int(fields[49])


class _AdoptedProcess:
    """A camera process a previous worker started, watched through a pidfd: the pidfd names that
    very process (never a later one with the same pid), becomes readable when it exits and is
    what signals are sent through. The parts of ``subprocess.Popen`` the runtime uses."""

    def __init__(self, pid: int, start: str, pidfd: int):
        self.pid = pid
        self.start = start
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._signalled: int | None = None

    def _exited(self) -> None:
        if self.returncode is None:
            status = _proc_exit_status(self.pid, self.start)
            if status is not None:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif self._signalled is not None:
                self.returncode = -self._signalled  # it ended after our signal: say so
            else:
                self.returncode = UNKNOWN_EXIT

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._pidfd], [], [], 0)[0]:
            self._exited()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)  # type: ignore[arg-type]  # never None here
            self._exited()
        return self.returncode  # type: ignore[return-value]  # _exited() always sets it

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            signal.pidfd_send_signal(self._pidfd, sig)
            self._signalled = sig

    def __del__(self):
        with contextlib.suppress(Exception):
            os.close(self._pidfd)


def _read_proc(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as fh:
        return fh.read()


def _split_lines(data: bytes) -> list[bytes]:
    """Lines with their newline (the last one may have none), long ones cut into pieces."""
    lines = [line + b"\n" for line in data.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    return [line[i:i + MAX_LINE_BYTES] for line in lines if line for i in range(0, len(line), MAX_LINE_BYTES)]


def _tail_lines(paths: list[Path], count: int) -> list[bytes]:
    """The last ``count`` lines of these files taken as one (oldest first)."""
    data = b""
    for path in paths:
        with contextlib.suppress(OSError), open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            offset = max(0, size - count * 1024)
            fh.seek(offset)
            chunk = fh.read()
            if offset:  # drop the piece of a line before the first newline
                chunk = chunk.split(b"\n", 1)[1] if b"\n" in chunk else b""
            data += chunk
    return _split_lines(data)[-count:]


def default_state_dir() -> Path:
    base = envstr("EDGEPROXY_STATE_DIR") or str(Path.home() / ".local/state/edgeproxy")
    return Path(base) / "local-runtime"


def _initial_state() -> dict:
    return {
        "Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False,
        "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME,
    }


def _write_private(path: Path, data: bytes) -> None:
    """Write a 0600 file atomically (never readable by others, not even for a moment)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            os.unlink(tmp)
        raise


def _spec_key(spec: CameraSpec, command: tuple[str, ...]) -> str:
    return json.dumps([dataclasses.asdict(spec), list(command)], sort_keys=True)


class _Camera:
    """One camera's child process and its Docker-like state. Fields are guarded by ``lock``."""

    def __init__(self, spec: CameraSpec, command: tuple[str, ...], container_id: str, created: str):
        self.spec = spec
        self.command = command
        self.key = _spec_key(spec, command)
        self.container_id = container_id
        self.created = created
        self.lock = threading.RLock()
        self.proc: subprocess.Popen | _AdoptedProcess | None = None
        self.pid_start: str | None = None
        self.stopped = False  # stopped on purpose: never restarted by the supervisor
        self.removed = False
        self.status = "created"
        self.state = _initial_state()
        self.restart_count = 0
        self.backoff: float | None = None
        self.restart_at: float | None = None
        self.started_mono = 0.0
        self.log_lock = threading.Lock()
        # The last lines of both streams together, as ``docker logs --tail`` sees them.
        self.logs: collections.deque[tuple[bool, bytes]] = collections.deque(maxlen=LOG_LINES)
        self.log_pos = {False: 0, True: 0}  # how far the log files have been read, by "is stderr"
        self.log_partial = {False: b"", True: b""}  # a line not yet ended

    def set_status(self, status: str, **state) -> None:
        self.status = status
        self.state.update(state)
        self.state["Status"] = status


class LocalRuntime(Runtime):
    """Cameras as child processes of this edge worker.

    ``command``: the camera program (list, or a shell-style string as in
    ``EDGEPROXY_LOCAL_CAMERA_COMMAND``); default ``[sys.executable, "-m", "worker.camera"]``.
    ``state_dir``: where URL files and camera records live (per host below it); default
    ``$EDGEPROXY_STATE_DIR/local-runtime``. ``cwd``: the child's working directory (default the
    repository root, so ``worker`` is importable). ``restore``: start again, at construction, the
    cameras a previous worker on this host left running.
    """

    name = "local"

    def __init__(
        self,
        host: str,
        command: list[str] | tuple[str, ...] | str | None = None,
        state_dir: str | os.PathLike | None = None,
        cwd: str | os.PathLike | None = None,
        stop_timeout: float = 10.0,
        restore: bool = True,
        restart_delay: float = 0.1,
        restart_delay_max: float = 60.0,
    ):
        super().__init__(host)
        if isinstance(command, str):
            command = shlex.split(command)
        self.command: tuple[str, ...] = tuple(command) if command else DEFAULT_COMMAND
        self.cwd = Path(cwd) if cwd else REPO_ROOT
        self.stop_timeout = float(stop_timeout)
        self.restart_delay = float(restart_delay)
        self.restart_delay_max = float(restart_delay_max)
        self.state_dir = Path(state_dir or default_state_dir()) / host
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.state_dir, 0o700)
            self._lock_file = open(self.state_dir / ".lock", "a+")  # noqa: SIM115 - held for our life
        except OSError as exc:
            raise RuntimeError_(f"the local runtime cannot use its state directory {self.state_dir}: "
                                f"{exc.strerror or type(exc).__name__}") from exc
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_file.close()
            raise RuntimeError_(f"another edge worker already manages host {host} "
                                f"with the state directory {self.state_dir}") from exc
        from worker.camera import shm

        try:  # the shared-memory frame rings of the cameras (worker/camera/shm.py)
            self.shm_env = shm.ShmSettings.from_env().environment()
            from worker.camera.recorder import RecordingSettings

            self.shm_env.update(RecordingSettings.from_env().environment())  # recordings: the same folder
        except (shm.SettingsError, ValueError) as exc:
            self._release()
            raise RuntimeError_(str(exc)) from None
        self._cameras: dict[str, _Camera] = {}
        self._guard = threading.Lock()
        self._closed = threading.Event()
        try:
            self._restore(restart=restore)
        except BaseException:
            self._release()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name=f"edgeproxy-local-{host}", daemon=True)
        self._supervisor.start()

    # --- lifecycle of the runtime itself ------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Stop supervising and terminate the children, without marking them stopped: a later
        runtime on the same state directory starts them again (like a Docker daemon restart)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._supervisor.join(timeout=5)
        with self._guard:
            cameras = list(self._cameras.values())
        procs = []
        for cam in cameras:
            with cam.lock:
                if cam.proc is not None:
                    procs.append((cam, cam.proc))
                    self._signal(cam.proc, signal.SIGTERM)
        threads = [threading.Thread(target=self._wait_or_kill, args=(proc, timeout)) for _, proc in procs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for cam, proc in procs:
            with cam.lock:
                if cam.proc is proc:
                    self._reap(cam, proc.returncode, restart=False)  # type: ignore[arg-type]  # joined: set
        self._release()

    def _release(self) -> None:
        with contextlib.suppress(Exception):
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
        with contextlib.suppress(Exception):
            self._lock_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- files --------------------------------------------------------------------------------------

    def _camera_dir(self, name: str) -> Path:
        return self.state_dir / name

    def _url_file(self, name: str, var: str = "EDGEPROXY_RTSP_URL") -> Path:
        return self._camera_dir(name) / SECRET_FILES[var]

    def _log_file(self, name: str, is_stderr: bool) -> Path:
        return self._camera_dir(name) / LOG_FILES[is_stderr]

    def _load_logs(self, cam: _Camera) -> None:
        """Take up the output a previous worker's camera wrote (its order across streams is lost)."""
        with cam.log_lock:
            for is_stderr in (False, True):
                path = self._log_file(cam.spec.name, is_stderr)
                lines = _tail_lines([path.with_name(path.name + ".1"), path], LOG_LINES)
                cam.logs.extend((is_stderr, line) for line in lines)
                with contextlib.suppress(OSError):
                    cam.log_pos[is_stderr] = path.stat().st_size

    def _drain_logs(self, cam: _Camera) -> None:
        """Read what the camera wrote to its log files since the last time; cut a file back to
        its last lines (kept in ``<file>.1``) once it passes MAX_LOG_BYTES."""
        with cam.log_lock:
            for is_stderr in (False, True):
                path = self._log_file(cam.spec.name, is_stderr)
                try:
                    with open(path, "rb") as fh:
                        size = fh.seek(0, os.SEEK_END)
                        if size < cam.log_pos[is_stderr]:  # cut back meanwhile
                            cam.log_pos[is_stderr] = 0
                        fh.seek(cam.log_pos[is_stderr])
                        data = fh.read(MAX_LOG_BYTES)
                except OSError:
                    continue
                cam.log_pos[is_stderr] += len(data)
                lines = _split_lines(cam.log_partial[is_stderr] + data)
                cam.log_partial[is_stderr] = b""
                if lines and not lines[-1].endswith(b"\n") and len(lines[-1]) < MAX_LINE_BYTES:
                    cam.log_partial[is_stderr] = lines.pop()
                cam.logs.extend((is_stderr, line) for line in lines)
                if cam.log_pos[is_stderr] >= MAX_LOG_BYTES and cam.log_pos[is_stderr] >= size:
                    with contextlib.suppress(OSError):
                        kept = b"".join(line for stream, line in cam.logs if stream == is_stderr)
                        _write_private(path.with_name(path.name + ".1"), kept)
                        os.truncate(path, 0)  # the camera appends (O_APPEND): it goes on at the start
                        cam.log_pos[is_stderr] = 0

    def _save(self, cam: _Camera) -> None:
        """Persist what a restarted worker needs (no URL: that is in its own 0600 file)."""
        spec = dataclasses.asdict(cam.spec)
        spec.pop("rtsp_url", None)
        spec.pop("rtmp_url", None)
        proc = cam.proc
        record = {
            "version": _RECORD_VERSION,
            "spec": spec,
            "container_id": cam.container_id,
            "created": cam.created,
            "stopped": cam.stopped,
            "status": cam.status,
            "state": cam.state,
            "restart_count": cam.restart_count,
            "pid": proc.pid if proc is not None else None,
            "pid_start": cam.pid_start if proc is not None else None,
        }
        try:
            _write_private(self._camera_dir(cam.spec.name) / "record.json", json.dumps(record).encode())
        except OSError:
            log.warning("could not save the local record of camera %s", cam.spec.name,
                        extra={"camera": cam.spec.name, "host": self.host})

    def _write_url(self, spec: CameraSpec) -> Path:
        directory = self._camera_dir(spec.name)
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
            path = self._url_file(spec.name)
            urls = spec.secret_urls()
            for var in SECRET_FILES:
                if var in urls:
                    _write_private(self._url_file(spec.name, var), urls[var].encode("utf-8"))
                else:
                    self._url_file(spec.name, var).unlink(missing_ok=True)
        except OSError as exc:
            raise RuntimeError_(f"could not write the URL file of camera {spec.name}: "
                                f"{exc.strerror or type(exc).__name__}") from exc
        return path

    def _restore(self, restart: bool) -> None:
        orphans: list[tuple[int, str | None]] = []
        to_start: list[_Camera] = []
        for directory in sorted(p for p in self.state_dir.iterdir() if p.is_dir()):
            name = directory.name
            try:
                record = json.loads((directory / "record.json").read_text())
                url = (directory / SECRET_FILES["EDGEPROXY_RTSP_URL"]).read_text()
                rtmp_file = directory / SECRET_FILES["EDGEPROXY_RTMP_URL"]
                rtmp_url = rtmp_file.read_text() if rtmp_file.exists() else ""
                if record.get("version") != _RECORD_VERSION or record["spec"].get("name") != name:
                    raise ValueError("unknown record")
                record["spec"].pop("rtmp_url", None)  # a record written before the URL had its own file
                spec = CameraSpec(**record["spec"], rtsp_url=url, rtmp_url=rtmp_url)
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning("ignoring the unreadable local record of camera %s (%s)", name, type(exc).__name__,
                            extra={"camera": name, "host": self.host})
                continue
            self._register_secrets(spec)
            pid, start = record.get("pid"), record.get("pid_start")
            cam = _Camera(spec, tuple(spec.command or self.command), record.get("container_id") or
                          f"local-{uuid.uuid4().hex}", record.get("created") or _now())
            cam.stopped = bool(record.get("stopped"))
            cam.restart_count = int(record.get("restart_count") or 0)
            state = record.get("state") or {}
            cam.state.update({k: state[k] for k in STATE_KEYS if k in state})
            was_up = record.get("status") in ("running", "restarting")
            recorded_finish = cam.state.get("FinishedAt") or ZERO_TIME  # kept by an adopted process
            finished = cam.state.get("FinishedAt") if not was_up else _now()
            if cam.state.get("StartedAt", ZERO_TIME) == ZERO_TIME and not was_up:
                cam.set_status("created", Running=False, Restarting=False, Pid=0)
            else:
                cam.set_status("exited", Running=False, Restarting=False, Paused=False, Pid=0,
                               FinishedAt=finished or _now())
            self._cameras[name] = cam
            self._load_logs(cam)
            if isinstance(pid, int) and pid > 0 and isinstance(start, str) and _alive(pid, start):
                left = self._identify(cam, pid, start)
                if (left == "adoptable" and restart and was_up and not cam.stopped
                        and self._adopt(cam, pid, start, recorded_finish)):
                    continue
                if left is None:
                    log.warning("camera %s: pid %s is not its process any more; leaving it alone", name, pid,
                                extra={"camera": name, "host": self.host})
                else:
                    orphans.append((pid, start))
            if restart and was_up and not cam.stopped:
                to_start.append(cam)
        self._kill_orphans(orphans)
        for cam in self._cameras.values():  # rings of processes that are gone
            if cam.proc is None:
                self._remove_ring(cam.spec)
        for cam in to_start:
            with cam.lock:
                try:
                    self._spawn(cam)
                except RuntimeError_:
                    self._schedule_restart(cam)
                self._save(cam)

    def _identify(self, cam: _Camera, pid: int, start: str) -> str | None:
        """What the live process ``pid`` (started at ``start``, as recorded) is: ``adoptable`` if it
        is this camera's process as this runtime would start it, writing to its log files; ``ours``
        if it is this camera's process but started otherwise (another command, or output to a pipe
        to the dead worker); None if it cannot be shown to be this camera's process."""
        try:
            environ = set(_read_proc(pid, "environ").split(b"\0"))
            cmdline = _read_proc(pid, "cmdline").split(b"\0")[:-1]
            outputs = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (1, 2)]
        except OSError:
            return None
        marks = {f"EDGEPROXY_CAMERA_NAME={cam.spec.name}".encode(),
                 f"EDGEPROXY_RTSP_URL_FILE={self._url_file(cam.spec.name)}".encode()}
        if not marks <= environ or not _alive(pid, start):  # pid and start time checked last
            return None
        if (cmdline == [os.fsencode(arg) for arg in cam.command]
                and outputs == [os.path.realpath(self._log_file(cam.spec.name, e)) for e in (False, True)]):
            return "adoptable"
        return "ours"

    def _adopt(self, cam: _Camera, pid: int, start: str, finished: str) -> bool:
        """Supervise a live process of ``cam`` a previous worker started, as if we had started it."""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return False
        if not _alive(pid, start):  # the pidfd may name a newer process with that pid
            os.close(pidfd)
            return False
        cam.proc = _AdoptedProcess(pid, start, pidfd)
        cam.pid_start = start
        cam.started_mono = time.monotonic()
        cam.set_status("running", Running=True, Restarting=False, Paused=False, Pid=pid, FinishedAt=finished)
        if cam.state.get("StartedAt", ZERO_TIME) == ZERO_TIME:
            cam.state["StartedAt"] = _now()
        self._save(cam)
        log.info("camera %s: adopted its process %s left by a previous edge worker", cam.spec.name, pid,
                 extra={"camera": cam.spec.name, "host": self.host})
        return True

    def _kill_orphans(self, orphans: list[tuple[int, str | None]]) -> None:
        """Camera processes of a previous worker on this host (killed before it could stop them)
        that are not adopted. Only processes ``_identify`` recognised: signalled through a pidfd."""
        if not orphans:
            return
        log.warning("terminating %d camera process(es) left by a previous edge worker", len(orphans),
                    extra={"host": self.host})
        pidfds = {}
        for pid, start in orphans:
            with contextlib.suppress(OSError):
                pidfd = os.pidfd_open(pid)
                if _alive(pid, start):
                    pidfds[pid] = pidfd
                    signal.pidfd_send_signal(pidfd, signal.SIGTERM)
                else:
                    os.close(pidfd)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and any(_alive(pid, start) for pid, start in orphans if pid in pidfds):
            time.sleep(0.05)
        for pid, start in orphans:
            if pid in pidfds and _alive(pid, start):
                with contextlib.suppress(Exception):
                    os.killpg(pid, signal.SIGKILL)  # they were started as session (group) leaders
        for pidfd in pidfds.values():
            os.close(pidfd)

    # --- child processes ------------------------------------------------------------------------------

    def _child_env(self, spec: CameraSpec) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _ENV_PASSTHROUGH or k.startswith("LC_")}
        pythonpath = [str(self.cwd)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(pythonpath))
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.shm_env)
        env.update(self._camera_environment(spec, lambda var: str(self._url_file(spec.name, var))))
        return env

    def _remove_ring(self, spec: CameraSpec) -> None:
        """Free the shared-memory frame ring a camera process left (it exited, however it died)."""
        from worker.camera import shm

        with contextlib.suppress(OSError, shm.SettingsError):
            shm.remove_ring(shm.ShmSettings.from_env({**self.shm_env, **spec.extra_env}), spec.name,
                            str(spec.camera_id))

    def _spawn(self, cam: _Camera) -> None:
        """Start the child (``cam.lock`` held). Raises RuntimeError_ if it cannot be started."""
        argv = list(cam.command)
        outputs: list[int] = []
        try:
            for is_stderr in (False, True):  # files, not pipes: the camera must outlive a killed worker
                outputs.append(os.open(self._log_file(cam.spec.name, is_stderr),
                                       os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
                os.fchmod(outputs[-1], 0o600)
            proc = subprocess.Popen(
                argv, cwd=self.cwd, env=self._child_env(cam.spec), stdin=subprocess.DEVNULL,
                stdout=outputs[0], stderr=outputs[1], close_fds=True, start_new_session=True,
            )
        except OSError as exc:
            message = (f"the camera program {Path(argv[0]).name if argv else '?'} could not start: "
                       f"{exc.strerror or type(exc).__name__}")
            cam.state.update(ExitCode=127 if isinstance(exc, FileNotFoundError) else 126, Error=message,
                             Running=False, Restarting=False, Pid=0)
            cam.state["Status"] = cam.status
            raise RuntimeError_(message) from exc
        finally:
            for fd in outputs:
                os.close(fd)
        cam.proc = proc
        cam.pid_start = (_proc_stat(proc.pid) or (None, None))[1]
        cam.started_mono = time.monotonic()
        cam.restart_at = None
        cam.set_status("running", Running=True, Restarting=False, Paused=False, OOMKilled=False, Dead=False,
                       Pid=proc.pid, ExitCode=0, Error="", StartedAt=_now())
        self._save(cam)

    @staticmethod
    def _signal(proc: subprocess.Popen | _AdoptedProcess, sig: int) -> None:
        with contextlib.suppress(Exception):
            proc.send_signal(sig)  # does nothing once the child has been reaped

    def _wait_or_kill(self, proc: subprocess.Popen | _AdoptedProcess, timeout: float | None) -> None:
        timeout = self.stop_timeout if timeout is None else timeout
        try:
            proc.wait(timeout=max(0.0, timeout))
            return
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                os.killpg(proc.pid, signal.SIGKILL)  # the child and anything it started
            self._signal(proc, signal.SIGKILL)
        proc.wait()

    def _schedule_restart(self, cam: _Camera) -> None:
        ran = time.monotonic() - cam.started_mono if cam.started_mono else 0.0
        if cam.backoff is None or ran >= RESET_BACKOFF_AFTER:
            cam.backoff = self.restart_delay
        else:
            cam.backoff = min(cam.backoff * 2, self.restart_delay_max)
        cam.restart_at = time.monotonic() + cam.backoff
        # Docker shows a container waiting for its restart as Running and Restarting.
        cam.set_status("restarting", Running=True, Restarting=True, Pid=0)

    def _reap(self, cam: _Camera, returncode: int, restart: bool = True) -> None:
        """Record the exit of ``cam.proc`` (``cam.lock`` held); schedule its restart unless stopped."""
        cam.proc = None
        cam.pid_start = None
        self._drain_logs(cam)  # its last lines
        self._remove_ring(cam.spec)
        cam.state.update(Running=False, Restarting=False, Pid=0, ExitCode=_exit_code(returncode),
                         FinishedAt=_now())
        if cam.stopped or cam.removed:
            cam.set_status("exited")
        elif restart:
            self._schedule_restart(cam)
            log.info("camera %s exited with code %s; restarting in %.1fs", cam.spec.name,
                     cam.state["ExitCode"], cam.backoff, extra={"camera": cam.spec.name, "host": self.host})
        else:  # the runtime is closing: a later runtime restarts it
            cam.set_status("restarting", Running=True, Restarting=True)
        if not cam.removed:
            self._save(cam)

    def _supervise(self) -> None:
        while not self._closed.wait(0.1):
            with self._guard:
                cameras = list(self._cameras.values())
            for cam in cameras:
                try:
                    self._supervise_one(cam)
                    if cam.proc is not None:
                        self._drain_logs(cam)
                except Exception:  # the supervisor must outlive any one camera
                    log.exception("local runtime supervisor failed on camera %s", cam.spec.name,
                                  extra={"camera": cam.spec.name, "host": self.host})

    def _supervise_one(self, cam: _Camera) -> None:
        with cam.lock:
            if cam.removed or self._closed.is_set():
                return
            if cam.proc is not None:
                returncode = cam.proc.poll()
                if returncode is not None:
                    self._reap(cam, returncode)
            elif (cam.status == "restarting" and not cam.stopped and cam.restart_at is not None
                  and time.monotonic() >= cam.restart_at):
                try:
                    self._spawn(cam)
                    cam.restart_count += 1
                except RuntimeError_:
                    self._schedule_restart(cam)
                self._save(cam)

    # --- Runtime interface ------------------------------------------------------------------------------

    def _get(self, name: str) -> _Camera | None:
        with self._guard:
            return self._cameras.get(name)

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise RuntimeError_("the local runtime has been closed")

    def ensure_running(self, spec: CameraSpec) -> Observed:
        self._accept(spec)
        self._check_open()
        command = tuple(spec.command or self.command)
        with self._camera_lock(spec.name):
            cam = self._get(spec.name)
            if cam is not None and cam.key != _spec_key(spec, command):
                log.info("recreating camera %s (its spec changed)", spec.name,
                         extra={"camera": spec.name, "host": self.host})
                self._discard(cam, self.stop_timeout)
                cam = None
            if cam is None:
                cam = _Camera(dataclasses.replace(spec, extra_env=dict(spec.extra_env),
                                                  command=list(spec.command) if spec.command else None),
                              command, f"local-{uuid.uuid4().hex}", _now())
                self._write_url(spec)
                with cam.lock:
                    self._save(cam)
                with self._guard:
                    self._cameras[spec.name] = cam
            with cam.lock:
                cam.stopped = False
                if cam.proc is None and cam.status != "restarting":
                    cam.backoff = None
                    try:
                        self._spawn(cam)
                    finally:
                        self._save(cam)
                # restarting: the supervisor brings it back after its back-off, as Docker does
        observed = self.observe(spec.name)
        if observed is None:
            raise RuntimeError_(f"camera {spec.name} was removed while starting")
        return observed

    def _terminate(self, cam: _Camera, timeout: float) -> None:
        """Stop ``cam`` for good (``stopped`` must be set already) and record its exit."""
        with cam.lock:
            proc = cam.proc
            cam.restart_at = None
            if proc is None:
                if cam.status == "restarting":
                    cam.set_status("exited", Running=False, Restarting=False)
                    if not cam.removed:
                        self._save(cam)
                return
            self._signal(proc, signal.SIGTERM)
        self._wait_or_kill(proc, timeout)
        with cam.lock:
            if cam.proc is proc:
                self._reap(cam, proc.returncode)  # type: ignore[arg-type]  # waited for: set

    def _discard(self, cam: _Camera, timeout: float) -> None:
        with cam.lock:
            cam.stopped = True
            cam.removed = True
        self._terminate(cam, timeout)
        with self._guard:
            if self._cameras.get(cam.spec.name) is cam:
                del self._cameras[cam.spec.name]
        shutil.rmtree(self._camera_dir(cam.spec.name), ignore_errors=True)

    def stop(self, name: str, timeout: float = 5.0) -> Observed | None:
        check_name(name)
        with self._camera_lock(name):
            cam = self._get(name)
            if cam is None:
                return None
            with cam.lock:
                cam.stopped = True
            self._terminate(cam, timeout)
        return self.observe(name)

    def remove(self, name: str, timeout: float = 5.0) -> bool:
        check_name(name)
        with self._camera_lock(name):
            cam = self._get(name)
            if cam is None:
                return False
            self._discard(cam, timeout)
            return True

    def _observed(self, cam: _Camera, with_logs: bool) -> Observed:
        with cam.lock:
            status = cam.status
            state = {key: cam.state.get(key) for key in STATE_KEYS}
            restarts = cam.restart_count
        logs = None
        if with_logs:
            if not cam.removed:
                self._drain_logs(cam)
            with cam.log_lock:
                lines = list(cam.logs)
            out = [line for is_stderr, line in lines if not is_stderr]
            err = [line for is_stderr, line in lines if is_stderr]
            logs = encode_logs(b"".join(out), b"".join(err))
        return Observed(name=cam.spec.name, camera_id=str(cam.spec.camera_id), container_id=cam.container_id,
                        status=status, state=state, image=cam.spec.image, logs=logs, restarts=restarts)

    def observe(self, name: str, with_logs: bool = True) -> Observed | None:
        check_name(name)
        cam = self._get(name)
        return None if cam is None else self._observed(cam, with_logs)

    def observe_all(self, with_logs: bool = False) -> list[Observed]:
        with self._guard:
            cameras = sorted(self._cameras.values(), key=lambda c: c.spec.name)
        return [self._observed(cam, with_logs) for cam in cameras]

    def facts(self) -> dict:
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            memory = None
        os_name = platform.system()
        with contextlib.suppress(OSError):
            os_name = platform.freedesktop_os_release().get("PRETTY_NAME") or os_name
        return {
            "runtime": "local",
            "server_version": f"python {platform.python_version()}",
            "api_version": "",
            "cpus": os.cpu_count(),
            "memory": memory,
            "os": os_name,
            "kernel": platform.release(),
            "architecture": platform.machine(),
        }
