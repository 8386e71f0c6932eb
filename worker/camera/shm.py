"""Decoded frames in shared memory: one small ring per camera, for readers on the same host.

The camera process writes every decoded frame, as BGR24, into a ring of ``slots`` slots in a file
under ``EDGEPROXY_FRAMES_SHM_DIR`` (tmpfs, ``/dev/shm/edgeproxy`` by default); readers (the frame
server, ``edgeproxy.client.FrameClient``, any program that maps the file) get numpy arrays of the
slot without the frame going through a socket. Redis keeps status, demand and control keys; frame
bytes go through Redis only with ``EDGEPROXY_FRAMES_VIA_REDIS=1`` or when no ring can be made.

Layout of ``<dir>/<camera>[~<camera id>].frames`` (little endian; every offset page aligned):

* header (4096 bytes, ``_HEADER``): magic ``EPFRAME1``, version, number of slots, bytes per slot,
  ``ring_id`` (random, new for every file), writer pid, ``closed`` (1 once the writer stopped or
  moved to a bigger file under the same name: readers open the path again), ``write_seq`` (the
  newest complete frame), ``keyframe_seq`` (the newest keyframe), ``heartbeat_ms`` (wall clock,
  written every status interval), ``streaming`` (1 while the camera streams) and a 32-bit futex
  word (low bits of ``write_seq``) that readers sleep on;
* ``slots`` frame slots plus one keyframe slot (a copy of the newest keyframe, for keyframe-only
  readers), each a 256-byte slot header (``_SLOT``: ``seq`` first, then the frame's meta with its
  ``width``/``height``) and room for one ``height x width x 3`` frame.

Torn frames: seqlock per slot. The writer sets the slot's ``seq`` to 0, writes meta and pixels,
then sets ``seq`` to the frame's number and only then publishes it in ``write_seq``. A reader
reads ``seq``, copies (or views) the slot, and reads ``seq`` again: a frame whose ``seq`` changed
is dropped and read again. A slot is rewritten only ``slots`` frames later, so a zero-copy view
stays intact for ``slots - 1`` frame intervals; ``FrameRingReader.intact`` checks. (x86-64 keeps
stores in program order; on weakly ordered CPUs the futex system call orders them.)

Readers share no lock with the writer and write nothing (they map the file read-only): a slow or
dead reader cannot slow the camera. Memory per camera: 4096 + (slots + 1) x (4096 + the frame
rounded up to pages), e.g. 4 slots: 29.7 MiB at 1920x1080, 4.4 MiB at 640x480. A frame larger
than the slots (resolution change) makes the writer create a new file and rename it over the old
one; the old file's memory goes once the last reader lets go of it.

Demand: ``<dir>/<camera>[~<camera id>].demand`` (one page, mode ``0660``: the group may write it,
nobody else may read it; it holds no frame). Two little-endian u64 words, wall-clock ms until
which a reader wants every frame (offset 0) or keyframes (offset 8): a reader stores ``now +
keys.DEMAND_TTL_MS`` about once a second while it reads (a store into a mapping, no system call);
the camera compares them with its clock on every packet, so a local reader's demand costs neither
side a round trip and decoding starts with the next packet. At offset 16 the writer's random id
(the camera deletes only its own file). Readers that cannot write it (a read-only mount) keep
demand through the frame server instead; the camera reads the Redis demand keys too.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import glob
import grp
import mmap
import os
import platform
import re
import secrets
import struct
import time
from collections.abc import Callable

import numpy as np

MAGIC = b"EPFRAME1"
VERSION = 1
HEADER_SIZE = 4096
SLOT_HEADER_SIZE = 256
PAGE = mmap.PAGESIZE
DEFAULT_DIR = "/dev/shm/edgeproxy"
DEFAULT_SLOTS = 4
SUFFIX = ".frames"
DEMAND_SUFFIX = ".demand"
DEMAND_SIZE = 4096
DEMAND_FILE_MODE = 0o660  # readers in the group store their demand; nobody else has access
DIR_MODE = 0o3770  # owner and group; setgid: files get the group; sticky: only owners delete
FILE_MODE = 0o640  # the writer writes, the group reads, nobody else
# A ring whose camera wrote no heartbeat for this long belongs to a dead process: three heartbeats
# at the longest status interval (EDGEPROXY_STATUS_INTERVAL_MS <= 1000), so a busy camera is not taken for dead.
HEARTBEAT_STALE_MS = 3000

# magic, version, slots, slot_bytes, ring_id, pid, closed, write_seq, keyframe_seq, heartbeat_ms,
# streaming, futex
_HEADER = struct.Struct("<8sIIQQIIQQQII")
_OFF_CLOSED = 36
_OFF_WRITE_SEQ = 40
_OFF_KEYFRAME_SEQ = 48
_OFF_HEARTBEAT = 56
_OFF_STREAMING = 64
_OFF_FUTEX = 68
# seq, ts, pts, dts, time_base, keyframe, width, height, channels, packet, flags, frame_type,
# pix_fmt, codec_name, nbytes
_SLOT = struct.Struct("<QQqqdQIIIII4s16s16sQ")
_SLOT_META = struct.Struct("<QqqdQIIIII4s16s16sQ")  # _SLOT without seq (written first)
# closed, write_seq, keyframe_seq, heartbeat_ms, streaming: the header words a reader checks, in one read
_STATE = struct.Struct("<IQQQI")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_DEMAND = struct.Struct("<QQ")  # every frame until ms, keyframes until ms
_OFF_DEMAND_KEY = 8
_OFF_DEMAND_OWNER = 16
_FLAG_KEY = 1
_FLAG_CORRUPT = 2
_ID_RULE = re.compile(r"[^A-Za-z0-9._-]")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class RingError(Exception):
    """A ring file that is not (or no longer) a frame ring of this version."""


class SettingsError(ValueError):
    """A shared-memory setting is wrong; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class ShmSettings:
    """``EDGEPROXY_FRAMES_SHM_DIR`` (default ``/dev/shm/edgeproxy``; ``off`` disables rings),
    ``EDGEPROXY_FRAMES_SHM_GROUP`` (group name or id allowed to read; default the process's group),
    ``EDGEPROXY_FRAMES_SHM_SLOTS`` (2..32, default 4), ``EDGEPROXY_FRAMES_VIA_REDIS`` (also publish
    every frame to Redis as before; default off)."""

    directory: str | None = DEFAULT_DIR
    group: int | None = None
    slots: int = DEFAULT_SLOTS
    via_redis: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.directory)

    @classmethod
    def from_env(cls, env=None) -> ShmSettings:
        env = os.environ if env is None else env
        directory = (env.get("EDGEPROXY_FRAMES_SHM_DIR") or "").strip() or DEFAULT_DIR
        if directory.lower() in ("off", "none", "0"):
            directory = None
        elif not os.path.isabs(directory):
            raise SettingsError(f"EDGEPROXY_FRAMES_SHM_DIR must be an absolute path or 'off', got {directory!r}")
        raw_group = (env.get("EDGEPROXY_FRAMES_SHM_GROUP") or "").strip()
        group = None
        if raw_group:
            if raw_group.isdigit():
                group = int(raw_group)
            else:
                try:
                    group = grp.getgrnam(raw_group).gr_gid
                except KeyError:
                    raise SettingsError(f"EDGEPROXY_FRAMES_SHM_GROUP: no group {raw_group!r} on this host "
                                        "(give a group name or a numeric id)") from None
        raw_slots = (env.get("EDGEPROXY_FRAMES_SHM_SLOTS") or "").strip() or str(DEFAULT_SLOTS)
        if not raw_slots.isdigit() or not 2 <= int(raw_slots) <= 32:
            raise SettingsError(f"EDGEPROXY_FRAMES_SHM_SLOTS must be an integer from 2 to 32, got {raw_slots!r}")
        raw_via = (env.get("EDGEPROXY_FRAMES_VIA_REDIS") or "").strip().lower()
        if raw_via not in _TRUE + _FALSE:
            raise SettingsError(f"EDGEPROXY_FRAMES_VIA_REDIS must be 1 or 0, got {raw_via!r}")
        return cls(directory=directory, group=group, slots=int(raw_slots), via_redis=raw_via in _TRUE)

    def environment(self) -> dict[str, str]:
        """The same settings as environment variables (handed to camera processes)."""
        env = {"EDGEPROXY_FRAMES_SHM_DIR": self.directory or "off", "EDGEPROXY_FRAMES_SHM_SLOTS": str(self.slots),
               "EDGEPROXY_FRAMES_VIA_REDIS": "1" if self.via_redis else "0"}
        if self.group is not None:
            env["EDGEPROXY_FRAMES_SHM_GROUP"] = str(self.group)
        return env


