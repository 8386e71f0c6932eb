"""The frame API of an edge host: gRPC service ``chrys.cloud.videostreaming.v1beta1.Image``.

Reads the frame bus (Redis, see ``worker/camera/keys.py``) that the camera processes of this host
publish to; never talks to a camera process directly and needs neither Django nor a database.

* ``VideoLatestImage`` sets the camera's demand key (so the camera decodes) and returns the newest
  decoded frame. Every caller gets the newest frame; nothing is queued or shared between callers.
  Extension (request metadata, ignored by original clients): ``x-edgeproxy-after: <ts>:<seq>``
  waits for a frame newer than the one identified, so a client loop gets each frame once. The
  frame's ``seq`` is returned in the initial metadata ``x-edgeproxy-seq``.
* ``VideoBufferedImage`` decodes the camera's packet ring (``worker.camera.ring.decode_range``).
* The other RPCs read or write the small control keys and the host camera table.

Errors are gRPC status codes with a message that says what is wrong; a handler error never takes
the server down, and a frame bus (Redis) outage is ``UNAVAILABLE``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import threading
import time
from pathlib import Path

import grpc
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from edgeproxy.contracts import tasks as messages
from edgeproxy.contracts.names import EDGE_NAME_RULE
from worker.camera import frame_format, keys, shm
from worker.frames import convert
from worker.frames.app_keys import AppKeyFile, matches
from worker.frames.config import FrameServerConfig
from worker.frames.proto import video_streaming_pb2 as pb
from worker.frames.proto import video_streaming_pb2_grpc as pb_grpc

log = logging.getLogger("edgeproxy.frames")

SERVICE_NAME = "chrys.cloud.videostreaming.v1beta1.Image"
AFTER_METADATA = "x-edgeproxy-after"  # request: "<ts>:<seq>" of the last frame the caller has
SEQ_METADATA = "x-edgeproxy-seq"  # response (initial metadata): seq of the returned frame
# Request metadata: only check the camera and set demand; the reply is an empty VideoFrame whose
# initial metadata RING_METADATA names the camera's shared-memory ring ("<file>:<ring_id>", empty
# when it has none). FrameClient uses it to read the ring itself on the camera's host.
DEMAND_METADATA = "x-edgeproxy-demand-only"
RING_METADATA = "x-edgeproxy-ring"
ANNOTATION_TASK = messages.RecordAnnotation.task
ANNOTATION_QUEUE = messages.RecordAnnotation.queue
ANNOTATION_WINDOW_MS = 7 * 24 * 3600 * 1000
# How long a range ending now waits for its last packets to reach the ring, beyond the camera's
# batch interval (its status's ring_flush_ms): the wait ends with the first packet past the range.
BUFFER_FOLLOW_S = 1.0
POLL_INTERVAL_S = 0.001  # while callers wait for a frame: one tiny HGET (< 1 KiB) per poll
# What a camera name can be (the camera program's rule): anything else is NOT_FOUND at once.
CAMERA_NAME = EDGE_NAME_RULE
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Abort(Exception):
    """Ends an RPC with a status code and a message for the caller."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _fail(context, method: str, exc: BaseException) -> None:
    """Map an exception raised by a handler to a status (``context.abort`` raises)."""
    if isinstance(exc, Abort):
        context.abort(exc.code, exc.message)
    if isinstance(exc, REDIS_ERRORS):
        log.warning("%s: frame bus (Redis) unavailable: %s", method, exc)
        context.abort(grpc.StatusCode.UNAVAILABLE, f"frame bus (Redis) unavailable: {exc}")
    log.exception("%s: unexpected error", method)
    context.abort(grpc.StatusCode.INTERNAL,
                  f"internal error in {method} ({type(exc).__name__}); see the frame server log")


def unary(method):
    @functools.wraps(method)
    def handler(self, request, context):
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - every error becomes a status, never a crash
            _fail(context, method.__name__, exc)

    return handler


def streaming(method):
    @functools.wraps(method)
    def handler(self, request, context):
        try:
            yield from method(self, request, context)
        except Exception as exc:  # noqa: BLE001
            _fail(context, method.__name__, exc)

    return handler


def _required_device(value: str, field: str = "device_id") -> str:
    name = (value or "").strip()
    if not name:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field} required")
    if not CAMERA_NAME.fullmatch(name):  # cannot exist; and keeps odd names out of Redis keys
        raise Abort(grpc.StatusCode.NOT_FOUND,
                    f"camera {name!r} not found (camera names are letters, digits, '.', '_' and '-')")
    return name


