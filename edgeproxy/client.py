"""Python client of the edgeproxy frame API (gRPC, port 50001 of an edge host) for AI programs.

    from edgeproxy.client import FrameClient

    with FrameClient("127.0.0.1:50001") as frames:
        image, meta = frames.latest("front-door")      # numpy uint8 array, H x W x 3, BGR
        print(image.shape, meta["timestamp"])

    for image, meta in frames.frames("front-door"):   # every new frame once, newest first
        ...

Imports neither Django nor anything of the control plane: only grpcio, protobuf, numpy (and
OpenCV for ``latest_jpeg``). On the camera's own host (its shared-memory frame ring is mapped
readable under ``EDGEPROXY_FRAMES_SHM_DIR``, default ``/dev/shm/edgeproxy``), ``latest`` and
``frames`` read frames from shared memory; elsewhere, and for everything else, they use gRPC.
The frame server still answers who the camera is (a small call when the client first reads a
camera, and again whenever the ring says the camera stopped), so errors are the same either way;
the reader keeps the camera decoding by storing its demand in the ring's demand file (or, where it
cannot write that file, by a small call to the frame server every 2 s). Errors are
``FrameError`` subclasses: ``CameraNotFound``, ``CameraUnavailable`` (camera not streaming, no
frame yet; ``ServerUnavailable`` when the frame server itself cannot be reached),
``InvalidRequest``, ``NotAuthorized``, ``FrameTimeout``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
from google.protobuf.message import DecodeError

from worker.frames.proto import video_streaming_pb2 as pb
from worker.frames.proto import video_streaming_pb2_grpc as pb_grpc

DEFAULT_ADDRESS = "127.0.0.1:50001"
DEFAULT_MAX_MESSAGE_BYTES = 128 * 1024 * 1024  # a 1080p BGR frame is 6.2 MB, 4K 25 MB
AFTER_METADATA = "x-edgeproxy-after"
SEQ_METADATA = "x-edgeproxy-seq"
DEMAND_METADATA = "x-edgeproxy-demand-only"
RING_METADATA = "x-edgeproxy-ring"
DEFAULT_SHM_DIR = "/dev/shm/edgeproxy"
# How often a reader that cannot write the ring's demand file asks the server again (keeps the
# camera's demand, which lasts DEMAND_TTL_MS; the ring itself says when its camera stopped).
LOCAL_REFRESH_S = 2.0
LOCAL_RETRY_S = 0.5  # a camera whose ring says it stopped: the server's answer is reused this long
LOCAL_DEMAND_S = 1.0  # how often a reader that can write the ring's demand file stores its demand there
DEMAND_TTL_MS = 5000  # as worker.camera.keys.DEMAND_TTL_MS
LOCAL_IDLE_S = 5.0  # a camera not read for this long is no longer refreshed
WAIT_S = 2.0  # as the server's EDGEPROXY_FRAMES_WAIT_MS
WAIT_SLICE_S = 0.25  # as worker.camera.shm.WAIT_SLICE_S: how long a wait sleeps before it checks more
MAX_AGE_MS = 2000  # as the server's EDGEPROXY_FRAMES_MAX_AGE_MS
HEARTBEAT_STALE_MS = 3000  # as worker.camera.shm.HEARTBEAT_STALE_MS: no heartbeat this long, the camera is dead
LATEST_METHOD = "/chrys.cloud.videostreaming.v1beta1.Image/VideoLatestImage"
LARGE_REPLY_BYTES = 1024 * 1024  # from this size on, glibc would mmap (and page-fault in) every reply
VIDEO_FRAME_DATA_FIELD = 3  # VideoFrame.data (worker/frames/proto/video_streaming.proto)

__all__ = [
    "FrameClient", "latest_jpeg", "FrameError", "CameraNotFound", "CameraUnavailable", "ServerUnavailable",
    "InvalidRequest", "NotAuthorized", "FrameTimeout",
]


class FrameError(Exception):
    """A frame API call failed. ``code`` is the gRPC status code, ``details`` the server's message."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, details: str = ""):
        super().__init__(message)
        self.code = code
        self.details = details


class CameraNotFound(FrameError):
    """No camera of that name on this edge host."""


