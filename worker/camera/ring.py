"""The packet ring: a bounded, time-indexed buffer of compressed video packets in Redis.

Writer side (``RingWriter``, used by the camera process) and reader side (``decode_range``,
``ring_info``, used by the frame server). The stream is ``keys.ring(camera)``:

* entry id ``<receive ms>-<n>``: wall-clock milliseconds when the packet was received (made
  non-decreasing) and ``n``, a per-process packet counter, so ids are strictly increasing and
  ``XRANGE ring <from_ms> <to_ms>`` selects by receive time;
* fields ``data`` (the packet, Annex B as FFmpeg's RTSP demuxer gives it), ``pts``, ``dts`` (in the
  codec's ``time_base``, see ``keys.codec``), ``key`` (``1`` keyframe / ``0``), ``ts`` (receive ms,
  same as the id's first part);
* it always starts at a keyframe and covers at least the configured seconds: the writer trims
  (``XTRIM MINID``, exact) to the newest keyframe received at or before ``now - buffer``, so its
  length is between ``buffer`` and ``buffer + one GOP``;
* after a reconnect or a frame-bus outage the writer resumes at a keyframe, so every packet in the
  ring can be decoded from the keyframe before it. If the codec parameters change on reconnect the
  ring is emptied (``keys.codec`` always describes every packet in the ring).
"""

from __future__ import annotations

import base64
import collections
import json
import time
from collections.abc import Generator
from fractions import Fraction
from typing import TYPE_CHECKING

from worker.camera import keys

if TYPE_CHECKING:
    import numpy as np

# Fetch size for XRANGE/XREVRANGE while reading the ring.
_BATCH = 512
# Without a keyframe to trim at (a camera with a very long or no GOP), never hold more than this.
_HARD_CAP_FACTOR = 3.0
_HARD_CAP_EXTRA_MS = 30_000


