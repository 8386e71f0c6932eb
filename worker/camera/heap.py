"""Keep frame-sized buffers in the process's heap instead of fresh pages for every frame.

The camera process (swscale's output frame) and the frame server (the serialized reply, and gRPC's
copy of it per caller) allocate and free a buffer the size of a frame for every frame: 6.2 MB at
1080p BGR24. glibc serves such sizes with ``mmap`` and gives them back with ``munmap`` (or trims
its heap), so every frame touched ~1,500 fresh pages: the frame server spent about a third of its
CPU in page faults and zeroing at 1080p. Raising glibc's mmap and trim thresholds keeps those
buffers in the heap, reused frame after frame (``edgeproxy.client.FrameClient`` does it too, in
its caller's process, once frames come to it over gRPC). The cost: up to ``TRIM_BYTES`` of freed memory
stays with the process (its peak use, not more). Only glibc (``mallopt``); elsewhere a no-op.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

# glibc's largest allowed mmap threshold on 64-bit (HEAP_MAX_SIZE / 2): a 4K BGR24 frame (25 MB) fits.
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_BYTES = 128 * 1024 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_frame_buffers() -> bool:
    """Set glibc's mmap threshold and trim threshold for frame-sized buffers. True if applied."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES))
    if not ok:
        log.debug("mallopt refused the frame buffer thresholds")
    return ok


__all__ = ["keep_frame_buffers"]