class CameraUnavailable(FrameError):
    """The camera exists but gives no frame now (not streaming, decoding just started): retry."""


class ServerUnavailable(CameraUnavailable):
    """The frame server cannot be reached (not running, wrong address, network)."""


class InvalidRequest(FrameError):
    """The request is wrong (missing camera name, bad range, precondition not met)."""


class NotAuthorized(FrameError):
    """The frame server wants an API key (``token=``), or the one given is not valid."""


class FrameTimeout(FrameError):
    """The call did not finish within its timeout."""


_ERRORS = {
    grpc.StatusCode.NOT_FOUND: CameraNotFound,
    grpc.StatusCode.UNAVAILABLE: CameraUnavailable,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequest,
    grpc.StatusCode.UNAUTHENTICATED: NotAuthorized,
    grpc.StatusCode.PERMISSION_DENIED: NotAuthorized,
    grpc.StatusCode.DEADLINE_EXCEEDED: FrameTimeout,
}
_CONNECT_FAILURES = ("failed to connect", "connection refused", "dns resolution failed", "name resolution",
                     "connections to all backends failing", "socket closed", "ssl")


def _error(exc: grpc.RpcError, address: str) -> FrameError:
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else "") or ""
    cls = _ERRORS.get(code, FrameError)
    if code == grpc.StatusCode.UNAVAILABLE and any(s in details.lower() for s in _CONNECT_FAILURES):
        return ServerUnavailable(f"frame server {address} unreachable: {details}", code, details)
    name = code.name if code is not None else "UNKNOWN"
    return cls(f"{details or name} ({name})", code, details)


def frame_metadata(frame: pb.VideoFrame, seq: int | None = None) -> dict:
    """Everything of a ``VideoFrame`` except the pixels, as a plain dict."""
    return {
        "device_id": frame.device_id,
        "width": frame.width,
        "height": frame.height,
        "timestamp": frame.timestamp,  # ms since epoch when the frame's packet was received
        "is_keyframe": frame.is_keyframe,
        "frame_type": frame.frame_type,
        "pts": frame.pts,
        "dts": frame.dts,
        "time_base": frame.time_base,
        "is_corrupt": frame.is_corrupt,
        "codec_name": frame.codec_name,
        "pix_fmt": frame.pix_fmt,
        "packet": frame.packet,
        "keyframe": frame.keyframe,
        "seq": seq,
    }


def frame_array(frame: pb.VideoFrame, writable: bool = True) -> np.ndarray:
    """The BGR24 pixels of a ``VideoFrame`` as an H x W x 3 uint8 array."""
    data = frame.data  # each access of a bytes field copies it (upb): once
    height, width = int(frame.height), int(frame.width)
    if not width or not height or len(data) != height * width * 3:
        raise FrameError(f"frame of {len(data)} bytes does not match {width}x{height} BGR24")
    buffer = bytearray(data) if writable else data
    return np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3)