class RingWriter:
    """Builds the ring commands; the caller sends them (batched in its pipeline)."""

    def __init__(self, camera: str, buffer_seconds: float):
        self.key = keys.ring(camera)
        key = self.key.encode()
        self._xadd_head = b"*13\r\n$4\r\nXADD\r\n$%d\r\n%b\r\n" % (len(key), key)
        self.buffer_ms = int(buffer_seconds * 1000)
        self.enabled = self.buffer_ms > 0
        self.hard_cap_ms = max(self.buffer_ms * _HARD_CAP_FACTOR, self.buffer_ms + _HARD_CAP_EXTRA_MS)
        self.last_ms = 0
        self.counter = 0
        self.keyframes: collections.deque[tuple[int, str]] = collections.deque()
        self.first_ms: int | None = None
        self.need_keyframe = True  # resume only at a keyframe
        self.written = 0
        self.first_counter = 1  # packet counter of the ring's first entry
        # Packets kept by ``queue`` until ``write``: the per-packet path only keeps a reference; the
        # copies and RESP formatting happen once per batch (cache-warm, 25 packets in one loop).
        self.pending: list[tuple] = []

    @property
    def entries(self) -> int:
        """How many entries the ring holds (as far as this writer knows)."""
        return 0 if self.first_ms is None else self.counter - self.first_counter + 1

    @property
    def span_ms(self) -> int:
        return 0 if self.first_ms is None else self.last_ms - self.first_ms

    def restart(self) -> None:
        """Forget what was written (the ring key was deleted), and what was kept for it."""
        self.pending = []
        self.keyframes.clear()
        self.first_ms = None
        self.need_keyframe = True

    def interrupted(self) -> None:
        """Packets were lost (reconnect, bus outage): resume at the next keyframe."""
        self.need_keyframe = True

    def queue(self, recv_ms: int, packet, pts: int, dts: int, is_key: bool) -> bool:
        """Keep one packet (anything ``bytes()`` takes, e.g. a PyAV packet) for the next ``write``;
        False if skipped (the ring resumes at a keyframe)."""
        if self.need_keyframe:
            if not is_key:
                return False
            self.need_keyframe = False
        self.pending.append((recv_ms, packet, pts, dts, is_key))
        return True

    def write(self, pipe) -> int:
        """Queue the kept packets' entries (and the trims due) on ``pipe``; returns how many."""
        pending = self.pending
        if not pending:
            return 0
        self.pending = []
        add = self._add
        for recv_ms, packet, pts, dts, is_key in pending:
            add(pipe, recv_ms, bytes(packet), pts, dts, is_key)
        return len(pending)

    def _add(self, pipe, recv_ms: int, data: bytes, pts: int, dts: int, is_key: bool) -> None:
        """Queue one entry on ``pipe`` (and a trim when one is due)."""
        ms = recv_ms if recv_ms > self.last_ms else self.last_ms
        self.last_ms = ms
        self.counter += 1
        entry_id = f"{ms}-{self.counter}"
        raw = getattr(pipe, "raw", None)
        if raw is not None and len(data) < 32768:
            # Pre-encoded RESP (FastPipe): the per-packet cost is a single formatting operation.
            eid = entry_id.encode()
            pts_b, dts_b, ms_b = b"%d" % pts, b"%d" % dts, b"%d" % ms
            raw(self._xadd_head + b"$%d\r\n%b\r\n$4\r\ndata\r\n$%d\r\n%b\r\n$3\r\npts\r\n$%d\r\n%b\r\n"
                b"$3\r\ndts\r\n$%d\r\n%b\r\n$3\r\nkey\r\n$1\r\n%b\r\n$2\r\nts\r\n$%d\r\n%b\r\n" % (
                    len(eid), eid, len(data), data, len(pts_b), pts_b, len(dts_b), dts_b,
                    b"1" if is_key else b"0", len(ms_b), ms_b))
        else:
            pipe.execute_command(
                "XADD", self.key, entry_id, "data", data, "pts", pts, "dts", dts, "key", 1 if is_key else 0, "ts", ms
            )
        self.written += 1
        if self.first_ms is None:
            self.first_ms = ms
            self.first_counter = self.counter
        keyframes = self.keyframes
        if is_key:
            keyframes.append((ms, entry_id))
        # Trim (checked on every packet, so the ring never holds more than buffer + one GOP) to
        # the newest keyframe at or before now - buffer: the whole window stays decodable.
        cutoff = ms - self.buffer_ms
        if len(keyframes) >= 2 and keyframes[1][0] <= cutoff:
            while len(keyframes) >= 2 and keyframes[1][0] <= cutoff:
                keyframes.popleft()
            trim_ms, trim_id = keyframes[0]
            pipe.execute_command("XTRIM", self.key, "MINID", trim_id)
            self.first_ms = trim_ms
            self.first_counter = int(trim_id.split("-", 1)[1])
        elif not is_key and ms - self.first_ms > self.hard_cap_ms:
            # No keyframe for far too long: bound the memory anyway (the ring then starts
            # mid-GOP; readers skip to the first keyframe).
            pipe.execute_command("XTRIM", self.key, "MINID", str(cutoff))
            self.first_ms = cutoff
            self.first_counter = self.counter  # unknown exactly; an underestimate
            while keyframes and keyframes[0][0] < cutoff:
                keyframes.popleft()


# ---------------------------------------------------------------------------------------------
# Reader side


def read_codec(redis_client, camera: str) -> dict | None:
    """The codec JSON of ``keys.codec`` (see keys.py), or None if the camera never connected."""
    raw = redis_client.get(keys.codec(camera))
    if not raw:
        return None
    return json.loads(raw)


def _field(fields: dict, name: str):
    value = fields.get(name.encode())
    return value if value is not None else fields.get(name)


def _entry_ms(entry_id) -> int:
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    return int(entry_id.split("-", 1)[0])


def ring_info(redis_client, camera: str) -> dict:
    """Buffer span: ``{"start_ms", "end_ms", "duration_ms", "frames", "fps"}`` (zeros when empty)."""
    key = keys.ring(camera)
    pipe = redis_client.pipeline(transaction=False)
    pipe.xrange(key, "-", "+", count=1)
    pipe.xrevrange(key, "+", "-", count=1)
    pipe.xlen(key)
    first, last, count = pipe.execute()
    if not first or not last:
        return {"start_ms": 0, "end_ms": 0, "duration_ms": 0, "frames": 0, "fps": 0.0}
    start, end = _entry_ms(first[0][0]), _entry_ms(last[0][0])
    duration = end - start
    fps = round((count - 1) * 1000.0 / duration, 2) if duration > 0 and count > 1 else 0.0
    return {"start_ms": start, "end_ms": end, "duration_ms": duration, "frames": int(count), "fps": fps}


