"""Recording: the camera's packets remuxed into fragmented MP4 segments on disk, never re-encoded.

Like the RTMP forwarder, it runs in its own thread so that a slow or full disk never stalls
ingest: the ingest thread only appends packets to a bounded queue (``feed``) while recording is
wanted and a session is up. This thread starts a segment at a keyframe and cuts the next one at
the first keyframe once ``segment_s`` have passed, so consecutive segments of a continuous stream
meet exactly (the cut keyframe ends one and starts the next). Fragmented MP4 (``empty_moov``, a
fragment at least every second): a file cut short by a crash plays up to its last fragment.

Files: ``<EDGEPROXY_RECORDINGS_DIR>/<camera>/<start ms>-<end ms>.<codec>.mp4`` (``open`` instead of
the end while being written; renamed when closed), owner-only. The name is the index: listing a
time range is one ``scandir`` (``list_segments``). Segment times are wall-clock ms: the session's
first keyframe's receive time plus the stream's own timestamps, so they do not drift apart.

Switched by the ``recording`` control key (``keys.recording``), which the edge worker writes:
``{"enabled", "retention_hours", "blocked"}``; ``blocked`` (the host's quota is used up) stops
recording cleanly, as does free disk space under ``min_free_mb``. The camera streams on either way.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av

log = logging.getLogger("camera.recorder")

QUEUE_PACKETS = 1500  # ~60 s at 25 fps; beyond that packets are dropped and the segment ends
# The thread takes the queued packets in batches: a few wake-ups a second instead of one a packet
# (the ingest thread only appends to a deque: no lock, no wake-up per packet).
BATCH_INTERVAL_S = 0.5
DIR_MODE = 0o700
FILE_MODE = 0o600
OPEN = "open"
CODECS = ("h264", "hevc")
# <start>-<end|open>.<codec>.mp4
SEGMENT_RULE = re.compile(r"^(\d{1,16})-(\d{1,16}|open)\.([a-z0-9]{1,16})\.mp4$")
FREE_CHECK_S = 2.0
MUXER_OPTIONS = {
    # A fragment at every keyframe and at least every second; the header holds no samples, so
    # every byte written is playable without a trailer.
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "frag_duration": "1000000",
    # Each fragment reaches the file as soon as it is complete (not when the I/O buffer fills).
    "flush_packets": "1",
}


class RecordingSettingsError(ValueError):
    """A recording setting is wrong; the message names the variable."""


def _number(env, name: str, default: float, minimum: float, maximum: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RecordingSettingsError(f"{name} must be a number between {minimum:g} and {maximum:g} "
                                     f"(got {raw!r})") from None
    if not minimum <= value <= maximum:
        raise RecordingSettingsError(f"{name} must be between {minimum:g} and {maximum:g} (got {raw!r})")
    return value


@dataclass(frozen=True)
class RecordingSettings:
    """The camera side of the recording settings (docs/configuration.md); the runtimes pass them on."""

    directory: str | None = None
    segment_s: float = 10.0
    min_free_mb: float = 512.0

    @classmethod
    def from_env(cls, env=None) -> RecordingSettings:
        env = os.environ if env is None else env
        directory = (env.get("EDGEPROXY_RECORDINGS_DIR") or "").strip() or None
        if directory is not None and not os.path.isabs(directory):
            raise RecordingSettingsError(f"EDGEPROXY_RECORDINGS_DIR must be an absolute path (got {directory!r})")
        return cls(
            directory=directory,
            segment_s=_number(env, "EDGEPROXY_RECORDING_SEGMENT_SECONDS", 10.0, 0.5, 600.0),
            min_free_mb=_number(env, "EDGEPROXY_RECORDING_MIN_FREE_MB", 512.0, 0.0, 1e9),
        )

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def environment(self) -> dict[str, str]:
        """The camera program's variables for these settings."""
        if not self.directory:
            return {}
        return {"EDGEPROXY_RECORDINGS_DIR": self.directory,
                "EDGEPROXY_RECORDING_SEGMENT_SECONDS": f"{self.segment_s:g}",
                "EDGEPROXY_RECORDING_MIN_FREE_MB": f"{self.min_free_mb:g}"}

    def camera_dir(self, camera: str) -> Path:
        assert self.directory, "recording has no directory"
        return Path(self.directory) / camera


# --- segments on disk -------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    path: Path
    start_ms: int
    end_ms: int | None  # None: being written (or left open by a crash, until recovered)
    codec: str
    size: int

    @property
    def duration_ms(self) -> int | None:
        return None if self.end_ms is None else self.end_ms - self.start_ms

    def as_dict(self) -> dict:
        return {"file": self.path.name, "start": self.start_ms, "end": self.end_ms,
                "duration_ms": self.duration_ms, "size": self.size, "codec": self.codec}


