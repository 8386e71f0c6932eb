"""Recording: the camera's packets remuxed into fragmented MP4 segments on disk, never re-encoded.

Like the RTMP forwarder, it runs in its own thread so that a slow or full disk never stalls
ingest: the ingest thread only appends packets to a bounded queue (``feed``) while recording is
wanted and a session is up. This thread starts a segment at a keyframe and cuts the next one at
the first keyframe once ``segment_s`` have passed, so consecutive segments of a continuous stream
meet exactly (the cut keyframe ends one and starts the next). Fragmented MP4 (an empty ``moov``, a
fragment at every keyframe and at least every second): a file cut short by a crash plays up to its
last fragment. FFmpeg (PyAV) writes each file's header, the fragments are packed here
(``worker.camera.fmp4``): muxing every packet through PyAV was most of the recording's CPU.

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

from worker.camera import fmp4

log = logging.getLogger("camera.recorder")

QUEUE_PACKETS = 1500  # ~60 s at 25 fps; beyond that packets are dropped and the segment ends
# The thread takes the queued packets in batches, every 3 s (half a segment at most), and writes
# each batch's fragments at once: each wake-up of a Python thread and each write cost more than
# the packets they handle (the ingest thread only appends to a deque: no lock, no wake-up per
# packet). A crash (SIGKILL) loses what is queued and the unfinished fragment: at most a batch
# interval plus a second; a clean stop, a stream that ends or recording switched off lose nothing.
BATCH_INTERVAL_S = 3.0
MIN_BATCH_INTERVAL_S = 0.25
DIR_MODE = 0o700
FILE_MODE = 0o600
OPEN = "open"
CODECS = ("h264", "hevc")
# <start>-<end|open>.<codec>.mp4
SEGMENT_RULE = re.compile(r"^(\d{1,16})-(\d{1,16}|open)\.([a-z0-9]{1,16})\.mp4$")
FREE_CHECK_S = 2.0
# A fragment at every keyframe and at least every second: what a crash can lose.
FRAGMENT_S = 1.0


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
    def __init__(self, number: int, header: bytes, track_id: int, timescale: int, time_base, codec: str,
                 annex_b: bool):
        self.number = number
        self.header = header  # ftyp + moov, the start of every segment of the session
        self.track_id = track_id
        self.timescale = timescale
        self.time_base = time_base
        self.tb_ms = float(time_base) * 1000.0 if time_base is not None else 1000.0 / 90000
        self.fragment_ticks = FRAGMENT_S * 1000.0 / self.tb_ms
        self.codec = codec
        self.annex_b = annex_b  # packets with start codes (RTSP), not length prefixes
        self.anchor: tuple[int, int] | None = None  # (wall ms, pts) of the session's first keyframe
        self.ended = False  # set by the ingest thread after the session's last packet

    def wall_ms(self, pts: int) -> int:
        assert self.anchor is not None
        wall, anchor_pts = self.anchor
        return wall + int(round((pts - anchor_pts) * self.tb_ms))


class _Open:
    """The segment being written."""

    def __init__(self, session: _Session, path: Path, file, writer: fmp4.FragmentWriter, start_ms: int,
                 start_pts: int):
        self.session = session
        self.path = path
        self.tb_ms = session.tb_ms
        self.file = file
        self.writer = writer
        self.start_ms = start_ms
        self.start_pts = start_pts
        self.codec = session.codec
        self.end_pts = start_pts  # the end of the newest packet (pts + duration)
        self.end_dts = start_pts  # the decode time after the newest packet (dts + duration)
        self.last_dts: int | None = None
        self.fragment_dts = start_pts  # the current fragment's first decode time (set by its first packet)


class Recorder:
    def __init__(self, settings: RecordingSettings, name: str, state, stop: threading.Event):
        self.settings = settings
        self.name = name
        self.state = state
        self.stop = stop
        self.dir = settings.camera_dir(name) if settings.enabled else None
        # Half a segment at most between batches: a segment is closed soon after its end.
        self.batch_s = min(BATCH_INTERVAL_S, max(MIN_BATCH_INTERVAL_S, settings.segment_s / 2))
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
        # The thread runs only while recording is switched on (``_update_thread``); None otherwise.
        self.thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._started = False  # ``start`` has run (segments an earlier process left open are closed)
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
        with self._thread_lock:
            self._started = True
        self._update_thread()

    def _update_thread(self) -> None:
        """Start the recorder thread if recording is wanted and it is not running; it ends by itself
        once recording is switched off (``_run``): a camera that does not record has no thread to wake."""
        with self._thread_lock:
            if self.wanted and self._started and self.thread is None and not self.stop.is_set():
                self.thread = threading.Thread(target=self._run, name="recorder", daemon=True)
                self.thread.start()

    def set_control(self, control: dict | None) -> None:
        control = control if isinstance(control, dict) else {}
        wanted = bool(control.get("enabled"))
        if self.dir is None:
            # Never records here, so ``wanted`` stays off: the problem follows the request alone.
            self.problem = ("recording is not available on this host (EDGEPROXY_RECORDINGS_DIR is not set)"
                            if wanted else None)
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
            self._update_thread()
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
            header, track_id, timescale = fmp4.init_segment(in_stream, codec)
        except Exception as exc:  # noqa: BLE001
            self._session = None
            self.problem = f"cannot record {codec}: {exc}"
            log.warning("recording: %s", self.problem)
            return
        extradata = in_stream.codec_context.extradata or b""
        self._numbers += 1
        self._session = _Session(self._numbers, header, track_id, timescale, in_stream.time_base, codec,
                                 annex_b=not extradata.startswith(b"\x01"))
        self._update_feeding()
        self._wake.set()

    def end_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.ended = True  # after its last packet: the recorder writes what is queued, then closes
        self._update_feeding()
        self._wake.set()

    def feed(self, data: bytes, pts: int, dts: int, is_key: bool, duration: int, wall: int) -> None:
        session = self._session
        if session is None:
            return
        if len(self.queue) < QUEUE_PACKETS:
            self.queue.append((session, data, pts, dts, is_key, duration, wall))
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

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self) -> None:
        """Every ``batch_s`` (or when woken): write what the ingest thread queued. Ends when
        recording is switched off (after writing what was queued before) or the process stops."""
        next_free_check = 0.0
        try:
            while not self.stop.is_set():
                if not self.wanted:
                    self._write_queued()
                    self._close(None)
                    with self._thread_lock:
                        if not self.wanted:  # else switched on again meanwhile: go on in this thread
                            self.thread = None
                            return
                    continue
                if self.blocked:  # the host's quota: not one more byte
                    self._close(None)
                    self._drain()
                    self._wait(self.batch_s)
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
                    self._wait(self.batch_s)
                    continue
                self._write_queued()
                self._wait(self.batch_s)
            self._write_queued()  # the process stops: what the ingest thread queued before, then close
            self._close(None)
        except Exception:
            log.exception("recording: unexpected error in the recorder thread")
            self.errors += 1
            with contextlib.suppress(Exception):
                self._close(None)
            with self._thread_lock:
                self.thread = None  # switching recording off and on starts it again

    def _write_queued(self) -> None:
        """Write the queued packets (one write per segment); close a segment whose session ended."""
        while True:
            overflow = self._overflow
            queue = self.queue
            if queue:
                self._packets([queue.popleft() for _ in range(len(queue))])
            current = self._open
            if overflow:  # fell behind and lost packets: end the segment, resume at a keyframe
                self._overflow = False
                self._close(None)
                log.warning("recording: the disk is too slow, packets were dropped; next segment at a keyframe")
                return
            if current is not None:
                try:
                    current.writer.flush()
                except OSError as exc:  # a write error (disk full) ends the segment, not ingest
                    self._write_failed(current, exc)
                    return
            if current is None or not current.session.ended:
                return
            if not queue:  # the session's last packet came before ``ended``: it is written
                self._close(None)
                return

    def _packets(self, batch: list) -> None:
        """Pack queued packets (decode order) into fragments: start a segment at a keyframe, cut the
        next one at the first keyframe after ``segment_s``, a fragment at every keyframe and every second."""
        current = self._open
        session = current.session if current is not None else None
        segment_ticks = fragment_ticks = 0.0
        if session is not None:
            segment_ticks = self.settings.segment_s * 1000.0 / session.tb_ms
            fragment_ticks = session.fragment_ticks
        for packet_session, data, pts, dts, is_key, duration, wall in batch:
            if packet_session is not session:  # packets of a new camera session: a new segment
                self._close(None)
                current = None
                session = packet_session
                segment_ticks = self.settings.segment_s * 1000.0 / session.tb_ms
                fragment_ticks = session.fragment_ticks
            if current is None:
                if not is_key:
                    continue
                if session.anchor is None:
                    session.anchor = (wall, pts)
                current = self._start(session, pts, dts)
                if current is None:
                    continue
            elif is_key and pts - current.start_pts >= segment_ticks:
                self._close(pts, min(pts, dts))  # this keyframe ends one segment and starts the next: no gap
                current = self._start(session, pts, dts)
                if current is None:
                    continue
            if dts > pts:  # timestamps the ingest made up for the first packets of a session
                dts = pts
            last_dts = current.last_dts
            if last_dts is not None and dts <= last_dts:
                continue  # decode time must go forward (as FFmpeg's muxer requires)
            new_fragment = is_key or dts - current.fragment_dts >= fragment_ticks
            if new_fragment:
                current.fragment_dts = dts
            current.writer.add(data, pts, dts, is_key, new_fragment)
            current.last_dts = dts
            if pts + duration > current.end_pts:
                current.end_pts = pts + duration
            current.end_dts = dts + duration

    def _write_failed(self, current: _Open, exc: OSError) -> None:
        self.errors += 1
        self.problem = f"cannot write {current.path.name}: {exc.strerror or exc}"
        log.warning("recording: %s", self.problem)
        with contextlib.suppress(OSError):
            current.file.close()
        if self._open is current:
            self._open = None
        # What reached the file before the error plays (whole fragments only): keep it under its real end.
        recover_open_segments(current.path.parent)

    def _start(self, session: _Session, pts: int, dts: int) -> _Open | None:
        assert self.dir is not None
        start_ms = session.wall_ms(pts)
        path = self.dir / f"{start_ms}-{OPEN}.{session.codec}.mp4"
        file = None
        try:
            self.dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            # Unbuffered: the fragments of a batch reach the file in one write (``FragmentWriter.flush``).
            file = open(fd, "wb", buffering=0)  # noqa: SIM115 - closed by _close
            file.write(session.header)
        except Exception as exc:  # noqa: BLE001
            if file is not None:
                with contextlib.suppress(OSError):
                    file.close()
            self.errors += 1
            self.problem = f"cannot start a segment in {self.dir}: {exc}"
            log.warning("recording: %s", self.problem)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        if self.problem and not self.problem.startswith("disk"):
            self.problem = None
        # The file's time 0 is the first packet's decode time (FFmpeg's muxer shifts it so too).
        writer = fmp4.FragmentWriter(file, session.track_id, session.timescale, session.time_base, session.annex_b,
                                     origin=min(pts, dts))
        self._open = _Open(session, path, file, writer, start_ms, pts)
        return self._open

    def _close(self, end_pts: int | None, end_dts: int | None = None) -> None:
        """End the open segment at ``end_pts`` / ``end_dts`` (the next segment's first keyframe) or
        after its last packet."""
        current = self._open
        if current is None:
            return
        self._open = None
        try:
            current.writer.finish(current.end_dts if end_dts is None else end_dts)
        except OSError as exc:
            self._write_failed(current, exc)
            return
        finally:
            with contextlib.suppress(OSError):
                current.file.close()
        end = current.end_pts if end_pts is None else end_pts
        if end <= current.start_pts:  # no packet in it
            with contextlib.suppress(OSError):
                current.path.unlink()
            return
        end_ms = current.start_ms + int(round((end - current.start_pts) * current.tb_ms))
        final = current.path.with_name(f"{current.start_ms}-{end_ms}.{current.codec}.mp4")
        try:
            os.replace(current.path, final)
            self.bytes_written += len(current.session.header) + current.writer.bytes
            self.segments += 1
        except OSError as exc:
            self.errors += 1
            log.warning("recording: cannot close %s (%s)", current.path.name, exc.strerror)