def _parse_after(context) -> tuple[int, int] | None:
    for key, value in context.invocation_metadata() or ():
        if key == AFTER_METADATA:
            ts, _, seq = str(value).partition(":")
            try:
                return int(ts), int(seq or -1)
            except ValueError:
                raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"{AFTER_METADATA} must be '<ts>:<seq>', got {value!r}") from None
    return None


def _metadata_value(context, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return str(value)
    return None


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _newer(meta: dict, after: tuple[int, int]) -> bool:
    """Is this frame newer than the one identified by ``(ts, seq)``? ``seq`` restarts with the
    camera process, ``ts`` (receive wall clock) breaks ties across restarts."""
    ts, seq = int(meta.get("ts", 0)), int(meta.get("seq", -1))
    return ts > after[0] or (ts == after[0] and seq != after[1])


class _Demand:
    """Per (camera, mode): when this server last set the demand key, and the seq of the frame that
    was current when that run of demand began (a frame with another seq was decoded since)."""

    __slots__ = ("last_set_ms", "start_seq")

    def __init__(self, last_set_ms: int, start_seq):
        self.last_set_ms = last_set_ms
        self.start_seq = start_seq


class _Watcher:
    """Polls one frame hash's meta while callers wait for a frame (fresh or newer than theirs) and
    wakes them when it changes. One poller per camera and mode, however many callers wait; the
    thread ends when nobody waits."""

    def __init__(self, client: redis.Redis, frame_key: str):
        self.client = client
        self.frame_key = frame_key
        self.cond = threading.Condition()
        self.meta: dict | None = None
        self.raw: bytes | str | None = None
        self.error: BaseException | None = None
        self.waiters = 0
        self.running = False

    def wait(self, predicate, timeout: float) -> dict | None:
        """The newest meta once ``predicate`` accepts it, else the newest meta seen at timeout."""
        with self.cond:
            self.waiters += 1
            if not self.running:  # (re)start polling; what was seen before may be old
                self.running = True
                self.error = None
                self.raw = self.meta = None
                threading.Thread(target=self._poll, name=f"watch {self.frame_key}", daemon=True).start()
            try:
                self.cond.wait_for(lambda: self.error is not None or predicate(self.meta), timeout)
                if self.error is not None:
                    raise self.error
                return self.meta
            finally:
                self.waiters -= 1

    def _poll(self) -> None:
        while True:
            with self.cond:
                if self.waiters == 0:
                    self.running = False
                    return
            try:
                raw = self.client.hget(self.frame_key, "meta")
            except Exception as exc:  # noqa: BLE001 - handed to the waiters
                with self.cond:
                    self.error = exc
                    self.running = False
                    self.cond.notify_all()
                return
            if raw != self.raw:
                with self.cond:
                    self.raw = raw
                    self.meta = convert.parse_json(raw)
                    self.cond.notify_all()
            time.sleep(POLL_INTERVAL_S)


class _Frame:
    """A frame as served: its meta and the serialized ``VideoFrame``."""

    __slots__ = ("meta", "blob", "identity")

    def __init__(self, meta: dict, blob: bytes):
        self.meta = meta
        self.blob = blob
        self.identity = (meta.get("ts"), meta.get("seq"))


# KEYS: host table, status, frame hash, demand key; ARGV: camera name, demand TTL ms.
# Returns {in host table (0/1), status JSON or "", frame meta JSON or ""}; sets demand only for a
# known camera (no stray demand keys for misspelt names).
LATEST_SCRIPT = """
local in_table = redis.call('HEXISTS', KEYS[1], ARGV[1])
local status = redis.call('GET', KEYS[2])
if in_table == 0 and not status then
  return {0, '', ''}
end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
local meta = redis.call('HGET', KEYS[3], 'meta')
return {in_table, status or '', meta or ''}
"""


class AnnotationSender:
    """Hands annotation events to the control plane as a Celery task message (queue ``control``).

    A small Celery app of its own (same broker, JSON, protocol 2) instead of ``edgeproxy.celery``:
    that one configures itself from Django settings, which the frame server must not need.
    """

    def __init__(self, broker_url: str):
        self.broker_url = broker_url
        self._app = None
        self._lock = threading.Lock()

    def _celery(self):
        if self._app is None:
            from celery import Celery

            app = Celery("edgeproxy-frames", broker=self.broker_url, set_as_current=False)
            app.conf.update(
                task_serializer="json",
                accept_content=["json"],
                broker_connection_retry_on_startup=True,
                broker_connection_timeout=3,
                broker_transport_options={"socket_timeout": 5, "socket_connect_timeout": 3},
                task_default_queue=ANNOTATION_QUEUE,
            )
            self._app = app
        return self._app

    def send(self, kwargs: dict) -> str:
        with self._lock:
            message = messages.control_message(ANNOTATION_TASK, **kwargs)
            result = self._celery().send_task(
                message.task,
                kwargs=message.kwargs(),
                queue=ANNOTATION_QUEUE,
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
            )
            return result.id

    def close(self) -> None:
        with self._lock:
            if self._app is not None:
                self._app.close()
                self._app = None


class RateLimiter:
    """A token bucket per caller: ``burst`` calls at once, then ``rate`` calls per second."""

    MAX_CALLERS = 4096  # past this many, buckets that have refilled (idle callers) are forgotten

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[tuple, tuple[float, float]] = {}  # caller -> (tokens, at)
        self._lock = threading.Lock()

    def allow(self, caller: tuple) -> bool:
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if len(self._buckets) >= self.MAX_CALLERS and caller not in self._buckets:
                self._forget_full(now)
            allowed = tokens >= 1.0
            self._buckets[caller] = (tokens - 1.0 if allowed else tokens, now)
            return allowed

    def _forget_full(self, now: float) -> None:
        refill_s = self.burst / self.rate
        for caller in [c for c, (_t, at) in self._buckets.items() if now - at >= refill_s]:
            del self._buckets[caller]


def caller_of(context) -> tuple[str, str]:
    """Who is calling, for rate limits: (fingerprint of the API key sent, peer address without port)."""
    peer = context.peer() or ""
    address = peer.rsplit(":", 1)[0] if peer.startswith(("ipv4:", "ipv6:")) else peer
    key = ""
    for name, value in context.invocation_metadata() or ():
        if name == "authorization":
            key = hashlib.sha256(str(value).strip().encode()).hexdigest()[:16]
            break
    return key, address


class ImageServicer(pb_grpc.ImageServicer):
    def __init__(self, config: FrameServerConfig, redis_client: redis.Redis, annotations: AnnotationSender):
        self.config = config
        self.redis = redis_client
        self.annotations = annotations
        self.recordings = None  # worker.frames.recordings.RecordingsServicer: keeps footage around events
        self.annotate_limiter = RateLimiter(config.annotate_rate, config.annotate_burst)
        self.host_table = keys.host_cameras(config.host)
        self._demand: dict[tuple[str, bool], _Demand] = {}
        self._demand_lock = threading.Lock()
        self._frames: dict[tuple[str, bool], _Frame] = {}  # last serialized frame per camera and mode
        self._fetch_locks: dict[tuple[str, bool], threading.Lock] = {}
        self._watchers: dict[tuple[str, bool], _Watcher] = {}
        self._latest_script = redis_client.register_script(LATEST_SCRIPT)
        self._stopped = threading.Event()
        self._rings: dict[str, shm.FrameRingReader] = {}  # camera -> its mapped shared-memory ring
        # camera -> its ring's demand file, mapped for writing (None: not writable, Redis keys only)
        self._ring_demands: dict[str, shm.ReaderDemand | None] = {}

    # --- helpers -------------------------------------------------------------------------------

    def _camera(self, name: str) -> tuple[dict | None, dict | None]:
        """(host table entry, status) of a camera; ``NOT_FOUND`` if neither exists."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.host_table, name)
        pipe.get(keys.status(name))
        entry_raw, status_raw = pipe.execute()
        if entry_raw is None and status_raw is None:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"camera {name!r} not found on host {self.config.host!r}")
        entry = convert.parse_json(entry_raw) or ({} if entry_raw is not None else None)
        return entry, convert.parse_json(status_raw)

    def _time_left(self, context) -> float:
        remaining = context.time_remaining()
        return float("inf") if remaining is None else remaining

    def _demand_run(self, name: str, keyframe_only: bool, current_seq) -> _Demand:
        """Record that demand is being set now; start a new run if it had lapsed."""
        now = now_ms()
        with self._demand_lock:
            run = self._demand.get((name, keyframe_only))
            if run is None or now - run.last_set_ms > keys.DEMAND_TTL_MS:
                if len(self._demand) > 4096:
                    self._forget_idle()
                run = self._demand[(name, keyframe_only)] = _Demand(now, current_seq)
            else:
                run.last_set_ms = now
            return run

    def start_housekeeping(self, interval_s: float = 5.0) -> None:
        """A daemon thread that drops serialized frames of cameras nobody reads any more."""

        def loop():
            while not self._stopped.wait(interval_s):
                try:
                    self._forget_stale_frames()
                except Exception:  # housekeeping must never die
                    log.exception("housekeeping failed")

        threading.Thread(target=loop, name="frames-housekeeping", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        self.annotations.close()

    def _forget_stale_frames(self) -> None:
        """Drop serialized frames nobody asked for lately (called from the housekeeping thread)."""
        now = now_ms()
        with self._demand_lock:
            for key in [k for k, v in self._demand.items() if now - v.last_set_ms > keys.DEMAND_TTL_MS]:
                self._frames.pop(key, None)
            # Unmap rings nobody asked for lately, and closed ones: their memory goes with the mapping.
            wanted = {name for (name, _mode), v in self._demand.items() if now - v.last_set_ms <= keys.DEMAND_TTL_MS}
            for name in [n for n, r in self._rings.items() if n not in wanted or r.closed]:
                self._rings.pop(name).close()
                demand = self._ring_demands.pop(name, None)
                if demand is not None:
                    demand.close()

    # --- frames --------------------------------------------------------------------------------

    @unary
    def VideoLatestImage(self, request, context):
        name = _required_device(request.device_id)
        keyframe_only = bool(request.key_frame_only)
        after = _parse_after(context)
        demand_key = keys.demand_keyframes(name) if keyframe_only else keys.demand_all(name)
        frame_key = keys.frame_keyframe(name) if keyframe_only else keys.frame_latest(name)

        # One round trip: known?, status, newest frame's meta, and demand set (known cameras only).
        in_table, status_raw, meta_raw = self._latest_script(
            keys=[self.host_table, keys.status(name), frame_key, demand_key], args=[name, keys.DEMAND_TTL_MS])
        if not in_table and not status_raw:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"camera {name!r} not found on host {self.config.host!r}")
        status = convert.parse_json(status_raw)
        state = (status or {}).get("state")
        if state != "streaming":
            detail = f"state {state}" if state else "no status: camera process not running"
            error = (status or {}).get("last_error")
            raise Abort(grpc.StatusCode.UNAVAILABLE,
                        f"camera {name!r} is not streaming ({detail})" + (f": {error}" if error else ""))

        ring_file = (status or {}).get("frames_ring")
        ring_id = (status or {}).get("frames_ring_id")
        reader = self._ring(name, ring_file, ring_id) if ring_file else None
        if reader is not None:  # the camera checks its ring's demand file on every packet: decoding starts at once
            demand = self._ring_demands.get(name)
            if demand is not None:
                demand.want(keyframe_only, now_ms() + keys.DEMAND_TTL_MS)
        if _metadata_value(context, DEMAND_METADATA):
            context.send_initial_metadata(((RING_METADATA, f"{ring_file}:{ring_id}" if ring_file else ""),))
            return pb.VideoFrame(device_id=name)
        if reader is not None:
            return self._latest_from_ring(context, name, reader, keyframe_only, after)

        meta = convert.parse_json(meta_raw)
        run = self._demand_run(name, keyframe_only, meta.get("seq") if meta else None)

        acceptable = self._acceptable(keyframe_only, after, run.start_seq)

        wait_s = min(self.config.wait_ms / 1000.0, max(0.0, self._time_left(context) - 0.05))
        deadline = time.monotonic() + wait_s
        while True:
            if meta is not None and acceptable(meta):
                cached = self._cached_frame(name, keyframe_only, frame_key, meta, acceptable)
                if cached is not None:
                    return self._frame_reply(context, cached)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not context.is_active():
                break
            # Shared per camera and mode: one poller however many callers wait.
            meta = self._watcher(name, keyframe_only, frame_key).wait(acceptable, min(remaining, 0.25))

        if keyframe_only and after is None and meta:
            # No new keyframe within the wait (GOP longer than the wait): the newest one decoded.
            cached = self._cached_frame(name, keyframe_only, frame_key, meta, lambda m: bool(m))
            if cached is not None:
                return self._frame_reply(context, cached)
        what = "newer frame" if after is not None else ("keyframe" if keyframe_only else "frame")
        raise Abort(grpc.StatusCode.UNAVAILABLE,
                    f"camera {name!r}: no {what} within {wait_s * 1000:.0f} ms (decoding starts on demand; retry)")

    def _acceptable(self, keyframe_only: bool, after, start_seq):
        """Whether a frame meta answers a ``VideoLatestImage``: newer than ``after`` when given, else
        fresh (within max age)."""

        def acceptable(m: dict | None) -> bool:
            if not m:
                return False
            if after is not None:
                return _newer(m, after)
            if now_ms() - int(m.get("ts", 0)) <= self.config.max_age_ms:
                return True
            # A keyframe may legitimately be older than max age (long GOP): accept it if the camera
            # decoded it during this run of demand.
            return keyframe_only and m.get("seq") != start_seq

        return acceptable

    def _ring(self, name: str, ring_file: str, ring_id) -> shm.FrameRingReader | None:
        """The camera's shared-memory ring, mapped once and again when the camera made a new one
        (a bigger ring: the old one says closed; a new process after a crash: the status names
        another ring and the old one's heartbeat stopped)."""
        if not self.config.shm.enabled or "/" in ring_file or ring_file.startswith("."):
            return None

        def current(reader) -> bool:
            return reader is not None and not reader.closed and (
                str(reader.ring_id) == str(ring_id) or now_ms() - reader.heartbeat_ms < shm.HEARTBEAT_STALE_MS)

        reader = self._rings.get(name)
        if current(reader):
            return reader
        with self._demand_lock:
            reader = self._rings.get(name)
            if current(reader):
                return reader
            path = f"{self.config.shm.directory}/{ring_file}"
            try:
                fresh = shm.FrameRingReader(path)
            except (OSError, shm.RingError) as exc:
                log.warning("camera %s: cannot map its frame ring %s (%s); reading Redis", name, ring_file, exc)
                return None
            if reader is not None:
                reader.close()
            old_demand = self._ring_demands.pop(name, None)
            if old_demand is not None:
                old_demand.close()
            try:
                self._ring_demands[name] = shm.ReaderDemand(path)
            except OSError as exc:  # demand then reaches the camera through the Redis keys only
                log.warning("camera %s: cannot write its ring's demand file (%s); demand through Redis", name, exc)
                self._ring_demands[name] = None
            self._rings[name] = fresh
            return fresh

    def _latest_from_ring(self, context, name: str, reader: shm.FrameRingReader, keyframe_only: bool, after):
        """``VideoLatestImage`` from the shared-memory ring (same rules as from Redis)."""
        run = self._demand_run(name, keyframe_only, reader.newest_seq(keyframe_only) or None)

        acceptable = self._acceptable(keyframe_only, after, run.start_seq)

        wait_s = min(self.config.wait_ms / 1000.0, max(0.0, self._time_left(context) - 0.05))
        deadline = time.monotonic() + wait_s
        cached = None
        while True:
            seq = reader.newest_seq(keyframe_only)
            if seq:
                cached = self._ring_frame(name, keyframe_only, reader, seq)
                if cached is not None and acceptable(cached.meta):
                    return self._frame_reply(context, cached)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not context.is_active() or reader.closed:
                break
            reader.wait(seq, min(remaining, 0.25), keyframe_only)
        if keyframe_only and after is None and cached is not None:
            return self._frame_reply(context, cached)
        what = "newer frame" if after is not None else ("keyframe" if keyframe_only else "frame")
        raise Abort(grpc.StatusCode.UNAVAILABLE,
                    f"camera {name!r}: no {what} within {wait_s * 1000:.0f} ms (decoding starts on demand; retry)")

    def _ring_frame(self, name: str, keyframe_only: bool, reader: shm.FrameRingReader, seq: int):
        """The serialized ``VideoFrame`` of the ring's newest frame: pixels copied once from the
        slot, straight behind the other fields (no conversion; one serialization for every caller)."""
        cache_key = (name, keyframe_only)
        identity = (reader.ring_id, seq)
        cached = self._frames.get(cache_key)
        if cached is not None and cached.identity == identity:
            return cached
        with self._fetch_lock(cache_key):
            cached = self._frames.get(cache_key)
            if cached is not None and cached.identity == identity:
                return cached

            def prefix(meta: dict) -> bytes:
                head = convert.video_frame_head(name, meta)
                return head + b"\x1a" + _varint(meta["width"] * meta["height"] * 3)

            found = reader.read_blob(keyframe_only, prefix)
            if found is None:
                return cached
            meta, blob = found
            cached = _Frame(meta, blob)
            cached.identity = (reader.ring_id, meta["seq"])
            self._frames[cache_key] = cached
            return cached

    def _cached_frame(self, name: str, keyframe_only: bool, frame_key: str, meta: dict, acceptable):
        """The serialized ``VideoFrame`` of the frame ``meta`` names (or a newer acceptable one).

        One Redis read and one serialization per frame, however many callers want it: callers of
        the same camera and mode share the last serialized frame.
        """
        cache_key = (name, keyframe_only)
        identity = (meta.get("ts"), meta.get("seq"))
        cached = self._frames.get(cache_key)
        if cached is not None and cached.identity == identity:
            return cached
        with self._fetch_lock(cache_key):
            cached = self._frames.get(cache_key)  # another caller may have fetched it meanwhile
            if cached is not None and (cached.identity == identity or (
                    _newer(cached.meta, (int(meta.get("ts", 0)), int(meta.get("seq", -1)))) and
                    acceptable(cached.meta))):
                return cached
            meta_raw, data = self.redis.hmget(frame_key, "meta", "data")
            fetched = convert.parse_json(meta_raw)
            if not fetched or not isinstance(data, bytes) or not acceptable(fetched):
                return None  # gone (expired) between the two reads (the client never decodes: bytes)
            try:  # I420 from the camera is converted to BGR24 here, once per frame for every caller
                message = convert.video_frame(name, fetched, data)
            except frame_format.FrameFormatError as exc:
                log.warning("camera %s: unusable frame record: %s", name, exc)
                raise Abort(grpc.StatusCode.UNAVAILABLE,
                            f"camera {name!r} published a malformed frame ({exc}); retry") from None
            cached = _Frame(fetched, message.SerializeToString())
            self._frames[cache_key] = cached
            return cached

    def _watcher(self, name: str, keyframe_only: bool, frame_key: str) -> _Watcher:
        with self._demand_lock:
            watcher = self._watchers.get((name, keyframe_only))
            if watcher is None:
                watcher = self._watchers[(name, keyframe_only)] = _Watcher(self.redis, frame_key)
            return watcher

    def _fetch_lock(self, cache_key) -> threading.Lock:
        with self._demand_lock:
            lock = self._fetch_locks.get(cache_key)
            if lock is None:
                if len(self._fetch_locks) > 4096:  # unbounded device names: forget idle ones
                    self._forget_idle()
                lock = self._fetch_locks[cache_key] = threading.Lock()
            return lock

    def _forget_idle(self) -> None:
        now = now_ms()
        for key in [k for k, v in self._demand.items() if now - v.last_set_ms > keys.DEMAND_TTL_MS]:
            self._demand.pop(key, None)
            self._frames.pop(key, None)
            self._fetch_locks.pop(key, None)
            watcher = self._watchers.get(key)
            if watcher is not None and not watcher.running:
                self._watchers.pop(key, None)

    def _frame_reply(self, context, cached: _Frame) -> bytes:
        context.send_initial_metadata(((SEQ_METADATA, str(cached.meta.get("seq", ""))),))
        return cached.blob

    @streaming
    def VideoBufferedImage(self, request, context):
        name = _required_device(request.device_id)
        start, end = int(request.timestamp_from), int(request.timestamp_to)
        if start < 0 or end < 0:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "timestamp_from and timestamp_to must be >= 0 (ms)")
        now = now_ms()
        if end == 0:
            end = now  # 0 = up to now
        if end < start:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"timestamp_to ({end}) is before timestamp_from ({start}); both are ms since epoch")
        _entry, status = self._camera(name)
        if not self.redis.exists(keys.ring(name)):
            raise Abort(grpc.StatusCode.UNAVAILABLE,
                        f"camera {name!r} has no buffered packets (buffer disabled or camera not streaming)")
        # Never waits for the future: the range ends now at the latest. Packets reach the ring in
        # batches (every ring_flush_ms of the camera's status, 1 s by default), so follow the ring
        # up to ``end``: at most one batch interval, plus BUFFER_FOLLOW_S if packets stop coming.
        end = min(end, now)
        flush_ms = (status or {}).get("ring_flush_ms")
        follow_s = BUFFER_FOLLOW_S + (flush_ms / 1000.0 if isinstance(flush_ms, int) and 0 < flush_ms <= 60_000
                                      else 0.15)
        try:
            from worker.camera.ring import decode_range
        except ImportError as exc:
            raise Abort(grpc.StatusCode.UNIMPLEMENTED, f"buffer decoding not available: {exc}") from exc
        try:
            decoder = decode_range(self.redis, name, start, end, follow_s=follow_s)
            first = next(decoder, None)
        except LookupError as exc:  # no codec info: the camera never connected
            raise Abort(grpc.StatusCode.UNAVAILABLE, f"camera {name!r}: {exc}") from exc
        frames = itertools.chain((first,), decoder) if first is not None else ()
        sent = 0
        try:
            for meta, image in frames:
                if not context.is_active():
                    log.info("VideoBufferedImage %s: caller went away after %d frames", name, sent)
                    return
                ts = int(meta.get("ts", 0))
                if ts < start or ts > end:
                    continue
                height, width = image.shape[:2]
                meta = {**meta, "width": width, "height": height, "data_format": frame_format.BGR24}
                yield convert.video_frame(name, meta, image.tobytes())
                sent += 1
        finally:
            decoder.close()  # stops decode_range (and its ring reads) when the caller goes away
        log.info("VideoBufferedImage %s [%d, %d]: %d frames", name, start, end, sent)

    @unary
    def VideoProbe(self, request, context):
        name = _required_device(request.device_id)
        self._camera(name)
        ring = keys.ring(name)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.codec(name))
        pipe.xlen(ring)
        pipe.xrange(ring, "-", "+", count=1)
        pipe.xrevrange(ring, "+", "-", count=1)
        codec_raw, frames, first, last = pipe.execute()
        reply = pb.VideoProbeResponse(video_codec=convert.video_codec(convert.parse_json(codec_raw)))
        if frames and first and last:
            reply.buffer.CopyFrom(convert.video_buffer(frames, first[0][0], last[0][0]))
        return reply

    # --- cameras and control keys -----------------------------------------------------------

    @streaming
    def ListStreams(self, request, context):
        table = self.redis.hgetall(self.host_table)
        for raw_name in sorted(table):
            name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
            entry = convert.parse_json(table[raw_name])
            if entry is None:
                log.warning("host camera table: entry of %s is not a JSON object; skipped", name)
                continue
            if not context.is_active():
                return
            yield convert.list_stream(name, entry)

    def _switch(self, name: str, on: bool, key: str, what: str) -> None:
        entry, _status = self._camera(name)
        if on and not (entry or {}).get("has_rtmp"):
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION,
                        f"camera {name!r} has no RTMP endpoint: set rtmp_endpoint on the camera "
                        f"before turning {what} on")
        self.redis.set(key, "1" if on else "0")
        log.info("camera %s: %s %s", name, what, "on" if on else "off")

    @unary
    def Proxy(self, request, context):
        name = _required_device(request.device_id)
        self._switch(name, bool(request.passthrough), keys.rtmp_switch(name), "RTMP pass-through")
        return pb.ProxyResponse(device_id=name, passthrough=bool(request.passthrough))

    @unary
    def Storage(self, request, context):
        name = _required_device(request.device_id)
        self._switch(name, bool(request.start), keys.storage_flag(name), "storage")
        return pb.StorageResponse(device_id=name, start=bool(request.start))

    @unary
    def Annotate(self, request, context):
        if not self.annotate_limiter.allow(caller_of(context)):
            raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"too many annotations: at most {self.config.annotate_rate:g} per second per caller "
                        f"(bursts of {self.config.annotate_burst}); retry later")
        size = request.ByteSize()
        if size > self.config.annotation_max_bytes:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"annotation is {size} bytes; at most {self.config.annotation_max_bytes} bytes are accepted")
        if not request.device_name.strip() or not request.type.strip() or request.start_timestamp < 0:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "device_name and type (event type) required")
        self._camera(_required_device(request.device_name, "device_name"))  # NOT_FOUND if not on this host
        now = now_ms()
        if abs(request.start_timestamp - now) > ANNOTATION_WINDOW_MS:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"start_timestamp {request.start_timestamp} is not within 7 days of now ({now}): "
                        "it must be milliseconds since the epoch")
        event = convert.message_to_dict(request)
        event["host"] = self.config.host
        try:
            self.annotations.send(event)
        except Exception as exc:  # kombu raises OperationalError and friends
            log.warning("Annotate: hand-off to the control plane failed: %s", exc)
            raise Abort(grpc.StatusCode.UNAVAILABLE, f"cannot hand the annotation to the control plane: {exc}") from exc
        if self.recordings is not None:
            self.recordings.keep_event(self.redis, request.device_name.strip(), request.start_timestamp,
                                       request.end_timestamp or None)
        return pb.AnnotateResponse(device_name=request.device_name, remote_stream_id=request.remote_stream_id,
                                   type=request.type, start_timestamp=request.start_timestamp)

    @unary
    def SystemTime(self, request, context):
        return pb.SystemTimeResponse(current_time=now_ms())


