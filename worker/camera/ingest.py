"""RTSP ingest: one thread that owns the camera connection and everything done per packet.

Per packet (the hot path): fix missing timestamps, count it, queue it on the ring (``FastPipe``,
sent in batches every ``ring_flush_s``), keep it in the current GOP, hand it to the RTMP forwarder
if that is on, and decode it only if a consumer wants frames. The demand keys ride on the same
pipeline (every ``demand_poll_s`` where frames go through Redis; with each ring batch where they
go to a shared-memory ring, whose demand file local readers and the frame server write and which
is checked on every packet) and replies are collected as they arrive, so the hot path never waits
for a Redis round trip.

Decoding on demand:
* ``demand:all``  -> every packet is decoded and the newest frame published to ``frame:latest``
  (keyframes also to ``frame:keyframe``). When decoding starts mid-GOP the decoder is fed the
  kept GOP first (from its keyframe), so the first published frame is already correct.
* only ``demand:key`` -> only keyframes are decoded (decoder flushed each time) and published to
  both frame keys.
* neither -> nothing is decoded.

Reconnects: any failure or end of stream ends the session; the loop waits (capped exponential
back-off with jitter, cut short when the camera's port comes back after being closed) and opens
again, forever, in this same thread. Only ``stop`` ends it.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import logging
import os
import socket
import stat
import threading
import time
from typing import Any

import av
import av.error
import numpy as np
import redis
from av.video.codeccontext import VideoCodecContext
from av.video.reformatter import VideoReformatter

from worker.camera import keys
from worker.camera.backoff import Backoff, tcp_reachable
from worker.camera.config import RTSP_PROTOCOL_WHITELIST
from worker.camera.errors import Disconnected, StreamError, describe, needs_fix
from worker.camera.frame_format import BGR24, I420, I420_SOURCES
from worker.camera.ring import RingWriter, frame_type, to_bgr24
from worker.camera.state import DEMAND_ALL, DEMAND_KEY, DEMAND_NONE, CameraState
from worker.camera.swscale import SlotConverter
from worker.camera.wire import FastPipe
from worker.redaction import mask_url

log = logging.getLogger("camera.ingest")

# A session that streamed this long resets the back-off.
HEALTHY_SESSION_S = 5.0
# Packets kept from the last keyframe for a mid-GOP decode start (beyond that: wait for a keyframe).
GOP_CAP = 1500
# Re-write the codec key this often (heals a restarted Redis).
CODEC_REFRESH_S = 5.0
# After a frame-bus failure, skip Redis writes for this long before trying again.
BUS_RETRY_S = 1.0
PROBE_INTERVAL_S = 0.4
# Readers store now + keys.DEMAND_TTL_MS in the demand file; anything further ahead is ignored.
DEMAND_HORIZON_MS = 4 * keys.DEMAND_TTL_MS

_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def codec_info(stream) -> dict:
    ctx = stream.codec_context
    time_base = stream.time_base
    extradata = ctx.extradata or b""
    rate = stream.average_rate or stream.guessed_rate
    return {
        "name": ctx.name,
        "long_name": ctx.codec.long_name,
        "width": ctx.width,
        "height": ctx.height,
        "pix_fmt": ctx.pix_fmt,
        "extradata": base64.b64encode(extradata).decode("ascii"),
        "extradata_size": len(extradata),
        "time_base": float(time_base) if time_base else 1 / 90000,
        "time_base_num": time_base.numerator if time_base else 1,
        "time_base_den": time_base.denominator if time_base else 90000,
        "fps": float(rate) if rate else None,
        "profile": ctx.profile,
    }


def _wanted(until_ms: int, now_ms: int) -> bool:
    """A demand-file word still in force (a word far in the future is a broken writer's: ignored)."""
    return now_ms <= until_ms <= now_ms + DEMAND_HORIZON_MS


def _wanted_changes_at(until_ms: int, now_ms: int) -> float:
    """The first wall ms after ``now_ms`` at which ``_wanted(until_ms, ...)`` changes (inf: never)."""
    if until_ms < now_ms:
        return float("inf")
    if until_ms <= now_ms + DEMAND_HORIZON_MS:
        return until_ms + 1
    return until_ms - DEMAND_HORIZON_MS


def _shut_down_connections(host: str, port: int) -> int:
    """Shut down this process's TCP connections to ``host:port`` (any host when ``host`` is a name:
    no name lookup here); a read blocked on one returns at once. Returns how many."""
    try:
        address = ipaddress.ip_address(host.strip("[]")).compressed
    except ValueError:
        address = None
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            with socket.socket(fileno=os.dup(fd)) as sock:  # shutdown acts on the connection itself
                if sock.type != socket.SOCK_STREAM:
                    continue
                peer = sock.getpeername()
                if peer[1] != port or (address is not None and ipaddress.ip_address(peer[0]).compressed != address):
                    continue
                sock.shutdown(socket.SHUT_RDWR)
                count += 1
        except (OSError, ValueError, IndexError, TypeError):  # closed meanwhile, not connected, not IP
            continue
    return count


def _same_codec(a: dict | None, b: dict | None) -> bool:
    if not a or not b:
        return False
    fields = ("name", "width", "height", "pix_fmt", "extradata", "time_base_num", "time_base_den")
    return all(a.get(f) == b.get(f) for f in fields)


class Ingest:
    def __init__(self, cfg, state: CameraState, client: redis.Redis, stop: threading.Event, rtmp=None,
                 shm_settings=None, recorder=None):
        self.cfg = cfg
        self.recorder = recorder  # worker.camera.recorder.Recorder, fed like the RTMP forwarder
        self.state = state
        self.client = client
        self.stop = stop
        self.rtmp = rtmp
        self.name = cfg.name
        self.masked_url = mask_url(cfg.rtsp_url)
        self.host, self.port = cfg.rtsp_host_port
        self.backoff = Backoff(cfg.backoff_initial, cfg.backoff_max)
        self.ring = RingWriter(cfg.name, cfg.buffer_seconds)
        self.k_latest = keys.frame_latest(cfg.name)
        self.k_keyframe = keys.frame_keyframe(cfg.name)
        self.k_codec = keys.codec(cfg.name)
        self.k_demand = (keys.demand_all(cfg.name), keys.demand_keyframes(cfg.name))
        self.frame_ttl_ms = keys.FRAME_TTL_S * 1000
        self.flush_s = getattr(cfg, "ring_flush_s", cfg.demand_poll_s)
        self.poll_s = cfg.demand_poll_s
        self.redis_demand = DEMAND_NONE  # what the demand keys said at the last poll
        self.shm_demand = DEMAND_NONE  # what the ring's demand file said at the last packet
        self.shm_words = (0, 0)  # the demand file's words behind shm_demand
        self.shm_recheck_at = 0.0  # wall ms when shm_demand may change with the same words
        self.awaiting_demand = False  # a demand poll was sent and its reply not applied yet
        self.pipe = FastPipe(cfg.redis_url, on_error=self._command_failed)
        self.bus_down_until = 0.0
        self.seq = 0  # published frames of this process
        self.reformatter = VideoReformatter()  # one swscale context for all frames (see ring.to_bgr24)
        self.slot_converter = SlotConverter()  # BGR24 straight into the shared-memory slot
        self.publish_i420 = getattr(cfg, "publish_format", "i420") == I420
        self._i420_buf: np.ndarray | None = None  # reused for decoders whose planes have padded rows
        self.container: Any = None  # the session's input (PyAV InputContainer), while one is open
        self.last_packet_at = 0.0  # monotonic time of the session's last packet (or its open)
        self.stalled = False  # the session was ended for want of packets (end_stalled_session)
        self.codec: dict | None = None
        self.codec_json: str | None = None
        self.last_codec_write = 0.0
        self._decode_error_logged = 0.0
        self._command_error_logged = 0.0
        self.frames_ring = self._open_frames_ring(shm_settings)
        # Frames go to Redis only where no shared-memory ring could be made, or when asked to.
        self.frames_to_redis = self.frames_ring is None or shm_settings.via_redis
        if self.frames_ring is not None:  # demand comes through the ring's demand file: Redis keys are a fallback
            self.poll_s = max(self.poll_s, self.flush_s)
        state.ring_flush_ms = int(self.flush_s * 1000)
        self._reset_session()

    def _open_frames_ring(self, shm_settings):
        """The camera's shared-memory frame ring (``worker.camera.shm``), or None (Redis frames)."""
        if shm_settings is None or not shm_settings.enabled:
            return None
        from worker.camera.shm import FrameRingWriter

        try:
            ring = FrameRingWriter(shm_settings, self.name, getattr(self.cfg, "camera_id", ""))
        except OSError as exc:
            log.warning("no shared-memory frame ring in %s (%s); frames go through Redis",
                        shm_settings.directory, exc.strerror or type(exc).__name__)
            return None
        self.state.frames_ring = ring
        log.info("frames in shared memory: %s (%d slots)", ring.path, ring.slots)
        return ring

    # ------------------------------------------------------------------ session bookkeeping
    def _reset_session(self) -> None:
        self.cc: VideoCodecContext | None = None
        self.have_key = False
        self.gop: list = []
        self.gop_broken = True
        self.synced = False
        self.pts_ts: dict = {}
        self.next_pts = None
        self.last_dts = None
        self.default_duration = 0
        self.last_flush = 0.0
        self.last_poll = 0.0
        self.next_flush = 0.0  # send what is queued (ring batch, demand poll) from then on
        self.session_packets = 0

    # ------------------------------------------------------------------ thread body
    def run(self) -> None:
        """Connect, stream, reconnect; forever until ``stop``. Never raises."""
        first = True
        while not self.stop.is_set():
            try:
                self._attempt(first)
            except Exception:  # a bug in the bookkeeping must not end ingest either
                log.exception("unexpected error between connection attempts")
                self.stop.wait(1.0)
            first = False

    def _attempt(self, first: bool) -> None:
        """One session (open, stream until it fails or ends), then the wait before the next."""
        started = time.monotonic()
        problem: BaseException | None = None
        try:
            self._session()
        except Exception as exc:  # whatever happens, ingest goes on
            problem = exc
            if not isinstance(exc, (Disconnected, StreamError, av.error.FFmpegError, *_REDIS_ERRORS)):
                log.exception("unexpected error in the ingest loop (will reconnect)")
        finally:
            self._end_session()
        if self.stop.is_set():
            return
        lasted = time.monotonic() - started
        streamed = self.session_packets > 0
        if streamed and lasted >= HEALTHY_SESSION_S:
            self.backoff.reset()
        delay = self.backoff.next_delay()
        message = describe(problem) if problem is not None else "stream ended"
        if self.stalled:
            message = f"timed out (no video from the camera for {self.cfg.read_timeout:g}s)"
        fatalish = problem is not None and needs_fix(problem)
        self.state.set_state("error" if fatalish else "reconnecting", error=message)
        if streamed:
            log.warning("disconnected after %.1fs (%s); reconnecting in %.1fs", lasted, message, delay)
        elif first:
            log.warning("cannot open %s (%s); retrying in %.1fs", self.masked_url, message, delay)
        else:
            log.warning("reconnect failed (%s); retrying in %.1fs", message, delay)
        self._wait(delay, probe=not fatalish)
        if not self.stop.is_set():
            self.state.reconnects += 1

    def _wait(self, delay: float, probe: bool) -> None:
        """Sleep ``delay`` (interruptible by stop); return early once a closed camera port opens."""
        deadline = time.monotonic() + delay
        was_down = False
        while not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if probe and remaining > 0.05:
                up = tcp_reachable(self.host, self.port, timeout=min(0.5, remaining))
                if up and was_down:
                    log.info("camera port %s:%d is open again; reconnecting now", self.host, self.port)
                    return
                was_down = was_down or not up
                remaining = deadline - time.monotonic()
            self.stop.wait(max(0.0, min(PROBE_INTERVAL_S, remaining)))

    def _open(self):
        cfg = self.cfg
        options = {
            "rtsp_transport": cfg.transport,
            # Fast open: probe little (test-rig: 0.24 s to the first frame instead of 1.2 s).
            "analyzeduration": "100000",
            "probesize": "32768",
            # Socket I/O timeout (microseconds).
            "timeout": str(int(cfg.read_timeout * 1_000_000)),
            "protocol_whitelist": RTSP_PROTOCOL_WHITELIST,
        }
        # The RTSP demuxer, not one guessed from the URL: nothing else is ever read. PyAV's timeout
        # bounds the open only: as a read timeout its interrupt callback takes the GIL at every
        # FFmpeg I/O check (many per packet, ~8 % of a no-consumer camera's CPU). While streaming,
        # the socket timeout above applies, and ``end_stalled_session`` once no packet came for a while.
        return av.open(cfg.rtsp_url, format="rtsp", options=options, timeout=(cfg.open_timeout, None))

    def _session(self) -> None:
        self._reset_session()
        self.stalled = False
        opened_at = time.monotonic()
        container = self._open()
        self.last_packet_at = time.monotonic()
        self.container = container
        try:
            if not container.streams.video:
                raise StreamError("the stream has no video track")
            stream = container.streams.video[0]
            cc = stream.codec_context
            if cc.name not in ("h264", "hevc"):
                log.warning("video codec %s is not H.264/H.265; trying anyway", cc.name)
            threads = self.cfg.decode_threads
            cc.thread_count = threads
            if threads != 1:
                cc.thread_type = "AUTO"
            self.cc = cc
            self.time_base = stream.time_base
            self.time_base_f = float(stream.time_base) if stream.time_base else 1 / 90000
            rate = stream.average_rate or stream.guessed_rate
            if rate and stream.time_base:
                self.default_duration = max(1, int(round(1 / (float(rate) * self.time_base_f))))
            info = codec_info(stream)
            self._set_codec(info)
            st = self.state
            st.codec = info["name"]
            st.width = info["width"] or st.width
            st.height = info["height"] or st.height
            st.reset_rate()
            log.info("connected: %s %sx%s over %s, opened in %.2fs", info["name"], info["width"],
                     info["height"], self.cfg.transport, time.monotonic() - opened_at)
            if self.rtmp is not None:
                self.rtmp.new_session(stream)
            if self.recorder is not None:
                self.recorder.new_session(stream)
            on_packet = self._on_packet
            stop = self.stop
            for packet in container.demux(stream):
                if stop.is_set():
                    return
                if packet.size == 0:  # the demuxer's end-of-stream flush packets
                    continue
                on_packet(packet)
            raise Disconnected("the camera ended the stream")
        finally:
            with contextlib.suppress(Exception):
                container.close()
            self.container = None

    def end_stalled_session(self, now: float) -> bool:
        """End a session that got no packet for the read timeout (called by the main thread's
        watchdog): its connection to the camera is shut down, so the blocked read returns at once
        and the session ends as timed out. True if it did (once per session)."""
        if self.container is None or self.stalled or now - self.last_packet_at <= self.cfg.read_timeout:
            return False
        self.stalled = True
        _shut_down_connections(self.host, self.port)
        return True

    def _end_session(self) -> None:
        if self.rtmp is not None:
            self.rtmp.end_session()
        if self.recorder is not None:
            self.recorder.end_session()
        self.ring.interrupted()
        self.state.reset_rate()
        self.pts_ts.clear()
        self.gop = []
        self.cc = None
        with contextlib.suppress(Exception):  # the last ring entries of the session
            self._flush(time.monotonic())

    # ------------------------------------------------------------------ the hot path
    def _on_packet(self, packet) -> None:
        mono = self.last_packet_at = time.monotonic()
        wall = time.time_ns() // 1_000_000
        is_key = packet.is_keyframe
        pts = packet.pts
        dts = packet.dts
        # RTSP gives the first packets without pts/dts: continue the timeline.
        if pts is None:
            pts = self.next_pts if self.next_pts is not None else (dts if dts is not None else 0)
            packet.pts = pts
        if dts is None:
            last = self.last_dts
            dts = pts if (last is None or pts > last) else last + 1
            packet.dts = dts
        self.last_dts = dts
        duration = packet.duration or self.default_duration
        self.next_pts = pts + duration

        st = self.state
        st.on_packet(mono, wall, is_key)
        self.session_packets += 1
        if self.session_packets == 1:
            st.connected_at = wall
            st.set_state("streaming")

        if not self.have_key:
            if not is_key:
                return  # cannot be decoded: not buffered, not forwarded
            self.have_key = True

        ring = self.ring
        if ring.enabled and mono >= self.bus_down_until:
            ring.queue(wall, packet, pts, dts, is_key)  # copied and sent with the batch (``_flush``)

        if is_key:
            self.gop = [packet]
            self.gop_broken = False
        elif len(self.gop) < GOP_CAP:
            self.gop.append(packet)
        else:
            self.gop_broken = True

        data = None
        rtmp = self.rtmp
        if rtmp is not None and rtmp.feeding:
            data = bytes(packet)
            rtmp.feed(data, pts, dts, is_key, duration)
        if self.recorder is not None and self.recorder.feeding:
            self.recorder.feed(data if data is not None else bytes(packet), pts, dts, is_key, duration, wall)

        frames_ring = self.frames_ring
        if frames_ring is not None:  # local readers' demand: two words in shared memory, no round trip
            words = frames_ring.demand_until()
            if words != self.shm_words or wall >= self.shm_recheck_at:
                self._on_shm_demand(words, wall)
        if self.awaiting_demand:  # apply the poll's answer as soon as it is there
            self._collect()
        if st.demand:
            self._decode(packet, is_key, wall, mono)
        if mono >= self.next_flush:
            self._flush(mono)

    def _on_shm_demand(self, words: tuple[int, int], wall: int) -> None:
        """Apply the demand file's words (they changed, or one of them expires or comes in force)."""
        all_until, key_until = self.shm_words = words
        self.shm_recheck_at = min(_wanted_changes_at(all_until, wall), _wanted_changes_at(key_until, wall))
        shm_demand = DEMAND_ALL if _wanted(all_until, wall) else DEMAND_KEY if _wanted(key_until, wall) \
            else DEMAND_NONE
        if shm_demand != self.shm_demand:
            self.shm_demand = shm_demand
            self._set_demand(max(shm_demand, self.redis_demand))

    def _decode(self, packet, is_key: bool, wall: int, mono: float) -> None:
        cc = self.cc
        assert cc is not None, "decoding outside a session"
        st = self.state
        try:
            if st.demand == DEMAND_ALL:
                if not self.synced:
                    if self.gop_broken:
                        return  # wait for the next keyframe
                    cc.flush_buffers()
                    self.pts_ts.clear()
                    for earlier in self.gop[:-1]:  # catch up from the GOP's keyframe
                        st.decoded_frames += len(cc.decode(earlier))
                    self.synced = True
                self.pts_ts[packet.pts] = (wall, packet.dts)
                frames = cc.decode(packet)
            else:  # keyframes only
                self.synced = False
                if not is_key:
                    return
                cc.flush_buffers()
                self.pts_ts.clear()
                self.pts_ts[packet.pts] = (wall, packet.dts)
                frames = cc.decode(packet)
                if not frames:
                    frames = cc.decode(None)  # drain the reorder delay; flushed again next time
        except av.error.FFmpegError as exc:
            st.decode_errors += 1
            if mono - self._decode_error_logged > 10.0:
                self._decode_error_logged = mono
                log.warning("decode error (%s); %d so far", describe(exc), st.decode_errors)
            if isinstance(exc, av.error.EOFError):
                self.synced = False
            return
        if not frames:
            return
        st.decoded_frames += len(frames)
        if len(self.pts_ts) > 64:  # frames that never came out (decoder dropped them)
            newest = sorted(self.pts_ts)[-16:]
            self.pts_ts = {p: self.pts_ts[p] for p in newest}
        self._publish(frames[-1], wall, mono)

    def _publish(self, frame, wall: int, mono: float) -> None:
        st = self.state
        info = self.pts_ts.pop(frame.pts, None)
        ts, dts = info if info is not None else (wall, frame.dts)
        width, height = frame.width, frame.height
        if self.frames_ring is not None:
            self._publish_shm(frame, ts, dts, width, height)
            if not self.frames_to_redis:
                if st.width != width or st.height != height:
                    st.width, st.height = width, height
                if frame.key_frame:
                    st.decoded_keyframes += 1
                st.published_frames += 1
                return
        if mono < self.bus_down_until:
            return
        if self.publish_i420 and frame.format.name in I420_SOURCES and not (width | height) & 1:
            data = self._i420(frame, width, height)
            data_format = I420
        else:
            image = to_bgr24(self.reformatter, frame)
            if not image.flags.c_contiguous:
                image = image.copy()
            data = memoryview(image).cast("B")
            data_format = BGR24
        is_key = bool(frame.key_frame)
        self.seq += 1
        meta = json.dumps({
            "seq": self.seq,
            "ts": ts,
            "width": frame.width,
            "height": frame.height,
            "pts": frame.pts,
            "dts": dts,
            "time_base": self.time_base_f,
            "frame_type": frame_type(frame),
            "is_keyframe": is_key,
            "is_corrupt": bool(frame.is_corrupt),
            "codec_name": self.state.codec,
            "pix_fmt": frame.format.name,
            "packet": len(self.gop) - 1,  # index of the newest packet in its GOP
            "keyframe": st.keyframes,  # keyframes received by this process
            "data_format": data_format,
        }, separators=(",", ":"))
        pipe = self.pipe
        pipe.command("HSET", self.k_latest, "meta", meta, "data", data)
        pipe.command("PEXPIRE", self.k_latest, self.frame_ttl_ms)
        if is_key:
            st.decoded_keyframes += 1
            pipe.command("HSET", self.k_keyframe, "meta", meta, "data", data)
            pipe.command("PEXPIRE", self.k_keyframe, self.frame_ttl_ms)
        if st.width != frame.width or st.height != frame.height:
            st.width, st.height = frame.width, frame.height
        self._flush(mono)
        st.published_frames += 1

    def _publish_shm(self, frame, ts: int, dts, width: int, height: int) -> None:
        """Convert to BGR24 once, for every reader, straight into the next ring slot (PyAV and
        one copy for frames the direct path does not take, see ``worker.camera.swscale``)."""
        ring = self.frames_ring
        slot = ring.begin(height, width)
        if not self.slot_converter.convert_into(frame, slot):
            np.copyto(slot, to_bgr24(self.reformatter, frame))
        ring.commit(height, width, ts, frame.pts, dts, self.time_base_f, self.state.keyframes, len(self.gop) - 1,
                    bool(frame.key_frame), bool(frame.is_corrupt), frame_type(frame), frame.format.name,
                    self.state.codec)

    def _i420(self, frame, width: int, height: int):
        """The frame's Y, U and V planes as one I420 value (``frame_format``), without conversion.

        Planes without row padding are sent as they are (a tuple of memoryviews, written to the
        socket by reference before ``_publish`` returns); padded rows are copied once, by numpy, into
        a buffer reused for every frame (also fully sent before it is reused)."""
        y, u, v = frame.planes
        half_w, half_h = width >> 1, height >> 1
        if y.line_size == width and u.line_size == half_w and v.line_size == half_w:
            chroma = half_w * half_h
            return (memoryview(y)[:width * height], memoryview(u)[:chroma], memoryview(v)[:chroma])
        size = width * height * 3 // 2
        buf = self._i420_buf
        if buf is None or buf.size != size:
            buf = self._i420_buf = np.empty(size, np.uint8)
        offset = 0
        for plane, w, h in ((y, width, height), (u, half_w, half_h), (v, half_w, half_h)):
            rows = np.frombuffer(plane, np.uint8, count=plane.line_size * (h - 1) + w)
            src = np.lib.stride_tricks.as_strided(rows, (h, w), (plane.line_size, 1))
            buf[offset:offset + w * h].reshape(h, w)[...] = src
            offset += w * h
        return buf.data

    # ------------------------------------------------------------------ Redis
    def _set_codec(self, info: dict) -> None:
        """Write the codec key; empty the ring first if the stream's parameters changed."""
        changed = self.codec is not None and not _same_codec(self.codec, info)
        if not changed and self.codec is None:
            try:
                previous = self.client.get(self.k_codec)
                changed = previous is not None and not _same_codec(json.loads(previous), info)
            except (ValueError, *_REDIS_ERRORS):
                changed = False
        self.codec = info
        self.codec_json = json.dumps(info, separators=(",", ":"))
        if changed:
            log.info("stream parameters changed: emptying the packet ring")
            self.pipe.command("DEL", self.ring.key)
            self.ring.restart()
        self.pipe.command("SET", self.k_codec, self.codec_json)
        self.last_codec_write = time.monotonic()
        self._flush(time.monotonic(), force=True)

    def _flush(self, mono: float, force: bool = False) -> None:
        """Send what is queued (ring entries, frames) plus the demand poll when it is due.

        Never waits for Redis: replies of earlier sends are collected as they arrive (the demand
        poll's answer is applied with the first packet after it came, ``_on_packet``)."""
        if mono < self.bus_down_until and not force:
            return
        pipe = self.pipe
        if mono - self.last_poll >= self.poll_s:
            pipe.command("MGET", *self.k_demand, callback=self._on_demand)
            self.last_poll = mono
            self.awaiting_demand = True
            if self.codec_json is not None and mono - self.last_codec_write >= CODEC_REFRESH_S:
                pipe.command("SET", self.k_codec, self.codec_json)
                self.last_codec_write = mono
        self.last_flush = mono
        self.next_flush = min(mono + self.flush_s, self.last_poll + self.poll_s)
        try:
            self.ring.write(pipe)
            pipe.send()
        except _REDIS_ERRORS as exc:
            self.ring.interrupted()
            self.bus_down_until = mono + BUS_RETRY_S
            self.awaiting_demand = False
            self.redis_demand = DEMAND_NONE
            self._set_demand(self.shm_demand)
            if self.state.bus_ok:
                self.state.bus_ok = False
                log.warning("frame bus unreachable (%s); ingest goes on, retrying every %.0fs",
                            describe(exc), BUS_RETRY_S)
            return
        st = self.state
        st.ring_entries = self.ring.entries
        st.ring_span_ms = self.ring.span_ms
        if not st.bus_ok:
            st.bus_ok = True
            log.info("frame bus reachable again")
            if self.codec_json is not None:  # it may have lost everything
                self.last_codec_write = 0.0

    def _collect(self) -> None:
        """Take the replies that have arrived (the demand poll's among them), without waiting."""
        try:
            self.pipe.collect()
        except _REDIS_ERRORS:
            self.awaiting_demand = False  # the next send reconnects (and says so)

    def _on_demand(self, values) -> None:
        self.awaiting_demand = False
        if not isinstance(values, list) or len(values) != 2:
            return
        if values[0] is not None:
            self.redis_demand = DEMAND_ALL
        elif values[1] is not None:
            self.redis_demand = DEMAND_KEY
        else:
            self.redis_demand = DEMAND_NONE
        self._set_demand(max(self.redis_demand, self.shm_demand))

    def _command_failed(self, exc: Exception) -> None:
        """An error reply from the frame bus (called while replies are collected)."""
        text = str(exc)
        if "XADD" in text or "equal or smaller" in text:
            # A ring entry id not above the stream's last one: another writer, or a clock far
            # behind. Start the ring over (ordered after everything already sent) rather than
            # lose it for good.
            self.pipe.command("DEL", self.ring.key)
            self.ring.restart()
        now = time.monotonic()
        if now - self._command_error_logged > 10.0:
            self._command_error_logged = now
            log.warning("frame bus refused a write (%s)", describe(exc))

    def _set_demand(self, demand: int) -> None:
        st = self.state
        if demand != st.demand:
            log.info("demand: %s", {DEMAND_NONE: "none (demux only)", DEMAND_KEY: "keyframes only",
                                    DEMAND_ALL: "every frame"}[demand])
            st.demand = demand
            if demand == DEMAND_NONE:
                self.synced = False
            st.changed.set()


__all__ = ["Ingest", "codec_info"]