def _find_start_id(redis_client, key: str, start_ms: int):
    """Id of the newest keyframe received at or before ``start_ms``; else the ring's first keyframe."""
    cursor = str(max(0, int(start_ms)))
    while True:
        batch = redis_client.xrevrange(key, cursor, "-", count=_BATCH)
        if not batch:
            break
        for entry_id, fields in batch:
            if _field(fields, "key") in (b"1", "1"):
                return entry_id
        cursor = "(" + (batch[-1][0].decode() if isinstance(batch[-1][0], bytes) else batch[-1][0])
        if len(batch) < _BATCH:
            break
    # Nothing at/before start_ms: the range begins after the ring's start; use its first keyframe.
    cursor = "-"
    while True:
        batch = redis_client.xrange(key, cursor, "+", count=_BATCH)
        if not batch:
            return None
        for entry_id, fields in batch:
            if _field(fields, "key") in (b"1", "1"):
                return entry_id
        last = batch[-1][0]
        cursor = "(" + (last.decode() if isinstance(last, bytes) else last)


def _fetch(redis_client, key: str, first_id, end_ms: int) -> list:
    entries = []
    cursor = first_id.decode() if isinstance(first_id, bytes) else first_id
    end = str(int(end_ms))
    while True:
        batch = redis_client.xrange(key, cursor, end, count=_BATCH)
        entries.extend(batch)
        if len(batch) < _BATCH:
            return entries
        last = batch[-1][0]
        cursor = "(" + (last.decode() if isinstance(last, bytes) else last)


def _make_decoder(codec: dict, threads: int):
    import av

    ctx = av.CodecContext.create(codec["name"], "r")
    if codec.get("extradata"):
        ctx.extradata = base64.b64decode(codec["extradata"])
    if codec.get("width") and codec.get("height"):
        ctx.width = int(codec["width"])
        ctx.height = int(codec["height"])
    ctx.thread_type = "AUTO"
    ctx.thread_count = threads
    return ctx


def _time_base(codec: dict) -> Fraction:
    if codec.get("time_base_num") and codec.get("time_base_den"):
        return Fraction(int(codec["time_base_num"]), int(codec["time_base_den"]))
    return Fraction(1, 90000)


