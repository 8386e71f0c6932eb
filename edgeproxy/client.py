"""Python client of the edgeproxy frame API (gRPC, port 50001 of an edge host) for AI programs.

    from edgeproxy.client import FrameClient

    with FrameClient("127.0.0.1:50001") as frames:
        image, meta = frames.latest("front-door")      # numpy uint8 array, H x W x 3, BGR
        print(image.shape, meta["timestamp"])

    for image, meta in frames.frames("front-door"):   # every new frame once, newest first
        ...

Imports neither Django nor anything of the control plane: only grpcio, protobuf, numpy (and
OpenCV for ``latest_jpeg``). Errors are ``FrameError`` subclasses: ``CameraNotFound``,
``CameraUnavailable`` (camera not streaming, no frame yet; ``ServerUnavailable`` when the frame
server itself cannot be reached), ``InvalidRequest``, ``NotAuthorized``, ``FrameTimeout``.
"""

from __future__ import annotations

import threading
from typing import Iterator

import grpc
import numpy as np

from worker.frames.proto import video_streaming_pb2 as pb
from worker.frames.proto import video_streaming_pb2_grpc as pb_grpc

DEFAULT_ADDRESS = "127.0.0.1:50001"
DEFAULT_MAX_MESSAGE_BYTES = 128 * 1024 * 1024  # a 1080p BGR frame is 6.2 MB, 4K 25 MB
AFTER_METADATA = "x-edgeproxy-after"
SEQ_METADATA = "x-edgeproxy-seq"

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
    height, width = int(frame.height), int(frame.width)
    if not width or not height or len(frame.data) != height * width * 3:
        raise FrameError(f"frame of {len(frame.data)} bytes does not match {width}x{height} BGR24")
    buffer = bytearray(frame.data) if writable else frame.data
    return np.frombuffer(buffer, dtype=np.uint8).reshape(height, width, 3)


class FrameClient:
    """A connection to the frame server of one edge host. Thread-safe; reuse one per program.

    ``token``: API key when the server requires one (``EDGEPROXY_GRPC_TOKENS``).
    ``tls``: use TLS; ``root_certificates`` (PEM bytes) to trust a private CA / self-signed cert.
    ``timeout``: seconds per call (a buffered range gets ``timeout`` per frame gap, see ``buffered``).
    ``writable``: return writable arrays (one copy per frame); False returns read-only views.
    """

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str | None = None, timeout: float = 5.0,
                 tls: bool = False, root_certificates: bytes | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, writable: bool = True):
        self.address = address
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

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "FrameClient":
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
        metadata = self._metadata
        if after is not None:
            seq = -1 if after.get("seq") is None else int(after["seq"])
            metadata = metadata + ((AFTER_METADATA, f"{int(after['timestamp'])}:{seq}"),)
        request = pb.VideoFrameRequest(device_id=name, key_frame_only=keyframe_only)
        try:
            frame, call = self._stub.VideoLatestImage.with_call(
                request, timeout=self._timeout(timeout), metadata=metadata)
        except grpc.RpcError as exc:
            raise _error(exc, self.address) from None
        seq = None
        for key, value in call.initial_metadata() or ():
            if key == SEQ_METADATA and value:
                try:
                    seq = int(value)
                except ValueError:
                    pass
        return frame, seq

    def latest(self, name: str, keyframe_only: bool = False, timeout: float | None = None,
               after: dict | None = None) -> tuple[np.ndarray, dict]:
        """The newest decoded frame of camera ``name``: (H x W x 3 uint8 BGR array, metadata dict).

        The first call after a pause can take up to about 2 s (the camera starts decoding on
        demand). ``after``: the metadata of a frame you already have: wait for a newer one."""
        frame, seq = self.latest_frame(name, keyframe_only, after=after, timeout=timeout)
        return frame_array(frame, self.writable), frame_metadata(frame, seq)

    def frames(self, name: str, keyframe_only: bool = False, limit: int | None = None
               ) -> Iterator[tuple[np.ndarray, dict]]:
        """Each new frame of a camera once, as it is decoded (a slow consumer skips frames: it
        always gets the newest). Raises ``CameraUnavailable`` when no new frame comes for ~2 s."""
        last = None
        count = 0
        while limit is None or count < limit:
            image, meta = self.latest(name, keyframe_only, after=last)
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
