"""The camera program: ``python -m worker.camera`` (configuration: ``worker/camera/config.py``).

Threads: ``ingest`` (RTSP, ring, decode, frames), ``status`` (status key, control keys), ``rtmp``
(pass-through, only with an RTMP URL) and the main thread, which waits for SIGTERM/SIGINT and
restarts a thread that died (it never should). Exit code 0 after a signal, 2 for a configuration
error, nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time

from worker.camera import keys
from worker.camera.config import Config, ConfigError, load_config
from worker.redaction import JsonFormatter, RedactingFilter, redact, register_secret, rtmp_secrets, url_password

log = logging.getLogger("camera")

STOP_BUDGET_S = 1.0  # SIGTERM to exit must stay under 2 s, with room for a loaded machine
WATCHDOG_S = 1.0  # how often the main thread checks its threads (a stop wakes it at once)


class _Context(logging.Filter):
    def __init__(self, camera: str):
        super().__init__()
        self.camera = camera

    def filter(self, record: logging.LogRecord) -> bool:
        record.camera = self.camera
        return True


class _TextFormatter(logging.Formatter):
    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging API
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def setup_logging(cfg: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context(cfg.name))
    handler.addFilter(RedactingFilter())  # handler level: also catches records of child loggers
    if cfg.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s camera=%(camera)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.addFilter(RedactingFilter())
    root.setLevel(cfg.log_level)

    def excepthook(exc_type, exc, tb):
        logging.getLogger("camera").critical("uncaught exception", exc_info=(exc_type, exc, tb))

    def thread_excepthook(args):
        if args.exc_type is SystemExit:
            return
        logging.getLogger("camera").error("uncaught exception in thread %s",
                                          args.thread.name if args.thread else "?",
                                          exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def setup_ffmpeg_logging(level: str) -> None:
    import av.logging

    if level == "quiet":
        av.logging.set_level(None)  # FFmpeg prints nothing (its messages may contain the URL)
    else:
        av.logging.set_level({"error": av.logging.ERROR, "warning": av.logging.WARNING,
                              "info": av.logging.INFO}[level])


def register_secrets(cfg: Config) -> None:
    register_secret(url_password(cfg.rtsp_url))
    for secret in rtmp_secrets(cfg.rtmp_url):
        register_secret(secret)
    register_secret(url_password(cfg.redis_url))


class StatusWriter:
    """Writes the status key every ``interval`` (and at once on a state change), reads the
    ``rtmp`` and ``storage`` control keys."""

    def __init__(self, cfg: Config, state, stop: threading.Event, rtmp, recorder=None):
        from worker.camera.wire import FastPipe

        self.recorder = recorder
        self.k_recording = keys.recording(cfg.name)
        self.cfg = cfg
        self.state = state
        self.pipe = FastPipe(cfg.redis_url, socket_timeout=2.0, connect_timeout=1.0)
        self.stop = stop
        self.rtmp = rtmp
        self.k_status = keys.status(cfg.name)
        self.k_rtmp = keys.rtmp_switch(cfg.name)
        self.k_storage = keys.storage_flag(cfg.name)
        self.ttl_ms = keys.STATUS_TTL_S * 1000
        self.thread = threading.Thread(target=self.run, name="status", daemon=True)
        self._failing = False

    def write_once(self) -> None:
        st = self.state
        status = st.status()
        status["rtmp_streaming"] = self.rtmp.streaming() if self.rtmp is not None else False
        if self.recorder is not None:
            status["recording"] = self.recorder.status()
        replies: list = []
        pipe = self.pipe
        pipe.command("SET", self.k_status, json.dumps(status, separators=(",", ":")), "PX", self.ttl_ms)
        pipe.command("MGET", self.k_rtmp, self.k_storage, self.k_recording, callback=replies.append)
        pipe.wait()
        rtmp, storage, recording = replies[0] if replies else (None, None, None)
        if self.recorder is not None:
            try:
                self.recorder.set_control(json.loads(recording) if recording else None)
            except ValueError:
                self.recorder.set_control(None)
        if self.rtmp is not None:
            self.rtmp.set_wanted(rtmp == b"1" if rtmp is not None else bool(self.cfg.rtmp_url))
        storing = storage == b"1"
        if storing != st.storing:
            st.storing = storing
            log.info("storage flag %s", "on" if storing else "off")

    def run(self) -> None:
        st = self.state
        while not self.stop.is_set():
            st.changed.clear()
            ring = st.frames_ring
            if ring is not None:  # readers of the shared-memory ring see the camera is alive
                ring.heartbeat(st.state == "streaming")
            try:
                self.write_once()
                if self._failing:
                    self._failing = False
            except Exception as exc:  # noqa: BLE001 - the status must keep trying
                if not self._failing:
                    self._failing = True
                    from worker.camera.errors import describe

                    log.warning("cannot write the status to the frame bus (%s); retrying", describe(exc))
            st.changed.wait(self.cfg.status_interval_s)


class CameraProcess:
    def __init__(self, cfg: Config, shm_settings=None, recording_settings=None):
        import redis

        from worker.camera.ingest import Ingest
        from worker.camera.rtmp import RtmpForwarder
        from worker.camera.state import CameraState

        self.cfg = cfg
        self.stop = threading.Event()
        self.state = CameraState(cfg.name, cfg.camera_id, cfg.buffer_seconds, cfg.transport)
        kwargs = dict(socket_timeout=3.0, socket_connect_timeout=1.0, health_check_interval=0)
        self.client = redis.Redis.from_url(cfg.redis_url, **kwargs)
        self.rtmp = RtmpForwarder(cfg.rtmp_url, self.state, self.stop, open_timeout=cfg.open_timeout) \
            if cfg.rtmp_url else None
        self.state.rtmp_wanted = bool(cfg.rtmp_url)
        self.recorder = None
        if recording_settings is not None:  # without a folder it only says why it cannot record
            from worker.camera.recorder import Recorder

            self.recorder = Recorder(recording_settings, cfg.name, self.state, self.stop)
        self.ingest = Ingest(cfg, self.state, self.client, self.stop, self.rtmp, shm_settings=shm_settings,
                             recorder=self.recorder)
        self.status = StatusWriter(cfg, self.state, self.stop, self.rtmp, self.recorder)
        self.ingest_thread: threading.Thread | None = None
        self.signal_name: str | None = None

    def _start_ingest(self) -> None:
        self.ingest_thread = threading.Thread(target=self.ingest.run, name="ingest", daemon=True)
        self.ingest_thread.start()

    def _clear_stale(self) -> None:
        """Frames and packets of an earlier process are not ours to serve (seq restarts at 1)."""
        name = self.cfg.name
        try:
            self.client.delete(keys.frame_latest(name), keys.frame_keyframe(name), keys.ring(name))
        except Exception as exc:  # noqa: BLE001 - the bus may come later
            from worker.camera.errors import describe

            log.warning("frame bus not reachable at start (%s); will keep trying", describe(exc))

    def run(self) -> int:
        cfg = self.cfg
        log.info("started (pid %d): %s over %s, buffer %gs, rtmp %s, frame bus %s", os.getpid(),
                 self.ingest.masked_url, cfg.transport, cfg.buffer_seconds,
                 "configured" if cfg.rtmp_url else "not configured", redact(cfg.redis_url))
        self._clear_stale()
        self.status.thread.start()
        if self.rtmp is not None:
            self.rtmp.start()
        if self.recorder is not None:
            self.recorder.start()
        self._start_ingest()
        while not self.stop.wait(WATCHDOG_S):
            if self.ingest.end_stalled_session(time.monotonic()):
                log.info("no packet for %gs: ending the session", cfg.read_timeout)
            thread = self.ingest_thread
            if thread is None or not thread.is_alive():  # never expected: Ingest.run catches everything
                log.error("the ingest thread ended unexpectedly; restarting it")
                self._start_ingest()
            if not self.status.thread.is_alive():
                log.error("the status thread ended unexpectedly; restarting it")
                self.status.thread = threading.Thread(target=self.status.run, name="status", daemon=True)
                self.status.thread.start()
        return self.shutdown()

    def shutdown(self) -> int:
        deadline = time.monotonic() + STOP_BUDGET_S
        log.info("stopping (%s)", self.signal_name or "stop requested")
        self.state.changed.set()
        recorder = self.recorder.thread if self.recorder else None
        for thread in (self.ingest_thread, self.rtmp.thread if self.rtmp else None, recorder, self.status.thread):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic() - 0.2))
        if self.state.frames_ring is not None:
            self.state.frames_ring.close()  # frees the shared memory; readers see the ring closed
        try:  # a stopped camera has no status (it would only go stale)
            import redis

            quick = redis.Redis.from_url(self.cfg.redis_url, socket_timeout=0.15, socket_connect_timeout=0.15)
            quick.delete(keys.status(self.cfg.name))
        except Exception:  # noqa: BLE001
            pass
        stuck = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()
                 and t.name in ("ingest", "rtmp", "status")]
        log.info("stopped%s", f" (abandoning blocked {', '.join(stuck)})" if stuck else "")
        return 0


def main() -> int:
    from worker.camera.recorder import RecordingSettings, RecordingSettingsError
    from worker.camera.shm import SettingsError, ShmSettings

    try:
        cfg = load_config()
        shm_settings = ShmSettings.from_env()
        recording_settings = RecordingSettings.from_env()
    except (ConfigError, SettingsError, RecordingSettingsError) as exc:
        print(f"camera: configuration error: {redact(str(exc))}", file=sys.stderr, flush=True)
        return 2
    setup_logging(cfg)
    register_secrets(cfg)
    setup_ffmpeg_logging(cfg.ffmpeg_log_level)
    from worker.camera.heap import keep_frame_buffers

    keep_frame_buffers()  # no fresh pages for every decoded frame (see worker/camera/heap.py)
    process = CameraProcess(cfg, shm_settings, recording_settings)

    def on_signal(signum, _frame):
        process.signal_name = process.signal_name or signal.Signals(signum).name
        process.stop.set()

    signal.signal(signal.SIGTERM, on_signal)  # PID 1 in a container ignores SIGTERM without one
    signal.signal(signal.SIGINT, on_signal)
    code = process.run()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Threads blocked inside FFmpeg (an open or read waiting for its timeout) must not delay exit.
    os._exit(code)
