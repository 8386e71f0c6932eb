"""Every Redis key of the frame bus, in one place.

The frame bus lives in the Redis of an edge host (``EDGEPROXY_FRAMES_REDIS_URL``). Each camera
process owns the keys under ``edgeproxy:cam:<name>:``; consumers (frame server, edge worker) only
read them, except the demand and control keys, which consumers write.

| key | type | written by | size bound | TTL |
|---|---|---|---|---|
| ``status`` | string, JSON (see ``STATUS_FIELDS``) | camera, at least 1/s | < 2 KiB | ``STATUS_TTL_S`` |
| ``codec`` | string, JSON: name, long_name, width, height, pix_fmt, extradata (base64), time_base (float); also extradata_size, time_base_num, time_base_den (exact), fps (nominal or null), profile | camera, each (re)connect and every 5 s | < 64 KiB | none (deleted with the camera) |
| ``demand:all`` | string ``1`` | consumer wanting every frame (local readers of a shared-memory ring use its demand file instead, ``worker/camera/shm.py``) | tiny | ``DEMAND_TTL_MS``, refreshed by each read |
| ``demand:key`` | string ``1`` | consumer wanting keyframes only | tiny | ``DEMAND_TTL_MS`` |
| ``frame:latest`` | only where frames do not go to shared memory (``worker/camera/shm.py``) or with ``EDGEPROXY_FRAMES_VIA_REDIS=1``: hash: ``meta`` (JSON, see ``FRAME_META_FIELDS``), ``data`` (raw I420 or BGR24 bytes, as ``meta.data_format`` says) | camera, every decoded frame | one frame | ``FRAME_TTL_S`` |
| ``frame:keyframe`` | hash, same shape: the newest decoded keyframe | camera | one frame | ``FRAME_TTL_S`` |
| ``ring`` | stream of compressed packets, entry id = ``<receive ms>-<packet counter>``; fields ``data``, ``pts``, ``dts`` (in the codec's time_base), ``key`` (``1``/``0``), ``ts`` (receive ms) | camera, every packet (batched every ``EDGEPROXY_RING_FLUSH_MS``) | ``buffer seconds`` .. + one GOP (starts at a keyframe) | trimmed by MINID |
| ``rtmp`` | string ``1``/``0``: RTMP pass-through wanted | control (Proxy RPC, connect) | tiny | none |
| ``storage`` | string ``1``/``0``: storing flag (no cloud is called) | control | tiny | none |
| ``recording`` | string, JSON: ``enabled``, ``retention_hours``, ``blocked`` (why the host's recordings may not grow, or null) | edge worker (``worker/recordings.py``) | tiny | none |

``frame:*:meta.seq`` increases by one per published frame of that camera process, so a reader
can tell a newer frame from one it has seen (``ts`` breaks ties across process restarts).

Details (camera process, see docs/camera.md):

* ``frame:*``: ``data`` is in ``meta.data_format`` (``worker/camera/frame_format.py``, whose
  ``to_bgr(meta, data)`` reads either): ``i420``, planar YUV 4:2:0 (Y, U, V planes, no padding,
  ``width * height * 3 / 2`` bytes), the decoder's output as is, for ``yuv420p``/``yuvj420p``
  frames of even size; ``bgr24`` (also when the field is absent), ``height x width x 3`` bytes, row
  after row, no padding (``numpy.frombuffer(data, numpy.uint8).reshape(height, width, 3)``), for
  other pixel formats or ``EDGEPROXY_PUBLISH_FORMAT=bgr24``. ``meta.pix_fmt`` is the decoder's
  pixel format (before any conversion). A keyframe is published to both keys with the same
  ``seq``; with only ``demand:key`` alive, only keyframes are decoded and published (to both keys).
  The camera deletes both keys (and the ring) when it starts, since ``seq`` restarts at 1.
* ``ring``: decode a time range with ``worker.camera.ring.decode_range(redis, camera, start_ms,
  end_ms)``; ``ring_info`` gives its span. The ring always covers at least the last ``buffer
  seconds`` and is emptied when the stream's codec parameters change on reconnect.
* ``status``: written every second and at once on a state change; deleted on a clean stop (SIGTERM).
  ``state`` is ``error`` when the last attempt failed in a way a retry will not cure by itself
  (401/403/404 and other RTSP client errors, no video track); the camera keeps retrying anyway.
* ``rtmp``: absent means on when the camera has an RTMP URL.
"""  # noqa: E501 - rows of a Markdown table cannot wrap

PREFIX = "edgeproxy:cam:"

STATUS_TTL_S = 5
FRAME_TTL_S = 10
DEMAND_TTL_MS = 5000

