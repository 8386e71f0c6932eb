"""Fragmented MP4 for the recorder: FFmpeg writes the header, the fragments are written here.

The init segment (``ftyp`` + ``moov``: the codec configuration, avcC or hvcC, and the track's time
scale) comes from FFmpeg's MP4 muxer through PyAV (``init_segment``), once per camera session. The
fragments (``moof`` + ``mdat``) are the only part that grows with the stream, and they are simple:
this module packs them from the packets' bytes and timestamps, a few ``struct.pack`` calls per
fragment, and the recorder writes the fragments of a batch at once (``FragmentWriter.flush``).
Muxing through PyAV cost a ``Packet`` object and a ``mux`` call per packet, most of the recording's
CPU (bench/recording.py).

The boxes (ISO/IEC 14496-12) are the ones FFmpeg writes with
``movflags=frag_keyframe+empty_moov+default_base_moof``: each fragment is self-contained (its data
offsets count from its own ``moof``), so a file cut after any complete fragment plays.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from itertools import chain
from operator import sub

import av

# trun sample flags: a sync sample depends on no other; any other sample depends on others and is
# not a sync sample (sample_depends_on=1, sample_is_non_sync_sample=1).
SYNC_SAMPLE = 0x02000000
OTHER_SAMPLE = 0x01010000
# tfhd: default-base-is-moof (data offsets relative to this fragment's moof), no other defaults.
TFHD_FLAGS = 0x020000
# trun (version 1: signed composition offsets): data offset, then per sample its duration, size,
# flags and composition offset.
TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800
# moof(8) + mfhd(16) + traf(8) + tfhd(16) + tfdt(20) + trun header(20): the bytes before the samples.
MOOF_FIXED = 8 + 16 + 8 + 16 + 20 + 20
SAMPLE_BYTES = 16
START_CODE = b"\x00\x00\x01"  # Annex B: before each NAL unit (with a zero byte before it, or more)


class InitSegmentError(ValueError):
    """FFmpeg made no usable MP4 header for the stream."""


def _boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, payload start, box end) of each box in data[start:end]."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            size = struct.unpack_from(">Q", data, offset + 8)[0]
            header = 16
        if size < header or offset + size > end:
            break
        yield kind, offset + header, offset + size
        offset += size


def _child(data: bytes, path: tuple[bytes, ...], start: int = 0, end: int | None = None) -> tuple[int, int]:
    for kind, payload, box_end in _boxes(data, start, end):
        if kind == path[0]:
            return (payload, box_end) if len(path) == 1 else _child(data, path[1:], payload, box_end)
    raise InitSegmentError(f"no {b'/'.join(path).decode()} box in the MP4 header")


def init_segment(template, codec: str) -> tuple[bytes, int, int]:
    """``ftyp`` + ``moov`` for a stream like ``template`` (a PyAV video stream with the codec
    parameters), as FFmpeg's fragmented-MP4 muxer writes them; with the track's id and time scale."""
    buffer = io.BytesIO()
    out = av.open(buffer, "w", format="mp4", options={"movflags": "frag_custom+empty_moov+default_base_moof"})
    try:
        stream = out.add_stream_from_template(template, opaque=True)
        if template.time_base is not None:
            stream.time_base = template.time_base  # the track's time scale: the packets' own when FFmpeg allows
        if codec == "hevc":
            stream.codec_tag = "hvc1"  # what browsers (and Apple players) expect
        out.start_encoding()
    finally:
        out.close()
    data = buffer.getvalue()
    moov_end = None
    for kind, _payload, box_end in _boxes(data):
        if kind == b"moov":
            moov_end = box_end
            break
    if moov_end is None:
        raise InitSegmentError("the MP4 muxer wrote no moov box")
    header = data[:moov_end]
    tkhd, _ = _child(header, (b"moov", b"trak", b"tkhd"))
    version = header[tkhd]
    track_id = struct.unpack_from(">I", header, tkhd + (20 if version == 1 else 12))[0]
    mdhd, _ = _child(header, (b"moov", b"trak", b"mdia", b"mdhd"))
    version = header[mdhd]
    timescale = struct.unpack_from(">I", header, mdhd + (20 if version == 1 else 12))[0]
    _child(header, (b"moov", b"mvex", b"trex"))  # fragments need it: refuse a header without
    return header, track_id, timescale


def length_prefixed(data: bytes) -> bytes:
    """One access unit from Annex B (NAL units after start codes, as RTSP delivers them) to MP4's
    form (each NAL unit after its 4-byte length), as FFmpeg's muxer converts it."""
    # bytes.find, not a regular expression: it runs at memchr speed, and packets reach 100 kB.
    view = memoryview(data)
    parts: list = []
    start = data.find(START_CODE)
    if start < 0:
        return data  # no start code: not Annex B after all, kept as it is
    while start >= 0:
        start += 3
        following = data.find(START_CODE, start)
        stop = len(data) if following < 0 else following
        while stop > start and data[stop - 1] == 0:  # a 4-byte start code's first zero, trailing zeros
            stop -= 1
        if stop > start:
            parts += ((stop - start).to_bytes(4, "big"), view[start:stop])
        start = following
    return b"".join(parts)