# --- authentication ---------------------------------------------------------------------------


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Requires metadata ``authorization: Token <key>`` (``Bearer <key>`` accepted too): one of the
    configured keys or, read afresh when the file changes, a key of one of this host's apps."""

    def __init__(self, tokens, app_keys: AppKeyFile | None = None):
        self._tokens = [t.encode() for t in tokens]
        self._app_keys = app_keys

    def _authorized(self, metadata) -> bool:
        for key, value in metadata or ():
            if key != "authorization":
                continue
            scheme, _, token = str(value).strip().partition(" ")
            if scheme.lower() not in ("token", "bearer"):
                return False
            candidate = token.strip().encode()
            app_keys = self._app_keys.current() if self._app_keys is not None else ()
            return matches(candidate, [*self._tokens, *app_keys])
        return False

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or self._authorized(handler_call_details.invocation_metadata):
            return handler
        message = "missing or invalid API key: send metadata 'authorization: Token <key>'"

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(lambda it, ctx: deny(None, ctx), handler.request_deserializer,
                                                         handler.response_serializer)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(lambda it, ctx: deny(None, ctx), handler.request_deserializer,
                                                        handler.response_serializer)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)
        return grpc.unary_unary_rpc_method_handler(deny, handler.request_deserializer, handler.response_serializer)