def ring_name(camera: str, camera_id: str = "") -> str:
    """File name of a camera's ring (the camera id keeps two hosts' same-named cameras apart)."""
    camera_id = _ID_RULE.sub("_", str(camera_id or ""))[:64]
    return f"{camera}~{camera_id}{SUFFIX}" if camera_id else f"{camera}{SUFFIX}"


def demand_name(camera: str, camera_id: str = "") -> str:
    """File name of a camera's demand file (beside its ring)."""
    return ring_name(camera, camera_id)[: -len(SUFFIX)] + DEMAND_SUFFIX


def demand_path_of(ring_path: str) -> str:
    """The demand file that goes with a ring file."""
    return ring_path[: -len(SUFFIX)] + DEMAND_SUFFIX if ring_path.endswith(SUFFIX) else ring_path + DEMAND_SUFFIX


def prepare_dir(settings: ShmSettings) -> str:
    """Create the ring directory (mode 3770, the configured group) if missing; returns its path."""
    path = settings.directory
    if not path:
        raise ValueError("frame rings are off (EDGEPROXY_FRAMES_SHM_DIR)")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return path
    if settings.group is not None:
        os.chown(path, -1, settings.group)
    os.chmod(path, DIR_MODE)
    return path


def _temporary_name(final_name: str, token: str) -> str:
    """The name a ring or demand file has while it is made (renamed over ``final_name`` once filled)."""
    return f".{final_name}.{token}.tmp"