class FragmentWriter:
    """Samples collected into one fragment at a time, packed as ``moof`` + ``mdat``; the packed
    fragments reach ``file`` in one write by ``flush`` (or ``finish``).

    Times are in the stream's ``time_base``; they are written in the track's ``timescale``. A
    sample's duration is the gap to the next sample's decode time, so a fragment is packed once the
    next sample is known (``add`` of the next fragment's first sample, or ``finish``)."""

    def __init__(self, file, track_id: int, timescale: int, time_base: Fraction, annex_b: bool, origin: int):
        self.file = file
        self.track_id = track_id
        self.annex_b = annex_b
        self.origin = origin  # the stream time that is 0 in the file (the first sample's decode time)
        scale = Fraction(time_base) * timescale
        self.scale = None if scale == 1 else scale  # None: the stream's time base is the track's
        self.sequence = 0
        self.samples: list[tuple[bytes, int, int, bool]] = []  # (data, dts, pts, key)
        self.packed: list[bytes] = []  # fragments not written yet
        self.bytes = 0

    def add(self, data: bytes, pts: int, dts: int, key: bool, new_fragment: bool) -> None:
        """A sample (decode order); ``new_fragment``: pack what is collected first."""
        if new_fragment and self.samples:
            self.pack(dts)
        self.samples.append((data, dts, pts, key))

    def finish(self, end_dts: int) -> None:
        """Pack what is collected (the last sample lasts until ``end_dts``) and write it all."""
        if self.samples:
            self.pack(end_dts)
        self.flush()

    def flush(self) -> None:
        """Write the packed fragments, in one write: a file cut short keeps whole fragments."""
        if not self.packed:
            return
        data = self.packed[0] if len(self.packed) == 1 else b"".join(self.packed)
        self.packed = []
        view = memoryview(data)
        while view:  # a short write (the disk filling up): the rest, which raises the error
            view = view[self.file.write(view):]

    def pack(self, next_dts: int) -> None:
        """Pack the collected samples into a fragment; the last one lasts until ``next_dts``."""
        samples, self.samples = self.samples, []
        self.sequence += 1
        origin, scale = self.origin, self.scale
        if scale is None:
            dts_ticks = [dts - origin for _data, dts, _pts, _key in samples]
            cts_offsets = [pts - dts for _data, dts, pts, _key in samples]
            end = next_dts - origin
        else:
            dts_ticks = [round((dts - origin) * scale) for _data, dts, _pts, _key in samples]
            cts_offsets = [round((pts - origin) * scale) - ticks
                           for (_data, _dts, pts, _key), ticks in zip(samples, dts_ticks, strict=True)]
            end = round((next_dts - origin) * scale)
        dts_ticks.append(max(end, dts_ticks[-1] + 1))
        datas = [data for data, _dts, _pts, _key in samples]
        payloads = [length_prefixed(data) for data in datas] if self.annex_b else datas
        sizes = list(map(len, payloads))
        durations = map(sub, dts_ticks[1:], dts_ticks)
        flags = [SYNC_SAMPLE if key else OTHER_SAMPLE for _data, _dts, _pts, key in samples]
        count = len(samples)
        moof_size = MOOF_FIXED + SAMPLE_BYTES * count
        mdat_size = 8 + sum(sizes)
        head = struct.pack(
            ">I4s" "I4sII" "I4s" "I4sII" "I4sIQ" "I4sIIi",
            moof_size, b"moof",
            16, b"mfhd", 0, self.sequence,
            moof_size - 24, b"traf",
            16, b"tfhd", TFHD_FLAGS, self.track_id,
            20, b"tfdt", 1 << 24, dts_ticks[0],  # version 1: a 64-bit decode time
            20 + SAMPLE_BYTES * count, b"trun", (1 << 24) | TRUN_FLAGS, count, moof_size + 8,
        )
        entries = chain.from_iterable(zip(durations, sizes, flags, cts_offsets, strict=True))
        body = struct.pack(">" + "IIIi" * count, *entries)
        self.packed.append(b"".join((head, body, struct.pack(">I4s", mdat_size, b"mdat"), *payloads)))
        self.bytes += moof_size + mdat_size