def parse_segment(path: Path, size: int = 0) -> Segment | None:
    match = SEGMENT_RULE.match(path.name)
    if match is None:
        return None
    start, end, codec = match.groups()
    return Segment(path, int(start), None if end == OPEN else int(end), codec, size)


def list_segments(camera_dir: Path, start_ms: int | None = None, end_ms: int | None = None,
                  include_open: bool = True, now_ms: int | None = None) -> list[Segment]:
    """The camera's segments overlapping [start_ms, end_ms], oldest first. An open segment counts
    as ending at its file's last write (``now_ms`` if that is unknown)."""
    found = []
    try:
        entries = list(os.scandir(camera_dir))
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in entries:
        if not entry.name.endswith(".mp4"):
            continue
        try:
            stat = entry.stat()
        except FileNotFoundError:  # deleted meanwhile (retention)
            continue
        segment = parse_segment(Path(entry.path), stat.st_size)
        if segment is None:
            continue
        end = segment.end_ms
        if end is None:
            if not include_open:
                continue
            end = int(stat.st_mtime * 1000) if now_ms is None else now_ms
        if end_ms is not None and segment.start_ms > end_ms:
            continue
        if start_ms is not None and end < start_ms:
            continue
        found.append(segment)
    found.sort(key=lambda s: s.start_ms)
    return found


def _complete_length(path: Path) -> int:
    """The length of the file's leading complete top-level MP4 boxes, ending after an ``mdat``
    (a fragment is ``moof`` + ``mdat``): what survives of a file a crash cut short."""
    good = 0
    size = path.stat().st_size
    with open(path, "rb") as fh:
        offset = 0
        while offset + 8 <= size:
            fh.seek(offset)
            header = fh.read(16)
            length = int.from_bytes(header[:4], "big")
            kind = header[4:8]
            if length == 1 and len(header) >= 16:
                length = int.from_bytes(header[8:16], "big")
            if length < 8 or offset + length > size:
                break
            offset += length
            if kind in (b"mdat", b"moov"):
                good = offset
    return good


def recover_open_segments(camera_dir: Path) -> list[Segment]:
    """Close segments a crashed process left open: cut each to its last complete fragment and name
    it with its real end (from its last packet); an unreadable one is deleted."""
    recovered = []
    for segment in list_segments(camera_dir, include_open=True):
        if segment.end_ms is not None:
            continue
        path = segment.path
        try:
            good = _complete_length(path)
            end_ms = None
            if good:
                with open(path, "r+b") as fh:
                    fh.truncate(good)
                end_ms = segment.start_ms + _media_duration_ms(path)
            if not good or end_ms is None or end_ms <= segment.start_ms:
                path.unlink(missing_ok=True)
                continue
            final = path.with_name(f"{segment.start_ms}-{end_ms}.{segment.codec}.mp4")
            os.replace(path, final)
            recovered.append(Segment(final, segment.start_ms, end_ms, segment.codec, good))
        except (OSError, av.error.FFmpegError) as exc:
            log.warning("recording: cannot recover %s (%s); deleted", path.name, exc)
            with contextlib.suppress(OSError):
                path.unlink()
    return recovered