def _varint(raw: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(raw):
            raise ValueError("truncated VideoFrame")
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def split_frame(raw: bytes) -> tuple[pb.VideoFrame, int, int]:
    """A serialized ``VideoFrame`` as (the message without ``data``, offset and length of
    ``data`` in ``raw``): the pixels are never copied by parsing, only the other fields are."""
    mv = memoryview(raw)
    pos, end = 0, len(raw)
    data_at = data_len = 0
    rest = []  # the other fields' bytes (small), in order
    while pos < end:
        start = pos
        key, pos = _varint(raw, pos)
        wire = key & 7
        if wire == 0:
            _value, pos = _varint(raw, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(raw, pos)
            if pos + length > end:
                raise ValueError("truncated VideoFrame")
            if key >> 3 == VIDEO_FRAME_DATA_FIELD:
                data_at, data_len = pos, length  # proto3: the last occurrence wins
                pos += length
                continue
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire} in a VideoFrame")
        if pos > end:
            raise ValueError("truncated VideoFrame")
        rest.append(mv[start:pos])
    return pb.VideoFrame.FromString(b"".join(rest)), data_at, data_len


_heap_tuned = False


def _keep_frame_buffers_once() -> None:
    """Frame-sized gRPC replies reuse heap memory from now on (see ``FrameClient``); once per process."""
    global _heap_tuned
    if not _heap_tuned:
        _heap_tuned = True
        from worker.camera.heap import keep_frame_buffers

        keep_frame_buffers()


def _pixels(raw: bytes, offset: int, size: int, frame: pb.VideoFrame, writable: bool) -> np.ndarray:
    """The BGR24 pixels at ``raw[offset:offset + size]`` as an H x W x 3 array: a read-only view of
    the received bytes, or (``writable``) one copy."""
    height, width = int(frame.height), int(frame.width)
    if not width or not height or size != height * width * 3:
        raise FrameError(f"frame of {size} bytes does not match {width}x{height} BGR24")
    image = np.frombuffer(raw, dtype=np.uint8, count=size, offset=offset).reshape(height, width, 3)
    return image.copy() if writable else image


class _Local:
    """What the client knows of one camera's shared-memory ring (per camera and mode)."""

    __slots__ = ("reader", "demand", "demand_at", "checked", "used", "error")

    def __init__(self, reader, checked: float, demand=None):
        self.reader = reader  # worker.camera.shm.FrameRingReader, or None: read through gRPC
        # worker.camera.shm.ReaderDemand: the ring's demand file, writable by this process; None:
        # demand (and the camera's state) through the frame server once a second
        self.demand = demand
        self.demand_at = checked
        self.checked = checked
        self.used = checked
        self.error: FrameError | None = None  # what the last refresh said (raised by the next read)


class FrameClient:
    """A connection to the frame server of one edge host. Thread-safe; reuse one per program.

    ``token``: API key when the server requires one (``EDGEPROXY_GRPC_TOKENS``).
    ``tls``: use TLS; ``root_certificates`` (PEM bytes) to trust a private CA / self-signed cert.
    ``timeout``: seconds per call (a buffered range gets ``timeout`` per frame gap, see ``buffered``).
    ``writable``: return writable arrays (one copy per frame); False returns read-only arrays
    (from shared memory: a view of the ring slot, intact for ``slots - 1`` frame intervals, see
    ``intact``).
    ``shm_dir``: where this host's frame rings are (default ``EDGEPROXY_FRAMES_SHM_DIR`` or
    ``/dev/shm/edgeproxy``); ``"off"`` always uses gRPC.
    ``keep_frame_buffers``: on the first frame of 1 MiB or more that comes over gRPC, raise glibc's
    mmap and trim thresholds for the whole process (``worker/camera/heap.py``), so that each
    received frame reuses heap memory instead of faulting in fresh pages (a fifth of a 1080p
    client's CPU). False leaves the process's allocator alone.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str | None = None, timeout: float = 5.0,
                 tls: bool = False, root_certificates: bytes | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, writable: bool = True,
                 shm_dir: str | None = None, keep_frame_buffers: bool = True):
        self.address = address
        self._keep_frame_buffers = keep_frame_buffers
        self.timeout = timeout
        self.writable = writable
        self._metadata = (("authorization", f"Token {token}"),) if token else ()
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls or root_certificates:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = pb_grpc.ImageStub(self._channel)
        # VideoLatestImage with the reply as received (bytes): ``latest`` takes the pixels from
        # them without protobuf copying them (see ``split_frame``).
        self._latest_raw = self._channel.unary_unary(
            LATEST_METHOD, request_serializer=pb.VideoFrameRequest.SerializeToString, response_deserializer=None)
        shm_dir = shm_dir or os.environ.get("EDGEPROXY_FRAMES_SHM_DIR", "").strip() or DEFAULT_SHM_DIR
        self.shm_dir = None if shm_dir.lower() in ("off", "none", "0") else shm_dir
        self._local: dict[tuple[str, bool], _Local] = {}
        self._local_lock = threading.Lock()
        self._refresher: threading.Thread | None = None
        self._closed = threading.Event()

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        self._closed.set()
        self._channel.close()

    def __enter__(self) -> FrameClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    # --- frames -------------------------------------------------------------------------------

    def latest_frame(self, name: str, keyframe_only: bool = False, after: dict | None = None,
                     timeout: float | None = None) -> tuple[pb.VideoFrame, int | None]:
        """The raw ``VideoFrame`` message and its seq. ``after``: metadata of a frame already seen;
        waits (up to about 2 s) for a newer one."""
        raw, seq = self._latest_bytes(name, keyframe_only, after, timeout)
        return pb.VideoFrame.FromString(raw), seq

    def _latest_bytes(self, name: str, keyframe_only: bool, after: dict | None,
                      timeout: float | None) -> tuple[bytes, int | None]:
        """``VideoLatestImage``: the serialized ``VideoFrame`` and its seq."""
        metadata = self._metadata
        if after is not None:
            seq = -1 if after.get("seq") is None else int(after["seq"])
            metadata = metadata + ((AFTER_METADATA, f"{int(after['timestamp'])}:{seq}"),)
        request = pb.VideoFrameRequest(device_id=name, key_frame_only=keyframe_only)
        try:
            raw, call = self._latest_raw.with_call(request, timeout=self._timeout(timeout), metadata=metadata)
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None
        if self._keep_frame_buffers and len(raw) >= LARGE_REPLY_BYTES:
            _keep_frame_buffers_once()
        seq = None
        for key, value in call.initial_metadata() or ():
            if key == SEQ_METADATA and value:
                with contextlib.suppress(ValueError):
                    seq = int(value)
        return raw, seq

    def latest(self, name: str, keyframe_only: bool = False, timeout: float | None = None,
               after: dict | None = None) -> tuple[np.ndarray, dict]:
        """The newest decoded frame of camera ``name``: (H x W x 3 uint8 BGR array, metadata dict).

        The first call after a pause can take up to about 2 s (the camera starts decoding on
        demand). ``after``: the metadata of a frame you already have: wait for a newer one."""
        return self._frame(name, keyframe_only, timeout, after, in_order=False)

    def _frame(self, name: str, keyframe_only: bool, timeout: float | None, after: dict | None,
               in_order: bool) -> tuple[np.ndarray, dict]:
        """``latest`` (``in_order`` False) or the frame right after ``after`` while the ring still
        holds it (``frames``)."""
        local = self._local_ring(name, keyframe_only, timeout)
        if local is not None:
            found = self._latest_local(local, name, keyframe_only, after, timeout, in_order)
            if found is not None:
                return found
        raw, seq = self._latest_bytes(name, keyframe_only, after, timeout)
        try:
            frame, offset, size = split_frame(raw)
        except (ValueError, DecodeError) as exc:
            raise FrameError(f"malformed VideoFrame from the frame server: {exc}") from None
        meta = frame_metadata(frame, seq)
        meta["via"] = "grpc"
        return _pixels(raw, offset, size, frame, self.writable), meta

    def intact(self, meta: dict) -> bool:
        """Is the frame of ``meta`` still what its array shows? Always True for copies; for a
        read-only view of a shared-memory slot (``writable=False``), False once the camera wrote
        a newer frame into that slot (``slots`` frames later)."""
        ring = meta.get("_ring")
        return ring is None or ring.intact(meta)

    # --- shared memory ------------------------------------------------------------------------

    def _ask_server(self, name: str, keyframe_only: bool, timeout: float | None):
        """Demand-only call: raises the camera's error; returns the mapped ring or None (gRPC)."""
        request = pb.VideoFrameRequest(device_id=name, key_frame_only=keyframe_only)
        try:
            _frame, call = self._stub.VideoLatestImage.with_call(
                request, timeout=self._timeout(timeout), metadata=self._metadata + ((DEMAND_METADATA, "1"),))
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None
        ring = ""
        for key, value in call.initial_metadata() or ():
            if key == RING_METADATA:
                ring = value
        file_name, _, ring_id = ring.rpartition(":")
        if not file_name or "/" in file_name or file_name.startswith("."):
            return None  # an older server, or a camera without a ring: gRPC
        try:
            from worker.camera.shm import FrameRingReader, RingError

            reader = FrameRingReader(os.path.join(self.shm_dir, file_name))
        except (ImportError, OSError, ValueError):  # not this host, not mapped into this container, no access
            return None
        except RingError:
            return None
        # Another ring id is fine while that ring is alive: the camera replaced its file (new frame
        # size) since its last status.
        if str(reader.ring_id) != ring_id and (
                reader.closed or time.time_ns() // 1_000_000 - reader.heartbeat_ms > HEARTBEAT_STALE_MS):
            reader.close()
            return None
        return reader

    def _local_ring(self, name: str, keyframe_only: bool, timeout: float | None):
        """The camera's mapped ring (None: use gRPC); asks the frame server when it must.

        The server is asked (on the caller's path) when the ring says its camera stopped
        streaming, closed it or stopped writing its heartbeat: it then answers as it would over
        gRPC, or names the camera's new ring. A reader that can write the ring's demand file
        stores its demand there about once a second and asks nothing else; other readers keep
        the camera's demand by asking the server every ``LOCAL_REFRESH_S``, off the caller's path
        (``_refresh_loop``)."""
        if self.shm_dir is None:
            return None
        key = (name, keyframe_only)
        now = time.monotonic()
        entry = self._local.get(key)
        if entry is not None:
            reader = entry.reader
            if reader is None:  # gRPC (refreshed by _refresh_loop)
                if now - entry.checked < LOCAL_REFRESH_S * 3:
                    entry.used = now
                    if entry.error is not None:
                        raise entry.error
                    return None
            elif reader.alive(time.time_ns() // 1_000_000, HEARTBEAT_STALE_MS):
                entry.used = now
                if entry.demand is not None:
                    if now - entry.demand_at >= LOCAL_DEMAND_S:
                        entry.demand_at = now
                        entry.demand.want(keyframe_only, time.time_ns() // 1_000_000 + DEMAND_TTL_MS)
                    return reader
                if now - entry.checked < LOCAL_REFRESH_S * 3:
                    if entry.error is not None:
                        raise entry.error
                    return reader
            elif entry.error is not None and now - entry.checked < LOCAL_RETRY_S:
                raise entry.error  # a caller retrying at once does not make a call each time
        try:
            reader = self._ask_server(name, keyframe_only, timeout)  # raises NOT_FOUND, UNAVAILABLE...
        except FrameError as exc:
            if entry is not None and entry.reader is not None:
                entry.error, entry.checked = exc, now
            raise
        demand = None
        if reader is not None:
            try:
                from worker.camera.shm import ReaderDemand

                demand = ReaderDemand(reader.path)
                demand.want(keyframe_only, time.time_ns() // 1_000_000 + DEMAND_TTL_MS)
            except OSError:  # not in the group, a read-only mount: demand through the server
                demand = None
        with self._local_lock:
            old = self._local.get(key)
            if old is not None and old.reader is not None and old.reader is not reader:
                old.reader.close()
            if old is not None and old.demand is not None:
                old.demand.close()
            self._local[key] = _Local(reader, now, demand)
            if self._refresher is None and demand is None:
                self._refresher = threading.Thread(target=self._refresh_loop, name="frameclient-refresh",
                                                   daemon=True)
                self._refresher.start()
        return reader

    def _refresh_loop(self) -> None:
        """Keeps demand set and notices stopped or replaced cameras, off the caller's path."""
        while not self._closed.wait(LOCAL_REFRESH_S):
            now = time.monotonic()
            with self._local_lock:
                items = list(self._local.items())
            for key, entry in items:
                if entry.demand is not None:
                    continue  # its demand and checks ride on its reads (``_local_ring``)
                if now - entry.used > LOCAL_IDLE_S:
                    with self._local_lock:
                        if self._local.get(key) is entry:
                            del self._local[key]
                    if entry.reader is not None:
                        entry.reader.close()
                    continue
                try:
                    reader = self._ask_server(key[0], key[1], None)
                    error = None
                except FrameError as exc:
                    reader, error = entry.reader, exc
                except Exception:  # noqa: BLE001 - the channel was closed
                    return
                with self._local_lock:
                    if self._local.get(key) is not entry:
                        if reader is not None and reader is not entry.reader:
                            reader.close()
                        continue
                    old = entry.reader
                    if reader is not old and reader is not None and old is not None and \
                            reader.ring_id == old.ring_id:
                        reader.close()
                        reader = old
                    elif old is not None and reader is not old:
                        old.close()  # views handed out keep their memory until they go
                    entry.reader = reader
                    entry.error = error
                    entry.checked = time.monotonic()

    def _latest_local(self, reader, name: str, keyframe_only: bool, after: dict | None,
                      timeout: float | None, in_order: bool = False):
        """The newest frame from the ring newer than ``after`` (``in_order``: the one right after
        ``after`` while its slot still holds it); None when the ring went away (ask gRPC)."""
        limit = self._timeout(timeout)
        wait_s = WAIT_S if limit is None else min(WAIT_S, limit)
        deadline = time.monotonic() + wait_s
        after_key = None
        known_seq = 0  # the newest seq of this ring known not to answer the call: wait for a newer one
        if after is not None:
            after_key = (int(after.get("timestamp") or 0), -1 if after.get("seq") is None else int(after["seq"]))
            if after.get("_ring_id") == reader.ring_id:  # the caller's last frame came from this ring
                known_seq = after_key[1]
        while True:
            if reader.closed:
                with self._local_lock:
                    entry = self._local.get((name, keyframe_only))
                    if entry is not None and entry.reader is reader:
                        del self._local[(name, keyframe_only)]
                return None
            seq = reader.newest_seq(keyframe_only)
            if in_order and known_seq and seq > known_seq + 1 and not keyframe_only:
                # The caller fell behind: the frames it missed, in order, while the ring holds them.
                found = reader.read(False, copy=self.writable, seq=known_seq + 1)
                if found is not None:
                    return found[0], self._local_meta(name, found[1], reader)
            if seq and seq != known_seq:  # (reading the frame the caller already has would be wasted)
                found = reader.read(keyframe_only, copy=self.writable)
                if found is not None:
                    image, ring_meta = found
                    ts = ring_meta["ts"]
                    if after_key is not None:
                        ok = ts > after_key[0] or (ts == after_key[0] and ring_meta["seq"] != after_key[1])
                    else:
                        ok = keyframe_only or (time.time_ns() // 1_000_000) - ts <= MAX_AGE_MS
                    if ok:
                        return image, self._local_meta(name, ring_meta, reader)
                    seq = ring_meta["seq"]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # (the heartbeat is checked only after a wait that brought no frame: not per frame)
            if not reader.wait(seq, min(remaining, 0.25), keyframe_only) and \
                    time.time_ns() // 1_000_000 - reader.heartbeat_ms > HEARTBEAT_STALE_MS:
                raise CameraUnavailable(f"camera {name!r} is not streaming (its camera process stopped "
                                        "writing frames) (UNAVAILABLE)", grpc.StatusCode.UNAVAILABLE)
        what = "newer frame" if after is not None else ("keyframe" if keyframe_only else "frame")
        message = f"camera {name!r}: no {what} within {wait_s * 1000:.0f} ms (decoding starts on demand; retry)"
        raise CameraUnavailable(f"{message} (UNAVAILABLE)", grpc.StatusCode.UNAVAILABLE, message)

    def _local_meta(self, name: str, meta: dict, reader) -> dict:
        """The ring's meta (a fresh dict per read) made the client's, in place: a reader pays this per frame."""
        meta["timestamp"] = meta.pop("ts")
        del meta["data_format"]
        meta["device_id"] = name
        meta["via"] = "shm"
        meta["_ring"] = None if self.writable else reader
        meta["_ring_id"] = reader.ring_id  # with seq: which frame of which ring (a new camera process, a new ring)
        return meta

    def frames(self, name: str, keyframe_only: bool = False, limit: int | None = None
               ) -> Iterator[tuple[np.ndarray, dict]]:
        """Each new frame of a camera once, in order, as it is decoded. From a shared-memory ring a
        consumer that falls behind gets the frames it missed while the ring still holds them (up to
        ``slots - 1`` frames behind), then skips to the newest; through gRPC it always gets the
        newest. Raises ``CameraUnavailable`` when no new frame comes for ~2 s."""
        last = None
        count = 0
        while limit is None or count < limit:
            image, meta = self._frame(name, keyframe_only, None, last, in_order=True)
            last = meta
            count += 1
            yield image, meta
            entry = self._local.get((name, keyframe_only)) if meta["via"] == "shm" and not keyframe_only else None
            if entry is None or entry.demand is None or entry.reader is None or \
                    entry.reader.ring_id != meta["_ring_id"]:
                continue
            # Frame after frame straight from the ring while it serves them: a reader's cost per
            # frame is its wake-up and the code it runs then, so only ``next_frame`` and the meta.
            # Anything else (no frame within a wait slice, the ring closed or replaced, a stopped
            # camera) goes through ``_frame`` again, which knows every case.
            reader, demand, copy = entry.reader, entry.demand, self.writable
            seq, demand_next = meta["seq"], 0
            while limit is None or count < limit:
                found = reader.next_frame(seq, WAIT_SLICE_S, copy)
                if found is None:
                    break
                image, meta = found
                meta = self._local_meta(name, meta, reader)
                if meta["timestamp"] >= demand_next:  # the frame's clock: no clock read per frame
                    if self._local.get((name, keyframe_only)) is not entry:
                        break  # replaced meanwhile (another thread found a new ring): ask again
                    demand.want(False, meta["timestamp"] + DEMAND_TTL_MS)
                    demand_next = meta["timestamp"] + int(LOCAL_DEMAND_S * 1000)
                seq = meta["seq"]
                last = meta
                count += 1
                yield image, meta

    def buffered(self, name: str, start_ms: int, end_ms: int, timeout: float | None = None
                 ) -> Iterator[tuple[np.ndarray, dict]]:
        """Decoded frames of the camera's buffer with receive time in [start_ms, end_ms], in order.

        ``end_ms`` = 0 means up to now. ``timeout`` bounds the whole range (default: 30 s plus
        ``timeout`` of the client per buffered second)."""
        if timeout is None:
            span_s = max(0.0, (end_ms - start_ms) / 1000.0) if end_ms else 60.0
            timeout = 30.0 + self.timeout * span_s
        request = pb.VideoFrameBufferedRequest(device_id=name, timestamp_from=start_ms, timestamp_to=end_ms)
        stream = self._stub.VideoBufferedImage(request, timeout=timeout, metadata=self._metadata)
        try:
            for frame in stream:
                yield frame_array(frame, self.writable), frame_metadata(frame)
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None
        finally:
            stream.cancel()

    # --- everything else --------------------------------------------------------------------

    def _call(self, method, request, timeout: float | None = None):
        try:
            return method(request, timeout=self._timeout(timeout), metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None

    def probe(self, name: str) -> dict:
        """Codec facts and buffer span of a camera."""
        reply = self._call(self._stub.VideoProbe, pb.VideoProbeRequest(device_id=name))
        codec = reply.video_codec
        result = {
            "codec": {"name": codec.name, "long_name": codec.long_name, "width": codec.width,
                      "height": codec.height, "pix_fmt": codec.pix_fmt, "extradata": codec.extradata,
                      "extradata_size": codec.extradata_size},
            "buffer": None,
        }
        if reply.HasField("buffer"):
            b = reply.buffer
            result["buffer"] = {"start_time": b.start_time, "end_time": b.end_time,
                                "duration_seconds": b.duration_seconds, "approximate_fps": b.approximate_fps,
                                "frames": b.frames}
        return result

    def list(self) -> list[dict]:
        """The cameras of this edge host with their container state."""
        try:
            stream = self._stub.ListStreams(pb.ListStreamRequest(), timeout=self.timeout, metadata=self._metadata)
            return [
                {"name": s.name, "status": s.status, "running": s.running, "paused": s.paused,
                 "restarting": s.restarting, "dead": s.dead, "oomkilled": s.oomkilled, "exit_code": s.exit_code,
                 "pid": s.pid, "error": s.error, "health_status": s.health_status,
                 "failing_streak": s.failing_streak}
                for s in stream
            ]
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None

    def proxy(self, name: str, on: bool) -> bool:
        """Switch RTMP pass-through of a camera on or off (the camera needs an RTMP endpoint)."""
        return self._call(self._stub.Proxy, pb.ProxyRequest(device_id=name, passthrough=bool(on))).passthrough

    def storage(self, name: str, on: bool) -> bool:
        """Set the storing flag of a camera."""
        return self._call(self._stub.Storage, pb.StorageRequest(device_id=name, start=bool(on))).start

    def annotate(self, device_name: str, type: str, start_timestamp: int, **fields) -> dict:  # noqa: A002
        """Record an event (fields of ``AnnotateRequest``; sub-messages as dicts)."""
        request = pb.AnnotateRequest(device_name=device_name, type=type, start_timestamp=start_timestamp, **fields)
        reply = self._call(self._stub.Annotate, request)
        return {"device_name": reply.device_name, "remote_stream_id": reply.remote_stream_id, "type": reply.type,
                "start_timestamp": reply.start_timestamp}

    def system_time(self) -> int:
        """The edge host's clock, ms since epoch."""
        return self._call(self._stub.SystemTime, pb.SystemTimeRequest()).current_time


# --- JPEG snapshot (used by the control plane's GET /api/v1/process/{name}/frame.jpg) -----------

_clients: dict[tuple, FrameClient] = {}
_clients_lock = threading.Lock()


def _shared_client(address: str, token: str | None, tls: bool, root_certificates: bytes | None) -> FrameClient:
    key = (address, token, tls, root_certificates)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            if len(_clients) >= 64:  # many hosts: drop the oldest channel
                _clients.pop(next(iter(_clients))).close()
            client = _clients[key] = FrameClient(address, token=token, tls=tls, root_certificates=root_certificates,
                                                 writable=False)
        return client


def latest_jpeg(address: str, name: str, keyframe_only: bool = False, quality: int = 80, timeout: float = 5.0,
                token: str | None = None, tls: bool = False, root_certificates: bytes | None = None) -> bytes:
    """The newest frame of camera ``name`` on the frame server at ``address``, as JPEG bytes.

    Raises ``CameraNotFound`` (-> HTTP 404), ``CameraUnavailable`` (-> 503; ``ServerUnavailable``
    when the edge host's frame server is unreachable), ``FrameTimeout`` (-> 504), other ``FrameError``.
    Channels are cached per address, so calling this per request is cheap.
    """
    import cv2

    client = _shared_client(address, token, tls, root_certificates)
    image, _meta = client.latest(name, keyframe_only=keyframe_only, timeout=timeout)
    ok, encoded = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), max(1, min(100, int(quality)))])
    if not ok:
        raise FrameError(f"cannot encode the frame of camera {name!r} as JPEG")
    return encoded.tobytes()


# --- recorded footage (worker/frames/recordings.py) ----------------------------------------------

RECORDINGS_SERVICE = "/edgeproxy.recordings.v1.Recordings/"


def _identity(data: bytes) -> bytes:
    return data


def recordings_call(address: str, method: str, request: dict, timeout: float = 10.0, token: str | None = None,
                    tls: bool = False, root_certificates: bytes | None = None):
    """Call ``method`` of the recordings service of the edge host at ``address``: ``List`` answers a
    dict, ``Segment`` and ``Clip`` an iterator of MP4 chunks. Errors as ``latest_jpeg``'s (``CameraNotFound``
    is "no such footage"); an error of a chunk stream is raised when its first chunk is taken."""
    import json

    client = _shared_client(address, token, tls, root_certificates)
    payload = json.dumps(request).encode()
    if method == "List":
        call = client._channel.unary_unary(RECORDINGS_SERVICE + method, request_serializer=_identity,
                                           response_deserializer=_identity)
        try:
            return json.loads(call(payload, timeout=timeout, metadata=client._metadata))
        except grpc.RpcError as exc:
            raise _error(exc, address) from None
    stream = client._channel.unary_stream(RECORDINGS_SERVICE + method, request_serializer=_identity,
                                          response_deserializer=_identity)
    responses = stream(payload, timeout=timeout, metadata=client._metadata)

    def chunks() -> Iterator[bytes]:
        try:
            yield from responses
        except grpc.RpcError as exc:
            raise _error(exc, address) from None

    return chunks()
