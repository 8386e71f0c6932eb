"""The edge agent: what an edge worker does on its host, without ever touching the database.

It runs camera processes through a runtime, reports results and observed state to the control
plane as ``control``-queue tasks, beats every EDGEPROXY_HEARTBEAT_SECONDS, and keeps the frame
bus's table of this host's cameras current for the frame server.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
import time
from collections import deque
from functools import lru_cache
from pathlib import Path

import redis
from django.conf import settings

from edgeproxy.celery import app as celery_app
from edgeproxy.contracts import heartbeats
from edgeproxy.contracts import tasks as messages
from edgeproxy.contracts.tasks import CONTROL_QUEUE, host_queue
from worker import apps, recordings, sealing
from worker.camera import keys
from worker.redaction import register_secret, url_password
from worker.runtimes import get_runtime
from worker.runtimes.base import CameraSpec, Observed, RuntimeError_

logger = logging.getLogger("edgeproxy.edge")


def reports_failures(method):
    """An unexpected error in an operation still ends it (failed), instead of leaving it running."""

    @functools.wraps(method)
    def guarded(self, operation_id: str, *args, **kwargs):
        try:
            return method(self, operation_id, *args, **kwargs)
        except Exception:
            logger.exception("operation %s failed unexpectedly", operation_id,
                             extra={"operation": operation_id, "host": self.host})
            self.tell_control(messages.OperationFinished(
                operation_id=operation_id, ok=False,
                error=f"internal error on edge host {self.host}; its log has the details"))

    return guarded


class ReportOutbox:
    """Reports on their way to the control plane, kept until the broker has taken them.

    A report the broker does not take (Redis away or restarting) waits here, in order, and in a
    file of the host's state directory (so a worker restart keeps it); a thread delivers the
    waiting ones as soon as the broker answers again. Once taken, a report stays in Redis until a
    control worker has recorded it (``acks_late``; the control side retries while its database is
    busy), so no result of an operation is ever lost on the way.
    """

    def __init__(self, path: Path, publish, retry_seconds: float = 1.0):
        self.path = Path(path)
        self._publish = publish
        self._retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._waiting: deque[dict] = deque(self._load())
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        if self._waiting:
            logger.warning("%d reports from before a restart wait for the control plane", len(self._waiting))

    def _load(self) -> list[dict]:
        try:
            return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            logger.warning("report outbox %s unreadable, ignored: %s", self.path, exc)
            return []

    def _save(self) -> None:
        """The waiting reports to the file (owner-only), replaced atomically; none: no file."""
        if not self._waiting:
            self.path.unlink(missing_ok=True)
            return
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.writelines(json.dumps(item) + "\n" for item in self._waiting)
        os.replace(temporary, self.path)

    def send(self, task: str, kwargs: dict) -> None:
        """Hand a report to the broker now, or keep it (after those already waiting) until it answers."""
        with self._lock:
            if not self._waiting:
                try:
                    self._publish(task, kwargs)
                    return
                except Exception as exc:  # noqa: BLE001 - whatever the broker raised, the report is kept
                    logger.warning("control plane unreachable (%s): report %s kept until it answers", exc, task)
            self._waiting.append({"task": task, "kwargs": kwargs})
            self._save()
        self._wake.set()

    def send_soon(self, task: str, kwargs: dict) -> None:
        """``send`` from the delivery thread: the caller goes on at once, and reports sent after
        this one wait behind it (order kept). For a report no one waits for, such as an operation's
        start: its publish (a few ms on a loaded host) was on the path of the operation's result.
        Without a delivery thread (``start`` not called), the same as ``send``."""
        if self._thread is None:
            self.send(task, kwargs)
            return
        with self._lock:
            # (Not written to the file by itself: a start report lost with a restart changes nothing,
            # the result records the start too.)
            self._waiting.append({"task": task, "kwargs": kwargs, "soon": True})
        self._wake.set()

    def flush(self) -> int:
        """Deliver the waiting reports, oldest first; stop at the first the broker refuses."""
        delivered = kept = 0
        with self._lock:
            while self._waiting:
                item = self._waiting[0]
                try:
                    self._publish(item["task"], item["kwargs"])
                except Exception:  # noqa: BLE001 - still away: next round
                    break
                self._waiting.popleft()
                delivered += 1
                kept += not item.get("soon")
            if delivered:
                self._save()
            if kept:
                logger.info("%d kept reports delivered to the control plane, %d still waiting", kept,
                            len(self._waiting))
        return delivered

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _deliver_forever(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._retry_seconds)
            self._wake.clear()
            if self._waiting:
                self.flush()
                if self._waiting:
                    self._stopped.wait(self._retry_seconds)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._deliver_forever, name="edge-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()


class EdgeAgent:
    def __init__(self, host: str | None = None, runtime=None):
        self.host = host or settings.EDGEPROXY_HOST_NAME
        self.queue = host_queue(self.host)
        self.runtime = runtime or get_runtime(
            self.host,
            kind=settings.EDGEPROXY_RUNTIME,
            network=settings.EDGEPROXY_CAMERA_NETWORK,
            volumes=settings.EDGEPROXY_CAMERA_VOLUMES,
            secrets_dir=settings.EDGEPROXY_CAMERA_SECRETS_DIR,
            command=(settings.EDGEPROXY_LOCAL_CAMERA_COMMAND.split() if settings.EDGEPROXY_LOCAL_CAMERA_COMMAND
                     else None),
        )
        key_path = Path(settings.STATE_DIR) / f"edge-{self.host}.key"
        self.key = sealing.load_or_create_key(key_path)
        self.frames = redis.Redis.from_url(settings.FRAMES_REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        self._log_digests: dict[str, str] = {}
        # Each camera's stream status as last read (monotonic time, status): see _stream_status.
        self._last_streams: dict[str, tuple[float, dict]] = {}
        self._beats = 0
        self._gathering_since: float | None = None  # while a heartbeat's report is being gathered
        self._rtmp: dict[str, bool] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._upgrades: dict[str, str] = {}  # camera name -> operation id, upgrades in progress here
        self._upgrades_lock = threading.Lock()
        self.outbox = ReportOutbox(Path(settings.STATE_DIR) / f"edge-{self.host}-outbox.jsonl", self._publish)
        self.recordings = recordings.RecordingControl(
            recordings.host_settings(), Path(settings.STATE_DIR) / f"edge-{self.host}-recording.json", self.frames)

    # --- talking to the control plane --------------------------------------------------------

    def _publish(self, task: str, kwargs: dict, retry: bool = True, queue: str = CONTROL_QUEUE) -> None:
        celery_app.send_task(task, kwargs=kwargs, queue=queue, retry=retry)

    def tell_control(self, message: messages.ControlMessage, retry: bool = True) -> None:
        """Report to the control plane; a report the broker does not take now is kept and sent
        later (heartbeats, ``retry=False``, are not: the next beat replaces them)."""
        if retry:
            self.outbox.send(message.task, message.kwargs())
        else:
            self._publish(message.task, message.kwargs(), retry=False, queue=message.queue)

    def _tell_control(self, task: str, retry: bool = True, **kwargs) -> None:
        """``tell_control`` by task name; the arguments are checked against the task's message."""
        self.tell_control(messages.control_message(task, **kwargs), retry=retry)

    def _started(self, operation_id: str) -> None:
        # Sent while the operation gets to work (ReportOutbox.send_soon), still before its result.
        message = messages.OperationStarted(operation_id=operation_id)
        self.outbox.send_soon(message.task, message.kwargs())

    def _finished(self, operation_id: str, ok: bool, error: str = "", observed: Observed | None = None,
                  removed: bool = False) -> None:
        stream = self._stream_status([observed.name]).get(observed.name) if observed else None
        self.tell_control(messages.OperationFinished(
            operation_id=operation_id,
            ok=ok,
            error=error,
            observed=observed.as_dict() if observed else None,
            stream=stream,
            removed=removed,
        ))

    # --- operations --------------------------------------------------------------------------

    @reports_failures
    def ensure_running(self, operation_id: str, camera_name: str, sealed_spec: str) -> None:
        self._started(operation_id)
        try:
            raw = sealing.unseal(self.key, sealed_spec)
        except Exception:  # noqa: BLE001 - a spec sealed to another key (host key was replaced)
            self._finished(operation_id, False,
                           f"camera {camera_name}: the spec could not be opened with this host's key")
            return
        spec = self.spec_from(raw)
        self._rtmp[spec.name] = bool(spec.rtmp_url)
        self._apply_recording(spec.name, raw.get("recording"))
        try:
            observed = self.runtime.ensure_running(spec)
        except RuntimeError_ as exc:
            logger.warning("camera %s: could not start: %s", camera_name, exc,
                           extra={"camera": camera_name, "host": self.host, "operation": operation_id})
            self._finished(operation_id, False, str(exc), self._observe(camera_name))
            return
        logger.info("camera %s: running (%s)", camera_name, observed.container_id[:12],
                    extra={"camera": camera_name, "host": self.host, "operation": operation_id})
        self._finished(operation_id, True, observed=observed)
        self._publish_host_table()

    @reports_failures
    def stop(self, operation_id: str, camera_name: str) -> None:
        self._started(operation_id)
        try:
            observed = self.runtime.stop(camera_name)
        except RuntimeError_ as exc:
            self._finished(operation_id, False, str(exc), self._observe(camera_name))
            return
        logger.info("camera %s: stopped", camera_name,
                    extra={"camera": camera_name, "host": self.host, "operation": operation_id})
        self._finished(operation_id, True, observed=observed)
        self._publish_host_table()

    @reports_failures
    def remove(self, operation_id: str, camera_name: str) -> None:
        self._started(operation_id)
        try:
            self.runtime.remove(camera_name)
        except RuntimeError_ as exc:
            self._finished(operation_id, False, str(exc), self._observe(camera_name))
            return
        self._apply_recording(camera_name, {"enabled": False})  # its footage ages out as before
        try:
            keys.delete_camera_keys(self.frames, camera_name)  # the recording switch just written too
            self.frames.hdel(keys.host_cameras(self.host), camera_name)
        except redis.RedisError as exc:
            logger.warning("camera %s: frame keys not removed: %s", camera_name, exc,
                           extra={"camera": camera_name, "host": self.host, "operation": operation_id})
        self._rtmp.pop(camera_name, None)
        self._log_digests.pop(camera_name, None)
        self._last_streams.pop(camera_name, None)
        logger.info("camera %s: removed", camera_name,
                    extra={"camera": camera_name, "host": self.host, "operation": operation_id})
        self._finished(operation_id, True, removed=True)

    @reports_failures
    def pull_image(self, operation_id: str, repository: str, tag: str) -> None:
        self._started(operation_id)
        last_sent = 0.0
        last_layers = -1

        def progress(state: dict) -> None:
            nonlocal last_sent, last_layers
            now = time.monotonic()
            # At most four progress messages a second, and one whenever a layer completes.
            if now - last_sent >= 0.25 or state["layers_done"] != last_layers:
                last_sent, last_layers = now, state["layers_done"]
                self.tell_control(messages.OperationProgress(operation_id=operation_id, progress=state))

        try:
            final, log = self.runtime.pull(repository, tag, progress)
        except RuntimeError_ as exc:
            logger.warning("pull %s:%s failed: %s", repository, tag, exc,
                           extra={"host": self.host, "operation": operation_id})
            self.tell_control(messages.PullFinished(operation_id=operation_id, ok=False, error=str(exc)))
            return
        # The final progress and the new inventory travel with the result: once the operation
        # shows "succeeded", both are there.
        try:
            images = self.runtime.images()
        except RuntimeError_:
            images = None  # the next heartbeat brings it
        self.tell_control(messages.PullFinished(operation_id=operation_id, ok=True, result={"response": log},
                                                progress=final, images=images))

    @reports_failures
    def set_recording(self, operation_id: str, camera_name: str, enabled: bool, retention_hours: float) -> None:
        self._started(operation_id)
        self._apply_recording(camera_name, {"enabled": enabled, "retention_hours": retention_hours})
        logger.info("camera %s: recording %s", camera_name, "on" if enabled else "off",
                    extra={"camera": camera_name, "host": self.host, "operation": operation_id})
        self._finished(operation_id, True, observed=self._observe(camera_name))

    def _apply_recording(self, camera_name: str, wanted: dict | None) -> None:
        """Recording of a camera as the control plane wants it (None: as it was)."""
        if wanted is None:
            return
        retention = wanted.get("retention_hours")
        if retention is None:
            retention = (self.recordings.cameras.get(camera_name) or {}).get("retention_hours") or 0
        try:
            self.recordings.set(camera_name, bool(wanted.get("enabled")), float(retention))
        except (OSError, redis.RedisError) as exc:
            logger.warning("camera %s: recording setting not applied now (%s); the next sweep does it",
                           camera_name, exc, extra={"camera": camera_name, "host": self.host})

    def spec_from(self, raw: dict) -> CameraSpec:
        """The runtime's spec from an unsealed control-plane spec; its password is masked in logs."""
        register_secret(url_password(raw["rtsp_url"]))
        return CameraSpec(
            camera_id=raw["camera_id"],
            name=raw["name"],
            host=self.host,
            image=raw["image"],
            rtsp_url=raw["rtsp_url"],
            rtmp_url=raw.get("rtmp_url") or "",
            transport=raw.get("transport") or "tcp",
            buffer_seconds=int(raw.get("buffer_seconds", settings.EDGEPROXY_CAMERA_BUFFER_SECONDS)),
            frames_redis_url=settings.FRAMES_REDIS_URL,
        )

    def _observe(self, camera_name: str) -> Observed | None:
        try:
            return self.runtime.observe(camera_name)
        except RuntimeError_:
            return None

    # --- the interface of longer flows run on this agent (worker/upgrade.py) ---------------------

    def claim_upgrade(self, camera_name: str, operation_id: str) -> bool:
        """Take the camera for this upgrade; False when this worker is already doing that very
        upgrade (a redelivery: the first delivery reports)."""
        with self._upgrades_lock:
            if self._upgrades.get(camera_name) == operation_id:
                return False
            self._upgrades[camera_name] = operation_id
            return True

    def release_upgrade(self, camera_name: str, operation_id: str) -> None:
        with self._upgrades_lock:
            if self._upgrades.get(camera_name) == operation_id:
                del self._upgrades[camera_name]

    def open_spec(self, sealed_spec: str) -> CameraSpec | None:
        """The runtime's spec out of a sealed control-plane spec; None when this host's key cannot
        open it (it was sealed to a key this host no longer has)."""
        try:
            raw = sealing.unseal(self.key, sealed_spec)
        except Exception:  # noqa: BLE001 - whatever the cipher raised, the spec is not ours to open
            return None
        return self.spec_from(raw)

    def observe(self, camera_name: str) -> Observed | None:
        """The camera's process as the runtime sees it now (with its logs); None if none or unknown."""
        return self._observe(camera_name)

    def publish_host_table(self) -> None:
        """Bring the frame bus's table of this host's cameras up to date now."""
        self._publish_host_table()

    def report_started(self, operation_id: str) -> None:
        self._started(operation_id)

    def report_progress(self, operation_id: str, progress: dict) -> None:
        self._tell_control("processes.operation_progress", operation_id=operation_id, progress=progress)

    def report_upgrade_finished(self, operation_id: str, ok: bool, error: str, observed: Observed | None,
                                result: dict, progress: dict) -> None:
        stream = self._stream_status([observed.name]).get(observed.name) if observed else None
        self._tell_control(
            "processes.upgrade_finished", operation_id=operation_id, ok=ok, error=error,
            observed=observed.as_dict() if observed else None, stream=stream, result=result, progress=progress,
        )

    # --- reports -----------------------------------------------------------------------------

    def _stream_status(self, names: list[str], running: frozenset[str] = frozenset()) -> dict[str, dict]:
        """The stream status each camera process writes to Redis. For a camera whose process runs
        (``running``), a status that cannot be read now (Redis restarting, or restarted empty before
        the camera wrote again) is the one last read, for as long as its key could have lived
        (STATUS_TTL_S): a Redis restart is not a camera that stopped streaming. (A camera that stops
        deletes its status: that one is gone at once.)"""
        if not names:
            return {}
        now = time.monotonic()
        try:
            values = self.frames.mget([keys.status(n) for n in names])
        except redis.RedisError:
            values = [None] * len(names)
        streams = {}
        for name, value in zip(names, values, strict=True):
            status = None
            if value:
                with contextlib.suppress(ValueError):
                    status = json.loads(value)
            if status is not None:
                self._last_streams[name] = (now, status)
            elif name in running and (last := self._last_streams.get(name)) and now - last[0] < keys.STATUS_TTL_S:
                status = last[1]
            if status is not None:
                streams[name] = status
        return streams

    def _publish_host_table(self, observed: list[Observed] | None = None) -> None:
        try:
            observed = observed if observed is not None else self.runtime.observe_all()
            table_key = keys.host_cameras(self.host)
            pipe = self.frames.pipeline()
            pipe.delete(table_key)
            for item in observed:
                entry = {
                    "camera_id": item.camera_id,
                    "status": item.status,
                    "state": item.state,
                    "container_id": item.container_id,
                    "has_rtmp": self._rtmp.get(item.name, False),
                }
                pipe.hset(table_key, item.name, json.dumps(entry))
            pipe.expire(table_key, int(settings.EDGEPROXY_HEARTBEAT_SECONDS * 3) + 1)
            pipe.execute()
        except (redis.RedisError, RuntimeError_) as exc:
            logger.warning("host camera table not published: %s", exc)

    def report(self) -> dict:
        observed_at = int(time.time() * 1000)
        cameras = self.runtime.observe_all(with_logs=True)
        self._publish_host_table(cameras)
        payload = []
        self._beats += 1
        full = self._beats % 10 == 1  # now and then everything, in case a report was lost
        carried: dict[str, str] = {}  # the digests of the logs this report carries
        for item in cameras:
            entry = item.as_dict()
            digest = heartbeats.digest(entry.get("logs"))
            if not full and self._log_digests.get(item.name) == digest:
                entry.pop("logs")  # unchanged since the last report: the control plane keeps its copy
            elif "logs" in entry:
                carried[item.name] = digest
            self._log_digests[item.name] = digest
            payload.append(entry)
        report = {
            "queue": self.queue,
            "runtime": self.runtime.name,
            "facts": self.runtime.facts(),
            "images": self.runtime.images(),
            "public_key": sealing.public_key_text(self.key),
            "frames_address": settings.EDGEPROXY_FRAMES_ADVERTISE,
            "observed_at": observed_at,
            "cameras": payload,
            "streams": self.recordings.add_counts(self._stream_status(
                [c.name for c in cameras], running=frozenset(c.name for c in cameras if c.status == "running"))),
        }
        apps_seen = apps.report_entry(self)  # app processes (issue 16)
        if apps_seen is not None:
            report["apps"] = apps_seen
        # Last, of the report as sent: the control plane compares it instead of hashing the report.
        report[heartbeats.FINGERPRINT_KEY] = heartbeats.fingerprint(report, carried)
        return report

    def heartbeat(self, first: bool = False) -> None:
        # No retry: a beat that cannot be sent is simply the next one's job, and the loop must
        # never wait on a broker that is away.
        beat = messages.HostStarted if first else messages.HostHeartbeat
        self.tell_control(beat(host=self.host, report=self.report()), retry=False)

    def _beat_forever(self) -> None:
        first = True
        while not self._stop.is_set():
            started = self._gathering_since = time.monotonic()
            try:
                self.heartbeat(first=first)
                first = False
            except Exception as exc:  # noqa: BLE001 - a missed beat must never end the loop
                logger.warning("heartbeat failed: %s", exc)
            finally:
                self._gathering_since = None
            # One beat per interval, start to start: a slow report does not stretch the cadence.
            self._stop.wait(max(0.0, settings.EDGEPROXY_HEARTBEAT_SECONDS - (time.monotonic() - started)))

    def _alive_forever(self) -> None:
        """While a report is slow to gather (a Docker engine busy with many containers), say at least
        that this worker is alive, so that the host is not taken for offline (no camera placed on
        it, its operations failed) while it works. A report that fails (no engine) says nothing."""
        interval = settings.EDGEPROXY_HEARTBEAT_SECONDS
        while not self._stop.wait(interval / 2):
            since = self._gathering_since
            if since is None or time.monotonic() - since < interval:
                continue
            try:
                self.tell_control(messages.HostAlive(host=self.host), retry=False)
            except Exception as exc:  # noqa: BLE001 - the next one, or the next full beat, is as good
                logger.warning("liveness beat failed: %s", exc)

    def start_heartbeats(self) -> None:
        self.outbox.start()
        self.recordings.start(self._stop)
        self._gathering_since = None
        self._thread = threading.Thread(target=self._beat_forever, name="edge-heartbeat", daemon=True)
        self._thread.start()
        threading.Thread(target=self._alive_forever, name="edge-alive", daemon=True).start()

    def stop_heartbeats(self) -> None:
        self._stop.set()
        self.outbox.stop()


@lru_cache(maxsize=1)
def current() -> EdgeAgent:
    """The agent of this edge worker process (one host per process)."""
    return EdgeAgent()
