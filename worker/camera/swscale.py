"""BGR24 conversion straight into a frame ring slot, with the libswscale that PyAV bundles.

PyAV's ``VideoReformatter`` always allocates a new output frame, so writing its BGR24 result into
a shared-memory slot cost a full extra copy (at 1080p about as much as the conversion itself).
``SlotConverter`` calls ``sws_scale`` with the slot as the destination: the same swscale code,
options and colour handling as ``worker.camera.ring.to_bgr24`` (bilinear flags, one thread, the
frame's colorspace and range; byte-identical output, ``tests/worker/frames/test_proto.py``), no
copy. Only for ``yuv420p`` frames whose BGR rows are 16-byte multiples (widths divisible by 16:
swscale's SIMD paths); anything else returns False and the caller converts with PyAV as before.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os

import numpy as np

log = logging.getLogger(__name__)

_YUV420P = 0  # AVPixelFormat values (stable across FFmpeg versions)
_BGR24 = 3
_SWS_BILINEAR = 2  # PyAV's default interpolation
_CS_UNSPECIFIED = 2  # AVColorSpace; swscale's SWS_CS_* constants use the same numbers
_CS_DEFAULT = 5  # SWS_CS_DEFAULT (ITU-R BT.601)
_RANGE_JPEG = 2  # AVColorRange: full range
_Pointers = ctypes.c_void_p * 4
_Strides = ctypes.c_int * 4


def _load():
    import av

    libs = os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs")
    candidates = sorted(glob.glob(os.path.join(libs, "libswscale-*.so*")))
    lib = ctypes.CDLL(candidates[0] if candidates else "libswscale.so")
    lib.sws_getCachedContext.restype = ctypes.c_void_p
    lib.sws_getCachedContext.argtypes = [ctypes.c_void_p] + [ctypes.c_int] * 7 + [ctypes.c_void_p] * 3
    lib.sws_getCoefficients.restype = ctypes.c_void_p
    lib.sws_getCoefficients.argtypes = [ctypes.c_int]
    lib.sws_setColorspaceDetails.restype = ctypes.c_int
    lib.sws_setColorspaceDetails.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                             ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.sws_scale.restype = ctypes.c_int
    lib.sws_scale.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 2 + [ctypes.c_void_p] * 2
    lib.sws_freeContext.argtypes = [ctypes.c_void_p]
    return lib


class SlotConverter:
    """Converts decoded frames to BGR24 into a given array. Not thread-safe (one per camera)."""

    def __init__(self):
        self._ctx: int | None = None
        self._details: tuple | None = None
        self._size: tuple[int, int] | None = None  # the context's frame size
        try:
            self._lib = _load()
        except (OSError, AttributeError, IndexError, ImportError) as exc:
            log.info("libswscale not usable directly (%s): converting with PyAV and one copy", exc)
            self._lib = None

    def convert_into(self, frame, out: np.ndarray) -> bool:
        """Write ``frame`` as BGR24 into ``out`` (``height x width x 3``, C-contiguous). False when
        this frame is not one the direct path handles (nothing written)."""
        lib = self._lib
        width, height = frame.width, frame.height
        if lib is None or width % 16 or frame.format.name != "yuv420p" or out.shape != (height, width, 3) \
                or not out.flags.c_contiguous:
            return False
        ctx = self._ctx
        if (width, height) != self._size or not ctx:  # the same size keeps the same context
            ctx = lib.sws_getCachedContext(ctx, width, height, _YUV420P, width, height, _BGR24, _SWS_BILINEAR,
                                           None, None, None)
            if not ctx:
                return False
            self._size = (width, height)
        colorspace = int(frame.colorspace)
        full_range = 1 if int(frame.color_range) == _RANGE_JPEG else 0
        details = (ctx, colorspace, full_range)
        if details != self._details:  # as PyAV: the frame's colorspace and range, same at the output
            coefficients = lib.sws_getCoefficients(_CS_DEFAULT if colorspace == _CS_UNSPECIFIED else colorspace)
            lib.sws_setColorspaceDetails(ctx, coefficients, full_range, coefficients, 0, 0, 1 << 16, 1 << 16)
            self._details = details
        self._ctx = ctx
        planes = frame.planes
        source = _Pointers(planes[0].buffer_ptr, planes[1].buffer_ptr, planes[2].buffer_ptr, None)
        strides = _Strides(planes[0].line_size, planes[1].line_size, planes[2].line_size, 0)
        rows = lib.sws_scale(ctx, source, strides, 0, height, _Pointers(out.ctypes.data, None, None, None),
                             _Strides(width * 3, 0, 0, 0))
        return rows == height

    def close(self) -> None:
        if self._lib is not None and self._ctx:
            self._lib.sws_freeContext(self._ctx)
        self._ctx = None
        self._details = None
        self._size = None


__all__ = ["SlotConverter"]