def remove_ring(settings: ShmSettings, camera: str, camera_id: str = "") -> bool:
    """Delete a camera's ring file (runtime: camera stopped, deleted or found dead), its demand file,
    and any of them a camera killed while making it left under its temporary name. True if the ring
    was there."""
    if not settings.directory:  # rings are off (settings.enabled, spelled so that mypy sees a str below)
        return False
    for name in (ring_name(camera, camera_id), demand_name(camera, camera_id)):
        for leftover in glob.glob(os.path.join(glob.escape(settings.directory),
                                               _temporary_name(glob.escape(name), "*"))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(settings.directory, demand_name(camera, camera_id)))
    try:
        os.unlink(os.path.join(settings.directory, ring_name(camera, camera_id)))
        return True
    except FileNotFoundError:
        return False


def _round_up(size: int) -> int:
    return (size + PAGE - 1) // PAGE * PAGE


# --- futex: readers sleep until the next frame, the writer wakes them (Linux) --------------------

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "arm64": 98}.get(platform.machine())
_FUTEX_WAIT = 0
_FUTEX_WAKE = 1
_syscall: Callable[..., int] | None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _syscall = _libc.syscall
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _syscall = None
# Readers' waits ignore errno: a handle without ``use_errno`` saves swapping it around every call.
_wait_syscall: Callable[..., int] | None
try:
    _wait_syscall = ctypes.CDLL(None).syscall
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _wait_syscall = None


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


# A reader's usual wait (a slice of ``WAIT_SLICE_S``), made once: the kernel only reads it
# (FUTEX_WAIT's timeout is relative), so every thread may pass the same one.
WAIT_SLICE_S = 0.25
_SLICE_TIMEOUT = ctypes.byref(_Timespec(0, int(WAIT_SLICE_S * 1e9)))