def _media_duration_ms(path: Path) -> int:
    """Milliseconds from the file's first to the end of its last video packet."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        first = last = None
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            if first is None or packet.pts < first:
                first = packet.pts
            end = packet.pts + (packet.duration or 0)
            if last is None or end > last:
                last = end
        if first is None or last is None or stream.time_base is None:
            return 0
        return int(round((last - first) * float(stream.time_base) * 1000))


# --- the recorder thread ----------------------------------------------------------------------


class _Session:
    def __init__(self, number: int, holder, template, time_base, codec: str):
        self.number = number
        self.holder = holder  # keeps the template's codec parameters alive
        self.template = template
        self.time_base = time_base
        self.tb_ms = float(time_base) * 1000.0 if time_base is not None else 1000.0 / 90000
        self.codec = codec
        self.anchor: tuple[int, int] | None = None  # (wall ms, pts) of the session's first keyframe

    def wall_ms(self, pts: int) -> int:
        assert self.anchor is not None
        wall, anchor_pts = self.anchor
        return wall + int(round((pts - anchor_pts) * self.tb_ms))


class _Open:
    """The segment being written."""

    def __init__(self, path: Path, out, stream, start_ms: int, start_pts: int, offset: int, codec: str,
                 tb_ms: float):
        self.path = path
        self.tb_ms = tb_ms
        self.out = out
        self.stream = stream
        self.start_ms = start_ms
        self.start_pts = start_pts
        self.offset = offset
        self.codec = codec
        self.end_pts = start_pts  # the end of the newest packet (pts + duration)
        self.last_dts: int | None = None


class Recorder:
    def __init__(self, settings: RecordingSettings, name: str, state, stop: threading.Event):
        self.settings = settings
        self.name = name
        self.state = state
        self.stop = stop
        self.dir = settings.camera_dir(name) if settings.enabled else None
        self.queue: collections.deque = collections.deque()
        self.feeding = False  # read by the ingest thread for every packet
        self.wanted = False
        self.retention_hours: float | None = None
        self.blocked: str | None = None  # from the control key (host quota)
        self.problem: str | None = None
        self._session: _Session | None = None
        self._numbers = 0
        self._wake = threading.Event()
        self._overflow = False
        self._open: _Open | None = None
        self.thread: threading.Thread | None = None
        # Metrics (status key): bytes in closed segments, segments closed, errors.
        self.bytes_written = 0
        self.segments = 0
        self.errors = 0

    # -------------------------------------------------------------- control (status thread)
    def start(self) -> None:
        if self.dir is None:
            return
        with contextlib.suppress(OSError):
            self.dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            recovered = recover_open_segments(self.dir)
            if recovered:
                log.info("recording: %d segment(s) left open by an earlier process closed", len(recovered))
        self.thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self.thread.start()

    def set_control(self, control: dict | None) -> None:
        control = control if isinstance(control, dict) else {}
        wanted = bool(control.get("enabled"))
        if wanted and self.dir is None:
            self.problem = "recording is not available on this host (EDGEPROXY_RECORDINGS_DIR is not set)"
            wanted = False
        retention = control.get("retention_hours")
        self.retention_hours = float(retention) if isinstance(retention, (int, float)) else None
        blocked = control.get("blocked") or None
        if blocked != self.blocked:
            self.blocked = blocked
            if blocked:
                log.warning("recording: stopped (%s)", blocked)
            self._wake.set()
        if wanted != self.wanted:
            self.wanted = wanted
            log.info("recording switched %s", "on" if wanted else "off")
            if not wanted:
                self.problem = None
            self._update_feeding()
            self._wake.set()

    def status(self) -> dict:
        if not self.wanted:
            state = "off"
        elif self.blocked or self.problem:
            state = "stopped"
        elif self._open is not None:
            state = "recording"
        else:
            state = "waiting"  # for the stream, or its next keyframe
        return {"enabled": self.wanted, "state": state, "problem": self.blocked or self.problem,
                "bytes_written": self.bytes_written, "segments": self.segments, "errors": self.errors}

    # -------------------------------------------------------------- ingest thread
    def new_session(self, in_stream) -> None:
        if self.dir is None:
            return
        codec = in_stream.codec_context.name
        if codec not in CODECS:
            self._session = None
            self.problem = f"cannot record {codec} (only H.264 and H.265)"
            return
        try:
            holder = av.open(os.devnull, "w", format="mp4")
            template = holder.add_stream_from_template(in_stream, opaque=True)
        except Exception as exc:  # noqa: BLE001
            self._session = None
            self.problem = f"cannot record {codec}: {exc}"
            log.warning("recording: %s", self.problem)
            return
        self._numbers += 1
        self._session = _Session(self._numbers, holder, template, in_stream.time_base, codec)
        self._update_feeding()
        self._wake.set()

    def end_session(self) -> None:
        self._session = None
        self._update_feeding()
        self._wake.set()

    def feed(self, data: bytes, pts: int, dts: int, is_key: bool, duration: int, wall: int) -> None:
        session = self._session
        if session is None:
            return
        if len(self.queue) < QUEUE_PACKETS:
            self.queue.append((session.number, data, pts, dts, is_key, duration, wall))
        else:
            self._overflow = True

    def _update_feeding(self) -> None:
        self.feeding = bool(self.wanted and self._session is not None)

    # -------------------------------------------------------------- recorder thread
    def _drain(self) -> None:
        self.queue.clear()

    def _free_problem(self) -> str | None:
        assert self.dir is not None
        try:
            free = shutil.disk_usage(self.dir).free
        except OSError as exc:
            return f"recordings folder unusable ({exc.strerror})"
        if free < self.settings.min_free_mb * 1024 * 1024:
            return (f"disk full: {free // (1024 * 1024)} MiB free, recording needs "
                    f"{self.settings.min_free_mb:g} MiB (EDGEPROXY_RECORDING_MIN_FREE_MB)")
        return None

    def _run(self) -> None:
        session_number = None
        next_free_check = 0.0
        try:
            while not self.stop.is_set():
                session = self._session
                if not self.wanted or session is None or self.blocked:
                    self._close(None)
                    self._drain()
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                now = time.monotonic()
                if now >= next_free_check:
                    next_free_check = now + FREE_CHECK_S
                    problem = self._free_problem()
                    if problem != self.problem and (problem or self.problem and self.problem.startswith("disk")):
                        self.problem = problem
                        if problem:
                            log.warning("recording: stopped (%s)", problem)
                        else:
                            log.info("recording: disk space available again")
                    if problem:
                        self._close(None)
                if self.problem and self._open is None and self.problem.startswith("disk"):
                    self._drain()
                    self._wake.wait(0.5)
                    self._wake.clear()
                    continue
                if not self.queue:
                    self._wake.wait(BATCH_INTERVAL_S)
                    self._wake.clear()
                    continue
                if self._overflow:  # fell behind and lost packets: end the segment, resume at a keyframe
                    self._overflow = False
                    self.queue.clear()
                    self._close(None)
                    log.warning("recording: the disk is too slow, packets were dropped; next segment at a keyframe")
                    continue
                for _ in range(len(self.queue)):
                    number, data, pts, dts, is_key, duration, wall = self.queue.popleft()
                    if number != session.number:
                        continue
                    if session_number != session.number:
                        self._close(None)
                        session_number = session.number
                    self._packet(session, data, pts, dts, is_key, duration, wall)
        finally:
            self._close(None)

    def _packet(self, session: _Session, data: bytes, pts: int, dts: int, is_key: bool, duration: int,
                wall: int) -> None:
        current = self._open
        if current is None:
            if not is_key:
                return
            if session.anchor is None:
                session.anchor = (wall, pts)
            self._start(session, pts, dts)
            current = self._open
            if current is None:
                return
        elif is_key and (pts - current.start_pts) * session.tb_ms >= self.settings.segment_s * 1000:
            self._close(pts)  # this keyframe ends one segment and starts the next: no gap
            self._start(session, pts, dts)
            current = self._open
            if current is None:
                return
        if dts > pts:  # timestamps the ingest made up for the first packets of a session
            dts = pts
        if current.last_dts is not None and dts <= current.last_dts:
            return  # the muxer rejects time standing still or going backwards
        packet = av.Packet(data)
        packet.pts = pts - current.offset
        packet.dts = dts - current.offset
        packet.duration = duration
        packet.time_base = session.time_base
        packet.is_keyframe = is_key
        packet.stream = current.stream
        try:
            current.out.mux(packet)
        except Exception as exc:  # noqa: BLE001 - a write error (disk full) ends the segment, not ingest
            self.errors += 1
            self.problem = f"cannot write {current.path.name}: {exc}"
            log.warning("recording: %s", self.problem)
            self._close(None)
            return
        current.last_dts = dts
        current.end_pts = max(current.end_pts, pts + duration)

    def _start(self, session: _Session, pts: int, dts: int) -> None:
        assert self.dir is not None
        start_ms = session.wall_ms(pts)
        path = self.dir / f"{start_ms}-{OPEN}.{session.codec}.mp4"
        try:
            self.dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            os.close(fd)
            out = av.open(str(path), "w", format="mp4", options=dict(MUXER_OPTIONS))
            stream = out.add_stream_from_template(session.template, opaque=True)
            if session.codec == "hevc":
                with contextlib.suppress(Exception):
                    stream.codec_tag = "hvc1"  # what browsers (and Apple players) expect
        except Exception as exc:  # noqa: BLE001
            self.errors += 1
            self.problem = f"cannot start a segment in {self.dir}: {exc}"
            log.warning("recording: %s", self.problem)
            with contextlib.suppress(OSError):
                path.unlink()
            return
        if self.problem and not self.problem.startswith("disk"):
            self.problem = None
        self._open = _Open(path, out, stream, start_ms, pts, min(pts, dts), session.codec,
                           session.tb_ms)

    def _close(self, end_pts: int | None) -> None:
        """End the open segment at ``end_pts`` (the next segment's first keyframe) or after its last packet."""
        current = self._open
        if current is None:
            return
        self._open = None
        with contextlib.suppress(Exception):
            current.out.close()
        end = current.end_pts if end_pts is None else end_pts
        if end <= current.start_pts:  # no packet in it
            with contextlib.suppress(OSError):
                current.path.unlink()
            return
        end_ms = current.start_ms + int(round((end - current.start_pts) * current.tb_ms))
        final = current.path.with_name(f"{current.start_ms}-{end_ms}.{current.codec}.mp4")
        try:
            os.replace(current.path, final)
            self.bytes_written += final.stat().st_size
            self.segments += 1
        except OSError as exc:
            self.errors += 1
            log.warning("recording: cannot close %s (%s)", current.path.name, exc.strerror)
