"""Recordings on an edge host: settings, switching, retention, event keeps, listings and clips.

The camera process writes the segments (``worker/camera/recorder.py``); everything else about them
happens here, on the same host:

* ``RecordingControl`` (edge worker): the recording settings of this host's cameras, kept in a
  file of the state directory and written to each camera's ``recording`` control key;
* ``sweep`` (edge worker, every ``EDGEPROXY_RECORDING_SWEEP_SECONDS``): deletes segments older
  than their camera's retention, then the oldest segments of the host while it is over its quota
  (less room for one more segment per recording camera); footage kept for an event is never
  deleted. When the quota cannot be met that way, every camera's control key says so and
  recording stops (cameras stream on) until there is room again;
* ``keep_event`` (frame server, on ``Annotate``): keep the footage around an event;
* ``list_footage`` and ``clip`` (frame server): what the control plane fetches.

Paths: ``<dir>/<camera>/<start>-<end>.<codec>.mp4`` (segments), ``<dir>/<camera>/.keep/<from>-<to>``
(event keeps: empty files, the name is the range).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from edgeproxy.env import SettingError, envfloat, envint, envstr
from worker.camera import keys
from worker.camera.recorder import (
    DIR_MODE,
    FILE_MODE,
    RecordingSettings,
    RecordingSettingsError,
    Segment,
    list_segments,
)

log = logging.getLogger("edgeproxy.recordings")

KEEP_DIR = ".keep"
CLIP_CHUNK = 256 * 1024


@dataclass(frozen=True)
class HostRecordingSettings:
    """The host's recording settings (docs/configuration.md)."""

    camera: RecordingSettings
    quota_mb: float = 0.0  # 0: no quota (free space still guards the disk)
    sweep_s: float = 30.0
    clip_max_s: int = 600
    event_before_s: float = 10.0
    event_after_s: float = 20.0

    @property
    def directory(self) -> str | None:
        return self.camera.directory

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HostRecordingSettings:
        source = os.environ if env is None else env
        try:
            camera = RecordingSettings.from_env({
                **source, "EDGEPROXY_RECORDINGS_DIR": envstr("EDGEPROXY_RECORDINGS_DIR", "", env) or ""})
        except RecordingSettingsError as exc:
            raise SettingError(str(exc)) from None
        return cls(
            camera=camera,
            quota_mb=envfloat("EDGEPROXY_RECORDING_QUOTA_MB", 0.0, minimum=0.0, env=env),
            sweep_s=envfloat("EDGEPROXY_RECORDING_SWEEP_SECONDS", 30.0, minimum=0.2, env=env),
            clip_max_s=envint("EDGEPROXY_RECORDING_CLIP_MAX_SECONDS", 600, minimum=1, maximum=86400, env=env),
            event_before_s=envfloat("EDGEPROXY_RECORDING_EVENT_BEFORE_SECONDS", 10.0, minimum=0.0, env=env),
            event_after_s=envfloat("EDGEPROXY_RECORDING_EVENT_AFTER_SECONDS", 20.0, minimum=0.0, env=env),
        )

    def camera_dir(self, camera: str) -> Path:
        return self.camera.camera_dir(camera)


@functools.lru_cache(maxsize=1)
def host_settings() -> HostRecordingSettings:
    """This process's recording settings, read once from the environment."""
    return HostRecordingSettings.from_env()


def prepare_root(settings: HostRecordingSettings) -> None:
    """Create the recordings folder, owner-only."""
    if settings.directory:
        root = Path(settings.directory)
        root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(root, DIR_MODE)


# --- event keeps --------------------------------------------------------------------------------