def _futex_wait(address, expected: int, timeout_s: float) -> None:
    """``address``: an int or, cheaper per call, a ``ctypes.c_void_p`` made once."""
    if _wait_syscall is None or _SYS_FUTEX is None:
        time.sleep(min(timeout_s, 0.002))
        return
    _wait_syscall(_SYS_FUTEX, address if isinstance(address, ctypes.c_void_p) else ctypes.c_void_p(address),
                  _FUTEX_WAIT, expected - 0x100000000 if expected & 0x80000000 else expected,  # the u32 as a C int
                  _SLICE_TIMEOUT if timeout_s == WAIT_SLICE_S else
                  ctypes.byref(_Timespec(int(timeout_s), int((timeout_s % 1) * 1e9))), None, 0)


def _futex_wake(address) -> None:
    """``address``: an int or, cheaper per call, a ``ctypes.c_void_p`` made once."""
    if _syscall is not None and _SYS_FUTEX is not None:
        _syscall(_SYS_FUTEX, address if isinstance(address, ctypes.c_void_p) else ctypes.c_void_p(address),
                 _FUTEX_WAKE, 0x7FFFFFFF, None, None, 0)


def _text(value, size: int) -> bytes:
    return str(value or "").encode("ascii", "replace")[:size]


# --- writer (the camera process) -----------------------------------------------------------------