STATES = ("connecting", "streaming", "reconnecting", "error")
STATUS_FIELDS = (
    "state",  # one of STATES
    "fps",  # measured over the last seconds
    "width",
    "height",
    "codec",
    "last_frame_at",  # ms since epoch of the last received packet
    "reconnects",
    "last_error",  # credentials redacted
    "rtmp_streaming",  # bool: pass-through really running
    "storing",  # bool
    "updated_at",  # ms
    "pid",
    # additions by the camera process
    "camera_id",
    "transport",  # tcp / udp
    "started_at",  # ms, process start
    "connected_at",  # ms, start of the current (or last) RTSP session
    "demand",  # none / keyframes / all: what the camera is decoding for
    "rtmp_enabled",  # bool: pass-through wanted (the rtmp key, or its default)
    "rtmp_error",  # last RTMP failure (redacted), null once it streams again
    "buffer_seconds",
    "packets",  # video packets received since start
    "keyframes",
    "decoded_frames",  # frames decoded since start (0 while nobody asked for frames)
    "decoded_keyframes",
    "published_frames",  # frames written to frame:latest
    "decode_errors",
    "ring_entries",  # packets in the ring (as the writer counts them)
    "ring_span_ms",  # receive-time span of the ring
    "ring_flush_ms",  # packets reach the ring in batches at most this far apart (EDGEPROXY_RING_FLUSH_MS)
    "frames_ring",  # file name of the shared-memory frame ring under EDGEPROXY_FRAMES_SHM_DIR, or null
    "frames_ring_id",  # that ring file's ring_id (a decimal string): readers check they mapped this one
    "recording",  # {"enabled", "state", "problem", "bytes_written", "segments", "errors"} (worker/camera/recorder.py)
)
FRAME_META_FIELDS = (
    "seq",
    "ts",  # wall-clock ms when the packet was received
    "width",
    "height",
    "pts",
    "dts",
    "time_base",  # float
    "frame_type",  # I / P / B
    "is_keyframe",
    "is_corrupt",
    "codec_name",
    "pix_fmt",
    # additions by the camera process (the original's VideoFrame.packet / .keyframe)
    "packet",  # index of the frame's packet within its GOP (0 = the keyframe)
    "keyframe",  # running keyframe counter (live: since process start; buffered: within the range)
    "data_format",  # layout of ``data``: "i420" or "bgr24" (absent: bgr24); see frame_format.py
)


# Written by the edge worker, read by the frame server: what runs on this host.
# Hash: camera name -> JSON {"camera_id", "status", "state" (Docker ContainerState keys),
# "container_id", "has_rtmp" (bool)}. Refreshed at every heartbeat; TTL 3 heartbeats.
HOST_PREFIX = "edgeproxy:host:"


def host_cameras(host: str) -> str:
    return f"{HOST_PREFIX}{host}:cameras"


def _key(camera: str, suffix: str) -> str:
    return f"{PREFIX}{camera}:{suffix}"


def status(camera: str) -> str:
    return _key(camera, "status")


def codec(camera: str) -> str:
    return _key(camera, "codec")


def demand_all(camera: str) -> str:
    return _key(camera, "demand:all")


def demand_keyframes(camera: str) -> str:
    return _key(camera, "demand:key")


def frame_latest(camera: str) -> str:
    return _key(camera, "frame:latest")


def frame_keyframe(camera: str) -> str:
    return _key(camera, "frame:keyframe")


def ring(camera: str) -> str:
    return _key(camera, "ring")


def rtmp_switch(camera: str) -> str:
    return _key(camera, "rtmp")


def storage_flag(camera: str) -> str:
    return _key(camera, "storage")


def recording(camera: str) -> str:
    return _key(camera, "recording")


def all_keys(camera: str) -> list[str]:
    return [
        status(camera),
        codec(camera),
        demand_all(camera),
        demand_keyframes(camera),
        frame_latest(camera),
        frame_keyframe(camera),
        ring(camera),
        rtmp_switch(camera),
        storage_flag(camera),
        recording(camera),
    ]


def delete_camera_keys(redis_client, camera: str) -> int:
    """Remove every key of a camera (called when the camera is deleted)."""
    return redis_client.delete(*all_keys(camera))


def camera_names(redis_client) -> set[str]:
    """Cameras with a live status key on this frame bus."""
    names = set()
    for key in redis_client.scan_iter(match=f"{PREFIX}*:status", count=500):
        key = key.decode() if isinstance(key, bytes) else key
        names.add(key[len(PREFIX) : -len(":status")])
    return names