def keep_event(settings: HostRecordingSettings, camera: str, start_ms: int, end_ms: int | None) -> tuple[int, int]:
    """Keep the footage of ``camera`` around an event beyond retention; the kept range."""
    end_ms = end_ms if end_ms and end_ms >= start_ms else start_ms
    kept = (int(start_ms - settings.event_before_s * 1000), int(end_ms + settings.event_after_s * 1000))
    folder = settings.camera_dir(camera) / KEEP_DIR
    folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(folder / f"{kept[0]}-{kept[1]}", os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    return kept


def kept_ranges(camera_dir: Path) -> list[tuple[int, int]]:
    ranges = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(camera_dir / KEEP_DIR):
            start, _, end = entry.name.partition("-")
            if start.lstrip("-").isdigit() and end.isdigit():
                ranges.append((int(start), int(end)))
    return ranges


def _is_kept(segment: Segment, ranges: list[tuple[int, int]]) -> bool:
    end = segment.end_ms if segment.end_ms is not None else segment.start_ms
    return any(segment.start_ms <= to and end >= start for start, to in ranges)


# --- switching (edge worker) ------------------------------------------------------------------


class RecordingControl:
    """The recording settings of this host's cameras: a state file, and each camera's control key."""

    def __init__(self, settings: HostRecordingSettings, state_path: Path, frames_redis):
        self.settings = settings
        self.path = Path(state_path)
        self.frames = frames_redis
        self._lock = threading.Lock()
        self.blocked: str | None = None
        self.cameras: dict[str, dict] = self._load()
        self.deleted = 0  # segments deleted by retention (metrics)
        self.deleted_by_camera: dict[str, int] = {}

    def _load(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text())
            return {k: v for k, v in data.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            return {}

    def _save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.cameras, fh)
        os.replace(temporary, self.path)

    def set(self, camera: str, enabled: bool, retention_hours: float) -> dict:
        """Switch recording of ``camera``; the camera sees it within its status interval."""
        with self._lock:
            self.cameras[camera] = {"enabled": bool(enabled), "retention_hours": float(retention_hours)}
            self._save()
        self.publish(camera)
        return self.cameras[camera]

    def forget(self, camera: str) -> None:
        with self._lock:
            if self.cameras.pop(camera, None) is not None:
                self._save()

    def add_counts(self, streams: dict[str, dict]) -> dict[str, dict]:
        """The cameras' stream reports with the segments retention deleted of each (metrics)."""
        for name, stream in streams.items():
            if isinstance(stream, dict) and isinstance(stream.get("recording"), dict):
                stream["recording"]["retention_deleted"] = self.deleted_by_camera.get(name, 0)
        return streams

    def control(self, camera: str) -> dict:
        wanted = self.cameras.get(camera) or {"enabled": False, "retention_hours": None}
        problem = None
        if wanted.get("enabled") and not self.settings.directory:
            problem = "recording is not available on this host (EDGEPROXY_RECORDINGS_DIR is not set)"
        return {**wanted, "blocked": self.blocked or problem}

    def publish(self, camera: str | None = None) -> None:
        """Write the control key of ``camera``, or of every camera that records (a removed camera
        stays here, switched off, for its footage to age out: its key must not come back)."""
        names = [camera] if camera else [name for name, wanted in self.cameras.items() if wanted.get("enabled")]
        if not names:
            return
        pipe = self.frames.pipeline()
        for name in names:
            pipe.set(keys.recording(name), json.dumps(self.control(name)))
        pipe.execute()

    # --- retention ----------------------------------------------------------------------------

    def sweep(self, now_ms: int | None = None) -> dict:
        """Delete what retention and the quota say must go, oldest first; set ``blocked``."""
        settings = self.settings
        if not settings.directory:
            return {}
        now_ms = now_ms or int(time.time() * 1000)
        root = Path(settings.directory)
        per_camera: dict[str, list[Segment]] = {}
        kept: dict[str, list[tuple[int, int]]] = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(root):
                if entry.is_dir(follow_symlinks=False):
                    folder = Path(entry.path)
                    per_camera[entry.name] = list_segments(folder, now_ms=now_ms)
                    kept[entry.name] = kept_ranges(folder)
        deleted = 0
        for camera, segments in per_camera.items():
            hours = (self.cameras.get(camera) or {}).get("retention_hours")
            if not hours:
                continue
            cutoff = now_ms - float(hours) * 3600_000
            remaining = []
            for segment in segments:
                if segment.end_ms is not None and segment.end_ms < cutoff and not _is_kept(segment, kept[camera]):
                    deleted += self._delete(camera, segment)
                else:
                    remaining.append(segment)
            per_camera[camera] = remaining
        blocked = None
        if settings.quota_mb:
            quota = int(settings.quota_mb * 1024 * 1024)
            used = sum(s.size for segments in per_camera.values() for s in segments)
            recording = [c for c, v in self.cameras.items() if v.get("enabled")]
            # Room for one more segment of each recording camera: the quota holds until the next sweep.
            largest = {c: max((s.size for s in per_camera.get(c, [])), default=0) for c in recording}
            room = sum(largest.values())
            candidates = sorted((s.start_ms, camera, s) for camera, segments in per_camera.items()
                                for s in segments if s.end_ms is not None and not _is_kept(s, kept[camera]))
            for _start, camera, segment in candidates:
                if used + room <= quota:
                    break
                if self._delete(camera, segment):
                    deleted += 1
                    used -= segment.size
            if used + room > quota:
                blocked = (f"recording quota reached: {used // (1024 * 1024)} MiB of "
                           f"{settings.quota_mb:g} MiB (EDGEPROXY_RECORDING_QUOTA_MB) hold footage kept for events")
        if blocked != self.blocked:
            if blocked:
                log.warning("recordings: %s; recording stops", blocked)
            elif self.blocked:
                log.info("recordings: room again; recording resumes")
            self.blocked = blocked
        try:
            self.publish()
        except Exception as exc:  # noqa: BLE001 - the frame bus may be away; the next sweep writes again
            log.warning("recording control keys not written: %s", exc)
        return {"deleted": deleted, "blocked": blocked}

    def _delete(self, camera: str, segment: Segment) -> int:
        try:
            segment.path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("recordings: cannot delete %s (%s)", segment.path, exc.strerror)
            return 0
        self.deleted += 1
        self.deleted_by_camera[camera] = self.deleted_by_camera.get(camera, 0) + 1
        return 1

    def sweep_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - a failed sweep is the next one's job
                log.exception("recordings: sweep failed")
            stop.wait(self.settings.sweep_s)

    def start(self, stop: threading.Event) -> None:
        prepare_root(self.settings)
        threading.Thread(target=self.sweep_forever, args=(stop,), name="recordings-sweep", daemon=True).start()


# --- listings and clips (frame server) -------------------------------------------------------


class FootageError(Exception):
    """No footage for the request; ``code`` says why (``not_found`` or ``invalid``)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def list_footage(settings: HostRecordingSettings, camera: str, start_ms: int, end_ms: int) -> list[dict]:
    """The camera's segments overlapping [start_ms, end_ms], oldest first (the open one included,
    ending now)."""
    if not settings.directory:
        return []
    now = int(time.time() * 1000)
    return [s.as_dict() | ({"end": now, "duration_ms": now - s.start_ms} if s.end_ms is None else {})
            for s in list_segments(settings.camera_dir(camera), start_ms, end_ms, now_ms=now)]


def segment_path(settings: HostRecordingSettings, camera: str, file: str) -> Path:
    """The path of one segment file of ``camera`` (FootageError when there is none of that name)."""
    from worker.camera.recorder import parse_segment

    if "/" in file or parse_segment(Path(file)) is None:
        raise FootageError("invalid", f"{file!r} is not a segment name")
    if not settings.directory:
        raise FootageError("not_found", "this host keeps no recordings (EDGEPROXY_RECORDINGS_DIR is not set)")
    path = settings.camera_dir(camera) / file
    if not path.is_file():
        raise FootageError("not_found", f"no segment {file} of camera {camera}")
    return path


class _Sink(io.RawIOBase):
    """A write-only stream that collects what the muxer writes, to be sent in chunks."""

    def __init__(self):
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts = []
        return data


def clip(settings: HostRecordingSettings, camera: str, start_ms: int, end_ms: int) -> Iterator[bytes]:
    """One fragmented MP4 of the camera's footage from the keyframe at or before ``start_ms`` to
    ``end_ms``, remuxed (no re-encoding) and yielded in chunks as it is made."""
    import av

    segments = [s for s in list_segments(settings.camera_dir(camera), start_ms, end_ms) if s.size > 0] \
        if settings.directory else []
    if not segments:
        raise FootageError("not_found", f"camera {camera} has no footage between {start_ms} and {end_ms}")
    first = segments[0]
    codec = first.codec
    segments = [s for s in segments if s.codec == codec]  # one stream per clip: a codec change ends it
    return _clip_chunks(av, segments, start_ms, end_ms)


def _clip_chunks(av, segments: list[Segment], start_ms: int, end_ms: int) -> Iterator[bytes]:
    sink = _Sink()
    out = av.open(sink, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
    out_stream = None
    origin = None  # (wall ms, output offset in the input time base) of the clip's first packet
    last_dts = None
    try:
        for segment in segments:
            try:
                source = av.open(str(segment.path))
            except av.error.FFmpegError:
                continue  # deleted or unreadable meanwhile
            with source:
                stream = source.streams.video[0]
                tb_ms = float(stream.time_base) * 1000.0
                if out_stream is None:
                    out_stream = out.add_stream_from_template(stream)
                first_pts = None
                pending_gop: list = []  # packets of the current GOP before start_ms (the clip starts at its keyframe)
                for packet in source.demux(stream):
                    if packet.pts is None or packet.size == 0:
                        continue
                    if first_pts is None:
                        first_pts = packet.pts
                    wall = segment.start_ms + (packet.pts - first_pts) * tb_ms
                    if wall >= end_ms:  # [from, to): a clip to a segment's end stops before the next keyframe
                        break
                    if origin is None:
                        if packet.is_keyframe:
                            pending_gop = [packet]
                        elif pending_gop:
                            pending_gop.append(packet)
                        if wall < start_ms:
                            continue
                        if not pending_gop:
                            continue
                        key = pending_gop[0]
                        origin = (segment.start_ms + (key.pts - first_pts) * tb_ms, key.dts)
                        todo = pending_gop
                    else:
                        todo = [packet]
                    for item in todo:
                        # Output time: ms since the clip's start, in the input's time base.
                        item_wall = segment.start_ms + (item.pts - first_pts) * tb_ms
                        shift = item.pts - item.dts
                        pts = int(round((item_wall - origin[0]) / tb_ms))
                        dts = pts - shift
                        if last_dts is not None and dts <= last_dts:
                            continue
                        item.pts, item.dts = pts, dts
                        item.stream = out_stream
                        out.mux(item)
                        last_dts = dts
                    data = sink.take()
                    if len(data) >= CLIP_CHUNK:
                        yield data
                    elif data:
                        sink.parts.append(data)
        if out_stream is None or origin is None:
            raise FootageError("not_found", "no keyframe in the range")
    finally:
        with contextlib.suppress(Exception):
            out.close()
    data = sink.take()
    if data:
        yield data
