"""RTMP pass-through: the camera's video packets remuxed into FLV, never re-encoded.

Runs in its own thread so that a slow, unreachable or failing RTMP server never stalls ingest: the
ingest thread only appends packets to a bounded queue (``feed``) while forwarding is wanted and a
session is up; this thread connects, waits for a keyframe, rebases timestamps to start at 0 and
muxes. Any RTMP failure is logged, the connection closed, and retried with back-off. Switching it
off (the ``rtmp`` key set to ``0``) closes the connection; switching it on starts at the next
keyframe. A new RTSP session (reconnect) starts a new RTMP connection.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
import time
from urllib.parse import urlsplit

import av

from worker.camera.backoff import Backoff
from worker.camera.config import RTMP_SCHEMES
from worker.camera.errors import describe, mask_rtmp
from worker.camera.state import CameraState

log = logging.getLogger("camera.rtmp")

QUEUE_PACKETS = 500  # ~20 s at 25 fps; beyond that packets are dropped and we resync at a keyframe
STREAMING_GRACE_S = 2.0


def open_rtmp_output(url: str, timeout: float):
    """The FLV muxer on an ``rtmp://`` or ``rtmps://`` URL, and nothing else: never a file or
    another protocol. (FFmpeg's ``protocol_whitelist`` cannot reach an output that PyAV opens, with
    ``avio_open`` and no options, so the scheme is checked here, right before the open.)"""
    scheme = urlsplit(url).scheme
    if scheme not in RTMP_SCHEMES:
        raise ValueError(f"the RTMP target must be an rtmp:// or rtmps:// URL, not {scheme or 'no scheme'}")
    return av.open(url, "w", format="flv", timeout=(timeout, timeout))


class _Session:
    def __init__(self, number: int, holder, template, time_base, codec: str):
        self.has_extradata = bool(template.codec_context.extradata)
        self.number = number
        self.holder = holder  # keeps the template's codec parameters alive
        self.template = template
        self.time_base = time_base
        self.codec = codec


class RtmpForwarder:
    def __init__(self, url: str | None, state: CameraState, stop: threading.Event,
                 open_timeout: float = 5.0, backoff_initial: float = 1.0, backoff_max: float = 30.0):
        self.url = url
        self.masked = mask_rtmp(url)
        self.state = state
        self.stop = stop
        self.open_timeout = open_timeout
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_PACKETS)
        self.feeding = False  # read by the ingest thread for every packet
        self.wanted = bool(url)
        self._session: _Session | None = None
        self._numbers = 0
        self._wake = threading.Event()
        self._overflow = False
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._last_mux = 0.0
        self._open = False
        self.thread: threading.Thread | None = None
        self._warned_no_url = False

    # -------------------------------------------------------------- control (any thread)
    def start(self) -> None:
        if self.url:
            self.thread = threading.Thread(target=self._run, name="rtmp", daemon=True)
            self.thread.start()

    def set_wanted(self, wanted: bool) -> None:
        if wanted and not self.url:
            if not self._warned_no_url:
                self._warned_no_url = True
                log.warning("rtmp pass-through requested but no EDGEPROXY_RTMP_URL is configured")
            wanted = False
        if wanted != self.wanted:
            self.wanted = wanted
            log.info("rtmp pass-through switched %s", "on" if wanted else "off")
            self._update_feeding()
            self._wake.set()
        self.state.rtmp_wanted = self.wanted

    def streaming(self) -> bool:
        """Truthful: connected and a packet went out within the last couple of seconds."""
        return self._open and time.monotonic() - self._last_mux < STREAMING_GRACE_S

    # -------------------------------------------------------------- ingest thread
    def new_session(self, in_stream) -> None:
        if not self.url:
            return
        try:
            # Snapshot the codec parameters now, in the ingest thread, so the RTMP thread never
            # touches the live input stream.
            holder = av.open(io.BytesIO(), "w", format="flv")
            template = holder.add_stream_from_template(in_stream, opaque=True)
        except Exception as exc:  # noqa: BLE001
            self._session = None
            self.state.rtmp_error = f"cannot pass {in_stream.codec_context.name} through FLV: {describe(exc)}"
            log.warning("rtmp: %s", self.state.rtmp_error)
            return
        self._numbers += 1
        self._session = _Session(self._numbers, holder, template, in_stream.time_base,
                                 in_stream.codec_context.name)
        self._update_feeding()
        self._wake.set()

    def end_session(self) -> None:
        self._session = None
        self._update_feeding()
        self._wake.set()

    def feed(self, data: bytes, pts: int, dts: int, is_key: bool, duration: int) -> None:
        session = self._session
        if session is None:
            return
        try:
            self.queue.put_nowait((session.number, data, pts, dts, is_key, duration))
        except queue.Full:
            self._overflow = True

    def _update_feeding(self) -> None:
        self.feeding = bool(self.url and self.wanted and self._session is not None)

    # -------------------------------------------------------------- RTMP thread
    def _drain(self) -> None:
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass

    def _run(self) -> None:
        url = self.url
        assert url, "the forwarder runs only with a URL (start)"
        out = None
        out_stream = None
        session_number = None
        need_key = True
        offset = 0
        last_dts = None
        next_try = 0.0
        opened_at = 0.0
        try:
            while not self.stop.is_set():
                session = self._session
                if not (self.wanted and session is not None):
                    if out is not None:
                        self._close(out, "switched off" if not self.wanted else "camera disconnected")
                        out = None
                    self._drain()
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                if out is not None and session_number != session.number:
                    self._close(out, "new camera session")
                    out = None
                if out is None:
                    wait = next_try - time.monotonic()
                    if wait > 0:
                        self._drain()
                        self._wake.wait(min(wait, 0.5))
                        self._wake.clear()
                        continue
                    try:
                        out = open_rtmp_output(url, self.open_timeout)
                        out_stream = out.add_stream_from_template(session.template, opaque=True)
                        if session.has_extradata:
                            # Connect and send the header now (otherwise the first packet does it).
                            # Without out-of-band parameter sets, PyAV takes them from the first
                            # keyframe before writing the header, so that waits for the first mux.
                            out.start_encoding()
                    except Exception as exc:  # noqa: BLE001
                        if out is not None:
                            with contextlib.suppress(Exception):
                                out.close()
                        out = None
                        delay = self._backoff.next_delay()
                        next_try = time.monotonic() + delay
                        self.state.rtmp_error = describe(exc)
                        log.warning("rtmp: cannot connect to %s (%s); retrying in %.1fs",
                                    self.masked, self.state.rtmp_error, delay)
                        continue
                    session_number = session.number
                    need_key = True
                    last_dts = None
                    self._overflow = False
                    opened_at = time.monotonic()
                    self._open = True
                    log.info("rtmp: connected to %s (%s, no re-encoding)", self.masked, session.codec)
                try:
                    item = self.queue.get(timeout=0.25)
                except queue.Empty:
                    continue
                number, data, pts, dts, is_key, duration = item
                if number != session_number:
                    continue
                if self._overflow:  # we fell behind and lost packets: resync at a keyframe
                    self._overflow = False
                    need_key = True
                if need_key:
                    if not is_key:
                        continue
                    need_key = False
                    if last_dts is None:
                        offset = dts
                if last_dts is not None and dts < last_dts:
                    continue  # the muxer rejects time going backwards
                packet = av.Packet(data)
                packet.pts = max(0, pts - offset)
                packet.dts = max(0, dts - offset)
                packet.duration = duration
                packet.time_base = session.time_base
                packet.is_keyframe = is_key
                assert out_stream is not None  # opened with out
                packet.stream = out_stream
                try:
                    out.mux(packet)
                except Exception as exc:  # noqa: BLE001
                    delay = self._backoff.next_delay()
                    next_try = time.monotonic() + delay
                    self.state.rtmp_error = describe(exc)
                    log.warning("rtmp: sending to %s failed (%s); reconnecting in %.1fs",
                                self.masked, self.state.rtmp_error, delay)
                    self._close(out, None)
                    out = None
                    continue
                last_dts = dts
                self._last_mux = time.monotonic()
                if self._last_mux - opened_at > 10.0:
                    self._backoff.reset()
                    self.state.rtmp_error = None
        finally:
            if out is not None:
                self._close(out, "stopping")

    def _close(self, out, reason: str | None) -> None:
        self._open = False
        with contextlib.suppress(Exception):  # a broken connection cannot be closed cleanly
            out.close()
        if reason:
            log.info("rtmp: disconnected from %s (%s)", self.masked, reason)