class FrameRingWriter:
    """The camera's side. Not thread-safe: the ingest thread writes frames; ``heartbeat`` (status
    thread) only stores two header words."""

    def __init__(self, settings: ShmSettings, camera: str, camera_id: str = ""):
        self.settings = settings
        self.name = ring_name(camera, camera_id)
        self.directory = prepare_dir(settings)
        self.path = os.path.join(self.directory, self.name)
        self.slots = settings.slots
        self._mm: mmap.mmap | None = None
        self._words: np.ndarray | None = None
        # Per frame only lookups: each slot's pixel array by (index, height, width), the futex
        # word's address, the slot header's text fields (made once, not for every frame).
        self._pixels: dict[tuple[int, int, int], np.ndarray] = {}
        self._futex: ctypes.c_void_p | None = None
        self._texts: dict[tuple, tuple[bytes, bytes, bytes]] = {}
        self.ring_id = 0
        self.slot_bytes = 0
        self.seq = 0
        self._streaming = 0
        self._create(640 * 480 * 3)
        self.demand_path = demand_path_of(self.path)
        self._demand_owner = secrets.randbits(63) or 1
        self._demand: mmap.mmap | None = None
        try:
            self._demand = self._create_demand()
        except OSError:
            self.close()
            raise

    def _create_demand(self) -> mmap.mmap:
        """The demand file (zeroed, group-writable), renamed over any left by an earlier process."""
        tmp, mm = self._new_mapped_file(self.demand_path, DEMAND_FILE_MODE, DEMAND_SIZE)
        _U64.pack_into(mm, _OFF_DEMAND_OWNER, self._demand_owner)
        os.rename(tmp, self.demand_path)
        return mm

    def demand_until(self) -> tuple[int, int]:
        """(every frame, keyframes): wall-clock ms until which local readers want them (0: never)."""
        mm = self._demand
        return _DEMAND.unpack_from(mm, 0) if mm is not None else (0, 0)

    # -- file ------------------------------------------------------------------------------------
    def _new_mapped_file(self, final_path: str, mode: int, size: int) -> tuple[str, mmap.mmap]:
        """A zeroed file of ``size`` bytes under a temporary name beside ``final_path`` (``mode``, the
        rings' group), mapped read-write: the caller fills it, then renames it over ``final_path``."""
        tmp = os.path.join(self.directory, _temporary_name(os.path.basename(final_path), secrets.token_hex(4)))
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if self.settings.group is not None:
                os.fchown(fd, -1, self.settings.group)
            os.fchmod(fd, mode)
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        return tmp, mm

    def _create(self, frame_bytes: int) -> None:
        """A new ring file with room for ``frame_bytes`` per slot, renamed over the old one."""
        slot_bytes = _round_up(frame_bytes)
        size = HEADER_SIZE + (self.slots + 1) * (PAGE + slot_bytes)
        tmp, mm = self._new_mapped_file(self.path, FILE_MODE, size)
        ring_id = secrets.randbits(63) or 1
        _HEADER.pack_into(mm, 0, MAGIC, VERSION, self.slots, slot_bytes, ring_id, os.getpid(), 0, self.seq, 0,
                          time.time_ns() // 1_000_000, self._streaming, self.seq & 0xFFFFFFFF)
        os.rename(tmp, self.path)
        old, words = self._mm, self._words
        self._pixels = {}  # views of the old mapping
        if old is not None and words is not None:
            _U32.pack_into(old, _OFF_CLOSED, 1)
            _futex_wake(words.ctypes.data + _OFF_FUTEX)
            self._words = None
            with contextlib.suppress(BufferError):  # a frame array still refers to it: freed with that array
                old.close()
        self._mm = mm
        self._words = np.frombuffer(mm, np.uint8, HEADER_SIZE)
        self._futex = ctypes.c_void_p(self._words.ctypes.data + _OFF_FUTEX)
        self.ring_id = ring_id
        self.slot_bytes = slot_bytes

    def _slot_offset(self, index: int) -> int:
        return HEADER_SIZE + index * (PAGE + self.slot_bytes)

    # -- frames ----------------------------------------------------------------------------------
    def begin(self, height: int, width: int) -> np.ndarray:
        """The pixels of the next slot as a writable ``height x width x 3`` array; call ``commit``
        once written (a file with bigger slots is made first if the frame does not fit)."""
        index = (self.seq + 1) % self.slots
        pixels = self._pixels.get((index, height, width))
        if pixels is None:
            size = height * width * 3
            if size > self.slot_bytes:
                self._create(size)
            assert self._mm is not None, "ring closed"
            if len(self._pixels) >= 4 * (self.slots + 1):  # sizes seen before a resolution change
                self._pixels = {}
            pixels = np.frombuffer(self._mm, np.uint8, size, self._slot_offset(index) + SLOT_HEADER_SIZE)
            pixels = self._pixels[(index, height, width)] = pixels.reshape(height, width, 3)
        mm = self._mm
        assert mm is not None, "ring closed"
        _U64.pack_into(mm, self._slot_offset(index), 0)  # seqlock: being written
        return pixels

    def commit(self, height: int, width: int, ts: int, pts: int, dts: int, time_base: float, keyframe: int,
               packet: int, is_keyframe: bool, is_corrupt: bool, frame_type: str, pix_fmt: str,
               codec_name: str) -> int:
        """Publish the frame written into ``begin``'s array; returns its seq."""
        mm, words = self._mm, self._words
        assert mm is not None and words is not None, "ring closed"
        seq = self.seq + 1
        offset = self._slot_offset(seq % self.slots)
        size = height * width * 3
        flags = (_FLAG_KEY if is_keyframe else 0) | (_FLAG_CORRUPT if is_corrupt else 0)
        texts = self._texts.get((frame_type, pix_fmt, codec_name))
        if texts is None:
            if len(self._texts) > 64:
                self._texts = {}
            texts = self._texts[(frame_type, pix_fmt, codec_name)] = (
                _text(frame_type, 4), _text(pix_fmt, 16), _text(codec_name, 16))
        _SLOT_META.pack_into(mm, offset + 8, ts, pts or 0, dts or 0, time_base, keyframe, width, height, 3,
                             packet, flags, *texts, size)
        _U64.pack_into(mm, offset, seq)
        if is_keyframe:  # the keyframe slot keeps it for keyframe-only readers
            kf = self._slot_offset(self.slots)
            _U64.pack_into(mm, kf, 0)
            with memoryview(mm) as view:  # one memmove (slicing the mmap itself would copy twice)
                view[kf + 8:kf + SLOT_HEADER_SIZE + size] = view[offset + 8:offset + SLOT_HEADER_SIZE + size]
            _U64.pack_into(mm, kf, seq)
            _U64.pack_into(mm, _OFF_KEYFRAME_SEQ, seq)
        _U64.pack_into(mm, _OFF_WRITE_SEQ, seq)
        _U32.pack_into(mm, _OFF_FUTEX, seq & 0xFFFFFFFF)
        self.seq = seq
        _futex_wake(self._futex)
        return seq

    def heartbeat(self, streaming: bool) -> None:
        mm = self._mm
        if mm is None:
            return
        self._streaming = 1 if streaming else 0
        try:
            _U64.pack_into(mm, _OFF_HEARTBEAT, time.time_ns() // 1_000_000)
            _U32.pack_into(mm, _OFF_STREAMING, self._streaming)
        except (ValueError, TypeError):  # closed meanwhile
            pass

    def close(self) -> None:
        """Mark the ring closed, wake readers, and delete the file (the camera stops)."""
        mm, words = self._mm, self._words
        if mm is None or words is None:
            return
        _U32.pack_into(mm, _OFF_CLOSED, 1)
        _futex_wake(words.ctypes.data + _OFF_FUTEX)
        self._pixels = {}  # lets the mapping close below
        try:
            with open(self.path, "rb") as fh:  # only our own file: a newer camera may own the name
                header = fh.read(_HEADER.size)
            if len(header) == _HEADER.size and _HEADER.unpack(header)[4] == self.ring_id:
                os.unlink(self.path)
        except OSError:
            pass
        demand, self._demand = getattr(self, "_demand", None), None
        if demand is not None:
            try:
                with open(self.demand_path, "rb") as fh:  # ours only, as the ring
                    fh.seek(_OFF_DEMAND_OWNER)
                    if fh.read(8) == _U64.pack(self._demand_owner):
                        os.unlink(self.demand_path)
            except OSError:
                pass
            demand.close()
        self._words = None
        self._mm = None
        with contextlib.suppress(BufferError):
            mm.close()


# --- reader ----------------------------------------------------------------------------------------


class ReaderDemand:
    """A reader's side of a camera's demand file: ``want`` stores until when it wants frames.

    Raises ``OSError`` when the file cannot be mapped for writing (no such file, not in the group,
    a read-only mount): the reader then keeps demand through the frame server."""

    def __init__(self, ring_path: str):
        fd = os.open(demand_path_of(ring_path), os.O_RDWR)
        try:
            if os.fstat(fd).st_size < DEMAND_SIZE:
                raise OSError(f"{ring_path}: demand file too small")
            self._mm = mmap.mmap(fd, DEMAND_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)

    def want(self, keyframe_only: bool, until_ms: int) -> None:
        """Frames (or keyframes) are wanted until ``until_ms`` (wall clock)."""
        with contextlib.suppress(ValueError):  # closed
            _U64.pack_into(self._mm, _OFF_DEMAND_KEY if keyframe_only else 0, until_ms)

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self._mm.close()


class FrameRingReader:
    """A read-only mapping of one ring file. Thread-safe (reads only)."""

    def __init__(self, path: str):
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size < HEADER_SIZE:
                raise RingError(f"{path}: not a frame ring (too small)")
            self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        header = _HEADER.unpack_from(self._mm, 0)
        if header[0] != MAGIC or header[1] != VERSION:
            self._mm.close()
            raise RingError(f"{path}: not a frame ring of version {VERSION}")
        self.path = path
        self.slots, self.slot_bytes, self.ring_id = header[2], header[3], header[4]
        if HEADER_SIZE + (self.slots + 1) * (PAGE + self.slot_bytes) > size:
            self._mm.close()
            raise RingError(f"{path}: truncated frame ring")
        self._bytes = np.frombuffer(self._mm, np.uint8)
        self._futex = ctypes.c_void_p(self._bytes.ctypes.data + _OFF_FUTEX)  # made once: a reader waits per frame
        self._names: dict[bytes, str] = {}  # frame type, pixel format, codec as stored -> str (a handful)
        self._views: dict[tuple[int, int, int, int], np.ndarray] = {}  # (slot, shape) -> its pixels

    def close(self) -> None:
        """Nothing to do: the mapping goes with the last reference to this reader and to the
        arrays it handed out (unmapping it here could pull it from under another thread)."""

    # -- header --------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return bool(_U32.unpack_from(self._mm, _OFF_CLOSED)[0])

    @property
    def write_seq(self) -> int:
        return _U64.unpack_from(self._mm, _OFF_WRITE_SEQ)[0]

    def newest_seq(self, keyframe_only: bool = False) -> int:
        return _U64.unpack_from(self._mm, _OFF_KEYFRAME_SEQ if keyframe_only else _OFF_WRITE_SEQ)[0]

    @property
    def heartbeat_ms(self) -> int:
        return _U64.unpack_from(self._mm, _OFF_HEARTBEAT)[0]

    @property
    def streaming(self) -> bool:
        return bool(_U32.unpack_from(self._mm, _OFF_STREAMING)[0])

    def alive(self, now_ms: int, stale_ms: int) -> bool:
        """The camera streams into this ring: not closed, streaming, heartbeat within ``stale_ms``."""
        closed, _write_seq, _keyframe_seq, heartbeat_ms, streaming = _STATE.unpack_from(self._mm, _OFF_CLOSED)
        return not closed and streaming != 0 and now_ms - heartbeat_ms <= stale_ms

    def wait(self, after_seq: int, timeout_s: float, keyframe_only: bool = False) -> bool:
        """Sleep until a frame newer than ``after_seq`` is published (or the ring closes, or the
        timeout). True if there is one."""
        # A reader's path per frame: lean (a wake-up costs more the more code it runs cache-cold):
        # two header reads before and after one futex wait per frame, one clock read for the deadline.
        mm, futex, newest = self._mm, self._futex, 2 if keyframe_only else 1
        deadline = 0.0
        remaining = timeout_s
        while True:
            word = _U32.unpack_from(mm, _OFF_FUTEX)[0]  # before the check: a frame after it changes the word
            state = _STATE.unpack_from(mm, _OFF_CLOSED)
            if state[newest] > after_seq:
                return True
            if state[0]:
                return False
            if deadline:
                remaining = deadline - time.monotonic()
            else:
                deadline = time.monotonic() + timeout_s
            if remaining <= 0:
                return False
            _futex_wait(futex, word, WAIT_SLICE_S if remaining >= WAIT_SLICE_S else remaining)

    # -- frames --------------------------------------------------------------------------------
    def _slot_offset(self, seq: int, keyframe_only: bool) -> int:
        index = self.slots if keyframe_only else seq % self.slots
        return HEADER_SIZE + index * (PAGE + self.slot_bytes)

    def read(self, keyframe_only: bool = False, copy: bool = True, seq: int | None = None):
        """``(image, meta)`` of the newest frame (or keyframe), or of frame ``seq`` while its
        slot still holds it; None if there is none. ``copy=False`` returns a read-only view of the
        slot (``intact(meta)`` tells whether it is still that frame). Never a torn frame."""
        for _attempt in range(8):
            want = self.newest_seq(keyframe_only) if seq is None else seq
            if want == 0:
                return None
            found = self._read_slot(self._slot_offset(want, keyframe_only), want, copy)
            if found is not None:
                return found
            if seq is not None:
                return None  # overwritten already
            # being rewritten (the writer lapped us) or torn while we copied: take the newest again
        return None

    def next_frame(self, after_seq: int, timeout_s: float, copy: bool = False):
        """``read``'s ``(image, meta)`` of the frame after ``after_seq`` while its slot still holds
        it, else of the newest, waiting up to ``timeout_s`` for one newer than ``after_seq``; None
        when none came or the ring closed. A reader taking every frame calls this once per frame:
        one futex wait, no numpy call for a view (``wait`` and ``read`` in one: ``wait``'s loop is
        repeated here rather than called, as this runs once a frame in every local reader)."""
        mm, futex, slots = self._mm, self._futex, self.slots
        deadline = 0.0
        remaining = timeout_s
        while True:
            word = _U32.unpack_from(mm, _OFF_FUTEX)[0]  # before the check: a frame after it changes the word
            state = _STATE.unpack_from(mm, _OFF_CLOSED)
            newest = state[1]
            if newest > after_seq:
                if newest - after_seq <= slots:  # the next one is still held (unless being rewritten): in order
                    found = self._read_slot(self._slot_offset(after_seq + 1, False), after_seq + 1, copy)
                    if found is not None:
                        return found
                return self.read(False, copy)
            if state[0]:
                return None
            if deadline:
                remaining = deadline - time.monotonic()
            else:
                deadline = time.monotonic() + timeout_s
            if remaining <= 0:
                return None
            _futex_wait(futex, word, WAIT_SLICE_S if remaining >= WAIT_SLICE_S else remaining)

    def _read_slot(self, offset: int, want: int, copy: bool):
        """``(image, meta)`` of frame ``want`` in the slot at ``offset``; None if the slot holds
        another frame or was rewritten while read (seqlock)."""
        mm = self._mm
        fields = _SLOT.unpack_from(mm, offset)
        if fields[0] != want:
            return None
        (slot_seq, ts, pts, dts, time_base, keyframe, width, height, channels, packet, flags, frame_type,
         pix_fmt, codec_name, nbytes) = fields
        if nbytes != width * height * channels or nbytes > self.slot_bytes:
            return None
        view = self._views.get((offset, height, width, channels))
        if view is None:
            view = self._view(offset, height, width, channels)
        image = view.copy() if copy else view
        if _U64.unpack_from(mm, offset)[0] != want:
            return None  # rewritten while we copied: torn
        names = self._names
        return image, {
            "seq": slot_seq, "ts": ts, "width": width, "height": height, "pts": pts, "dts": dts,
            "time_base": time_base, "frame_type": names.get(frame_type) or self._name(frame_type),
            "is_keyframe": bool(flags & _FLAG_KEY), "is_corrupt": bool(flags & _FLAG_CORRUPT),
            "codec_name": names.get(codec_name) or self._name(codec_name),
            "pix_fmt": names.get(pix_fmt) or self._name(pix_fmt), "packet": packet,
            "keyframe": keyframe, "data_format": "bgr24", "_slot": offset,
        }

    def _view(self, offset: int, height: int, width: int, channels: int) -> np.ndarray:
        """The read-only array of a slot's pixels at this shape, made once per slot and shape: a
        reader per frame then makes no numpy object (a view of the same memory is the same view)."""
        if len(self._views) >= 4 * (self.slots + 1):  # shapes changed often: forget the old ones
            self._views.clear()
        start = offset + SLOT_HEADER_SIZE
        view = self._bytes[start:start + height * width * channels].reshape(height, width, channels)
        self._views[(offset, height, width, channels)] = view
        return view

    def _name(self, raw: bytes) -> str:
        name = self._names.get(raw)
        if name is None:
            name = raw.rstrip(b"\0").decode("ascii", "replace")
            if len(self._names) < 256:
                self._names[raw] = name
        return name

    def intact(self, meta: dict) -> bool:
        """Does the slot of this frame still hold it (a view of it is not overwritten)?"""
        return _U64.unpack_from(self._mm, meta["_slot"])[0] == meta["seq"]

    def read_blob(self, keyframe_only: bool, prefix_of):
        """``(meta, bytes)``: ``prefix_of(meta)`` followed by the frame's pixels, copied once from
        the slot (the frame server builds its serialized reply this way). None if no frame."""
        for _attempt in range(8):
            found = self.read(keyframe_only, copy=False)
            if found is None:
                return None
            view, meta = found
            blob = b"".join((prefix_of(meta), view.data if view.flags.c_contiguous else view.tobytes()))
            if self.intact(meta):
                return meta, blob
        return None


__all__ = ["DEFAULT_DIR", "FrameRingReader", "FrameRingWriter", "ReaderDemand", "RingError", "SettingsError",
           "ShmSettings", "demand_name", "demand_path_of", "prepare_dir", "remove_ring", "ring_name"]