# --- server -----------------------------------------------------------------------------------


def _serialize(message) -> bytes:
    """Response serializer that also passes through already serialized messages (cached frames)."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_servicer(servicer: ImageServicer, server: grpc.Server) -> None:
    """Like the generated ``add_ImageServicer_to_server``, but a handler may return serialized bytes."""
    service = pb.DESCRIPTOR.services_by_name["Image"]
    handlers = {}
    for method in service.methods:
        request_type = getattr(pb, method.input_type.name)
        behaviour = getattr(servicer, method.name)
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                behaviour, request_deserializer=request_type.FromString, response_serializer=_serialize)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                behaviour, request_deserializer=request_type.FromString, response_serializer=_serialize)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def redis_client(url: str, max_connections: int) -> redis.Redis:
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=15,
        retry=Retry(NoBackoff(), 1),  # one quick retry (stale pooled connection), then UNAVAILABLE
    )
    return redis.Redis(connection_pool=pool)


def build_server(config: FrameServerConfig) -> tuple[grpc.Server, ImageServicer, int]:
    """Create and bind (not start) the server; returns (server, servicer, bound port)."""
    from concurrent import futures

    # Handlers and frame watchers (at most one per waiting handler) each hold a connection at a time.
    client = redis_client(config.redis_url, config.workers * 2 + 4)
    servicer = ImageServicer(config, client, AnnotationSender(config.broker_url))
    app_keys = AppKeyFile(Path(config.app_keys_file)) if config.app_keys_file else None
    interceptors = [TokenAuthInterceptor(config.tokens, app_keys)] if config.tokens else []
    options = [
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10000),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="frames"),
        interceptors=interceptors,
        options=options,
        maximum_concurrent_rpcs=config.workers * 4,
    )
    add_servicer(servicer, server)
    from worker import recordings
    from worker.frames.recordings import RecordingsServicer, add_recordings

    footage = RecordingsServicer(recordings.host_settings())
    servicer.recordings = footage  # type: ignore[assignment]  # the servicer's hook for Annotate
    add_recordings(server, footage)
    servicer.start_housekeeping()
    if config.tls_cert:
        credentials = grpc.ssl_server_credentials([(config.tls_key, config.tls_cert)])
        port = server.add_secure_port(config.address, credentials)
    else:
        port = server.add_insecure_port(config.address)
    if not port:
        raise OSError(f"cannot listen on {config.address}")
    return server, servicer, port
