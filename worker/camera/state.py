"""The camera process's live state, shared by its threads and published as the status key.

Plain attributes written by one thread and read by others (the GIL makes each read/write atomic);
nothing here blocks.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import TYPE_CHECKING

from worker.camera import keys

if TYPE_CHECKING:
    from worker.camera.shm import FrameRingWriter

# Demand levels (what consumers asked for in the last DEMAND_TTL_MS).
DEMAND_NONE = 0
DEMAND_KEY = 1
DEMAND_ALL = 2
DEMAND_NAMES = {DEMAND_NONE: "none", DEMAND_KEY: "keyframes", DEMAND_ALL: "all"}

# Packets of the first second after a (re)connect are left out of the rate: servers send what they
# had buffered in a burst.
RATE_WARMUP_S = 1.0
FPS_WINDOW_S = 3.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class CameraState:
    def __init__(self, name: str, camera_id: str = "", buffer_seconds: float = 0.0, transport: str = "tcp"):
        self.name = name
        self.camera_id = camera_id
        self.buffer_seconds = buffer_seconds
        self.transport = transport
        self.pid = os.getpid()
        self.started_at = now_ms()
        self.changed = threading.Event()  # wakes the status writer on a state change

        self.state = "connecting"
        self.width: int | None = None
        self.height: int | None = None
        self.codec: str | None = None
        self.last_frame_at: int | None = None
        self.reconnects = 0
        self.last_error: str | None = None
        self.connected_at: int | None = None

        self.demand = DEMAND_NONE
        self.rtmp_wanted = False
        self.rtmp_streaming = False
        self.rtmp_error: str | None = None
        self.storing = False
        self.bus_ok = True
        self.frames_ring: FrameRingWriter | None = None  # when frames go to shared memory

        self.packets = 0
        self.keyframes = 0
        self.decoded_frames = 0
        self.decoded_keyframes = 0
        self.published_frames = 0
        self.decode_errors = 0
        self.ring_entries = 0
        self.ring_span_ms = 0
        self.ring_flush_ms = 0  # packets reach the ring in batches at most this far apart
        self._arrivals: collections.deque[float] = collections.deque()
        self._rate_from = 0.0

    # -- written by the ingest thread -------------------------------------------------------
    def set_state(self, state: str, error: str | None = None) -> None:
        assert state in keys.STATES, state
        changed = state != self.state
        self.state = state
        if error is not None:
            self.last_error = error
        if changed or error is not None:
            self.changed.set()

    def on_packet(self, mono: float, wall_ms: int, is_key: bool) -> None:
        self.packets += 1
        if is_key:
            self.keyframes += 1
        self.last_frame_at = wall_ms
        if mono < self._rate_from:
            return  # the burst of buffered packets right after connecting is not the camera's rate
        arrivals = self._arrivals
        arrivals.append(mono)
        limit = mono - FPS_WINDOW_S
        while arrivals[0] < limit:
            arrivals.popleft()

    def reset_rate(self) -> None:
        self._arrivals.clear()
        self._rate_from = time.monotonic() + RATE_WARMUP_S

    # -- read by the status writer ----------------------------------------------------------
    def fps(self) -> float:
        arrivals = list(self._arrivals)
        if len(arrivals) < 2:
            return 0.0
        now = time.monotonic()
        if now - arrivals[-1] > 2.0:  # nothing arriving: the rate is no longer what it was
            return 0.0
        span = arrivals[-1] - arrivals[0]
        if span < 0.4:
            return 0.0
        return round((len(arrivals) - 1) / span, 2)

    def status(self) -> dict:
        ring = self.frames_ring
        return {
            "state": self.state,
            "fps": self.fps(),
            "width": self.width,
            "height": self.height,
            "codec": self.codec,
            "last_frame_at": self.last_frame_at,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "rtmp_streaming": bool(self.rtmp_streaming),
            "storing": bool(self.storing),
            "updated_at": now_ms(),
            "pid": self.pid,
            # additions (documented in keys.STATUS_FIELDS)
            "camera_id": self.camera_id,
            "transport": self.transport,
            "started_at": self.started_at,
            "connected_at": self.connected_at,
            "demand": DEMAND_NAMES[self.demand],
            "rtmp_enabled": bool(self.rtmp_wanted),
            "rtmp_error": self.rtmp_error,
            "buffer_seconds": self.buffer_seconds,
            "packets": self.packets,
            "keyframes": self.keyframes,
            "decoded_frames": self.decoded_frames,
            "decoded_keyframes": self.decoded_keyframes,
            "published_frames": self.published_frames,
            "decode_errors": self.decode_errors,
            "ring_entries": self.ring_entries,
            "ring_span_ms": self.ring_span_ms,
            "ring_flush_ms": self.ring_flush_ms,
            "frames_ring": ring.name if ring is not None else None,
            "frames_ring_id": str(ring.ring_id) if ring is not None else None,
        }