def decode_range(redis_client, camera: str, start_ms: int, end_ms: int, *, follow_s: float = 0.0,
                 threads: int = 0) -> Generator[tuple[dict, np.ndarray], None, None]:
    """Decode the buffered packets of ``camera`` received in ``[start_ms, end_ms]`` (wall-clock ms).

    Yields ``(meta, image)`` in presentation order, every frame whose receive time ``ts`` lies in
    the range (none dropped): ``image`` is a ``numpy.uint8`` array ``(height, width, 3)`` in BGR24;
    ``meta`` has the ``keys.FRAME_META_FIELDS`` (``seq`` = 1, 2, ... within this range; ``packet`` =
    index in its GOP, ``keyframe`` = keyframes fed so far in this range) plus ``id``, the ring entry
    id. Decoding starts at the keyframe at or before ``start_ms`` (frames before ``start_ms`` are
    decoded but not converted or yielded). A range older than the ring starts at the ring's first
    keyframe; an empty or missing ring yields nothing. The packets of the range are read from Redis
    up front (so trimming cannot overtake a slow consumer); frames are decoded lazily.

    ``follow_s`` > 0: when ``end_ms`` is later than the newest buffered packet, keep reading new
    packets as the camera writes them, until one is past ``end_ms`` or the wall clock passes
    ``end_ms + follow_s``. ``threads`` is the decoder's thread count (0 = FFmpeg's choice).

    Raises ``LookupError`` when the camera has no codec info (it never connected).
    """
    import av

    codec = read_codec(redis_client, camera)
    if codec is None:
        raise LookupError(f"no codec info for camera {camera!r}: it has not connected yet")
    key = keys.ring(camera)
    start_ms, end_ms = int(start_ms), int(end_ms)
    if end_ms < start_ms:
        return

    entries = []
    for _attempt in range(3):
        first_id = _find_start_id(redis_client, key, start_ms)
        if first_id is None:
            break
        entries = _fetch(redis_client, key, first_id, end_ms)
        if entries and entries[0][0] == first_id:
            break
        # Trimmed between the two reads; look again.
    time_base = _time_base(codec)
    decoder = _make_decoder(codec, threads)
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    codec_name = codec.get("name")
    pending: dict[int, tuple] = {}
    seq = 0
    started = False  # a keyframe has been fed
    keyframes = 0
    gop_index = 0

    def packets(batch):
        nonlocal started, keyframes, gop_index
        for entry_id, fields in batch:
            is_key = _field(fields, "key") in (b"1", "1")
            if not started:
                if not is_key:
                    continue
                started = True
            if is_key:
                keyframes += 1
                gop_index = 0
            else:
                gop_index += 1
            packet = av.Packet(_field(fields, "data"))
            pts = int(_field(fields, "pts"))
            dts = int(_field(fields, "dts"))
            packet.pts = pts
            packet.dts = dts
            packet.time_base = time_base
            packet.is_keyframe = is_key
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            pending[pts] = (int(_field(fields, "ts")), dts, eid, gop_index, keyframes)
            yield packet

    def emit(frames):
        nonlocal seq
        for frame in frames:
            info = pending.pop(frame.pts, None) if frame.pts is not None else None
            if info is None:
                continue
            ts, dts, eid, index, keyframe = info
            if ts < start_ms or ts > end_ms:
                continue
            seq += 1
            image = to_bgr24(reformatter, frame)
            meta = {
                "seq": seq,
                "ts": ts,
                "width": frame.width,
                "height": frame.height,
                "pts": frame.pts,
                "dts": dts,
                "time_base": float(time_base),
                "frame_type": frame_type(frame),
                "is_keyframe": bool(frame.key_frame),
                "is_corrupt": bool(frame.is_corrupt),
                "codec_name": codec_name,
                "pix_fmt": frame.format.name,
                "packet": index,
                "keyframe": keyframe,
                "id": eid,
            }
            yield meta, image

    def decode_batch(batch):
        for packet in packets(batch):
            try:
                frames = decoder.decode(packet)
            except av.error.FFmpegError:
                continue  # a damaged packet: the decoder conceals and goes on
            yield from emit(frames)

    yield from decode_batch(entries)

    if follow_s > 0:
        last_id = entries[-1][0] if entries else None
        last_ts = _entry_ms(last_id) if last_id is not None else 0
        deadline = end_ms / 1000.0 + follow_s
        while last_ts <= end_ms and time.time() < deadline:
            cursor = last_id if last_id is not None else "$"
            block = max(1, int(min(0.5, deadline - time.time()) * 1000))
            reply = redis_client.xread({key: cursor}, count=_BATCH, block=block)
            if not reply:
                continue
            batch = reply[0][1]
            last_id = batch[-1][0]
            last_ts = _entry_ms(last_id)
            yield from decode_batch([e for e in batch if _entry_ms(e[0]) <= end_ms])

    try:
        tail = decoder.decode(None)
    except av.error.FFmpegError:
        tail = []
    yield from emit(tail)


def to_bgr24(reformatter, frame):
    """``frame.to_ndarray(format="bgr24")`` with a reused swscale context.

    ``VideoFrame.to_ndarray(format=...)`` builds a new ``VideoReformatter`` (a new SwsContext with its
    buffers) for every frame object, which costs more than the conversion itself: 0.31 vs 0.09 ms
    per 640x480 frame here. Same conversion, single-threaded (``threads=1``: swscale's automatic
    threading burns several times the CPU for a frame this size)."""
    return reformatter.reformat(frame, format="bgr24", threads=1).to_ndarray()


# AVPictureType values (av.video.frame.PictureType) -> the letters the original API used.
_PICT_TYPES = {1: "I", 2: "P", 3: "B", 4: "S", 5: "SI", 6: "SP", 7: "BI"}


def frame_type(frame) -> str:
    """``I``, ``P``, ``B``... of a decoded frame (``?`` when the decoder does not say)."""
    return _PICT_TYPES.get(int(frame.pict_type), "?")
